//! End-to-end: a sweep runs, a re-run executes nothing, changing one matrix value re-runs
//! only its branch (and the gather), and early cutoff keeps downstream cached when an
//! upstream re-executes to identical bytes.

mod common;
use common::{count, Project, SWEEP};

#[test]
fn sweep_runs_then_rerun_executes_nothing() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    let first = p.executions();
    assert_eq!(first.len(), 5, "source, 3 branches, report: {first:?}");
    let table = p.run(&["cat", "report"]).expect_code(0).stdout;
    assert_eq!(
        table, "data\n1\ndata\n2\ndata\n3\n",
        "gathered in instance order"
    );

    let again = p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(p.executions().len(), 5, "a re-run executes nothing");
    assert!(
        again.stderr.contains("0 executed, 5 cached"),
        "{}",
        again.stderr
    );
    let plan = p.run(&["plan", pipeline]).expect_code(0).stdout;
    assert!(plan.contains("0 to run, 5 cached"), "{plan}");
}

#[test]
fn changing_one_matrix_value_reruns_only_its_branch() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    p.pipeline(&SWEEP.replace("n: [1, 2, 3]", "n: [1, 2, 4]"));
    let plan = p.run(&["plan", pipeline]).expect_code(0).stdout;
    assert!(plan.contains("run     branch[n=4]  (new)"), "{plan}");
    assert!(
        plan.contains("report  (upstream will run: branch[n=4])"),
        "{plan}"
    );
    p.run(&["run", pipeline]).expect_code(0);
    let log = p.executions();
    assert_eq!(log.len(), 7, "{log:?}");
    assert_eq!(&log[5..], ["branch-4", "report"]);
}

#[test]
fn early_cutoff_keeps_downstream_cached() {
    let p = Project::new();
    let yaml = r#"
version: 1
stages:
  up:
    uses: command
    run: "echo up >> LOG; echo same > ${outs.o}"
    outs: { o: o.txt }
  down:
    uses: command
    inputs: { i: up }
    run: "echo down >> LOG; cat ${inputs.i} > ${outs.o}"
    outs: { o: o.txt }
"#;
    let pipeline = p.pipeline(yaml);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    // A different command line (a new key for `up`) that writes the same bytes.
    p.pipeline(&yaml.replace("echo up >> LOG;", "echo up >> LOG; true;"));
    p.run(&["run", pipeline]).expect_code(0);
    let log = p.executions();
    assert_eq!(count(&log, "up"), 2, "{log:?}");
    assert_eq!(count(&log, "down"), 1, "downstream stays cached: {log:?}");
}

#[test]
fn a_failed_stage_stops_only_its_dependents() {
    let p = Project::new();
    let yaml = r#"
version: 1
settings: { jobs: 1 }
stages:
  bad:
    uses: command
    run: "echo bad >> LOG; echo 'something broke' >&2; exit 3"
    outs: { o: o.txt }
  after_bad:
    uses: command
    inputs: { i: bad }
    run: "echo after_bad >> LOG; cp ${inputs.i} ${outs.o}"
    outs: { o: o.txt }
  good:
    uses: command
    run: "echo good >> LOG; echo ok > ${outs.o}"
    outs: { o: o.txt }
  after_good:
    uses: command
    inputs: { i: good }
    run: "echo after_good >> LOG; cp ${inputs.i} ${outs.o}"
    outs: { o: o.txt }
"#;
    let pipeline = p.pipeline(yaml);
    let out = p.run(&["run", pipeline.to_str().unwrap()]).expect_code(1);
    assert!(
        out.stderr.contains("something broke"),
        "stderr tail shown: {}",
        out.stderr
    );
    let log = p.executions();
    assert_eq!(count(&log, "after_bad"), 0, "{log:?}");
    assert_eq!(count(&log, "after_good"), 1, "{log:?}");
    let status = p.run(&["status"]).expect_code(0).stdout;
    assert!(
        status.contains("failed") && status.contains("bad"),
        "{status}"
    );
}

#[test]
fn a_missing_declared_out_is_an_error() {
    let p = Project::new();
    let yaml = r#"
version: 1
stages:
  lazy:
    uses: command
    run: "true"
    outs: { result: result.json }
"#;
    let pipeline = p.pipeline(yaml);
    let out = p.run(&["run", pipeline.to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("result"), "{}", out.stderr);
}

#[test]
fn retries_run_a_failed_stage_again_and_plan_names_the_changed_field() {
    let p = Project::new();
    let marker = p.path().join("tried");
    let yaml = r#"
version: 1
stages:
  flaky:
    uses: command
    run: "echo flaky >> LOG; if [ -f MARKER ]; then echo ok > ${outs.o}; else touch MARKER; exit 1; fi"
    outs: { o: o.txt }
    retries: 1
"#;
    let yaml = yaml.replace("MARKER", &marker.display().to_string());
    let pipeline = p.pipeline(&yaml);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(count(&p.executions(), "flaky"), 2);
    let status = p.run(&["status"]).expect_code(0).stdout;
    assert!(status.contains("attempt 2"), "{status}");
    p.pipeline(&yaml.replace("echo ok", "echo fine"));
    let plan = p.run(&["plan", pipeline]).expect_code(0).stdout;
    assert!(plan.contains("run     flaky  (changed command:"), "{plan}");
    let why = p.run(&["why", "flaky"]).expect_code(0).stdout;
    assert!(why.contains("attempt 2"), "{why}");
}

#[test]
fn deps_are_hashed_by_content_and_linked_into_the_run_directory() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("scripts")).unwrap();
    std::fs::write(p.path().join("scripts/gen.sh"), "echo one\n").unwrap();
    let yaml = r#"
version: 1
stages:
  gen:
    uses: command
    run: "echo gen >> LOG; sh scripts/gen.sh > ${outs.o}"
    deps: [scripts/gen.sh]
    outs: { o: o.txt }
"#;
    let pipeline = p.pipeline(yaml);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(p.run(&["cat", "gen"]).expect_code(0).stdout, "one\n");
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(count(&p.executions(), "gen"), 1, "unchanged dep: cached");
    std::fs::write(p.path().join("scripts/gen.sh"), "echo two\n").unwrap();
    let plan = p.run(&["plan", pipeline]).expect_code(0).stdout;
    assert!(
        plan.contains("changed externals.deps:scripts/gen.sh"),
        "{plan}"
    );
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(p.run(&["cat", "gen"]).expect_code(0).stdout, "two\n");
}

#[test]
fn a_command_sees_only_its_allocation() {
    let p = Project::new();
    let yaml = r#"
version: 1
settings: { device: cpu }
stages:
  env:
    uses: command
    run: "echo gpus=[$CUDA_VISIBLE_DEVICES] threads=$OMP_NUM_THREADS > ${outs.o}"
    outs: { o: o.txt }
    resources: { cpus: 1, gpus: 1 }
"#;
    let pipeline = p.pipeline(yaml);
    let mut cmd = p.command(&["run", pipeline.to_str().unwrap()]);
    cmd.env("CUDA_VISIBLE_DEVICES", "0,1");
    assert!(cmd.status().unwrap().success());
    let out = p.run(&["cat", "env"]).expect_code(0).stdout;
    assert_eq!(out, "gpus=[] threads=1\n", "device: cpu hides every GPU");
}

#[test]
fn a_command_line_longer_than_one_argument_runs() {
    // Linux refuses one argument over 128 KiB; a gather over a large sweep makes such
    // lines, so they must still run (through a script file).
    let p = Project::new();
    let word = "x".repeat(200 * 1024);
    let yaml = format!(
        r#"
version: 1
stages:
  long:
    uses: command
    run: "printf '%s' {word} | wc -c > ${{outs.n}}"
    outs: {{ n: n.txt }}
"#
    );
    let pipeline = p.pipeline(&yaml);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    let n = p.run(&["cat", "long"]).expect_code(0).stdout;
    assert_eq!(n.trim(), (200 * 1024).to_string());
}

#[test]
fn plain_lines_run_without_a_shell_and_a_missing_program_fails_as_in_sh() {
    // `cp a b` is started directly (no `sh` in between, see engine/src/shell.rs); its
    // result must be what the shell would have produced, and a program that does not
    // exist must fail with the shell's "not found", not an internal error.
    let p = Project::new();
    let yaml = r#"
version: 1
stages:
  make:
    uses: command
    run: "echo made > ${outs.file}"
    outs: { file: file.txt }
  copy:
    uses: command
    run: cp ${inputs.file} ${outs.file}
    inputs: { file: make }
    outs: { file: copy.txt }
  missing:
    uses: command
    run: no-such-program-histodiff ${inputs.file} ${outs.file}
    inputs: { file: make }
    outs: { file: never.txt }
"#;
    let pipeline = p.pipeline(yaml);
    let out = p.run(&["run", pipeline.to_str().unwrap()]).expect_code(1);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    assert!(
        out.stderr.contains("127"),
        "exit status shown: {}",
        out.stderr
    );
    let copied = p.run(&["cat", "copy"]).expect_code(0).stdout;
    assert_eq!(copied, "made\n");
}

#[test]
fn data_written_just_before_a_long_run_is_in_the_stat_cache_after_it() {
    // A file modified within the stat cache's racy window is hashed but not cached; a run
    // that outlasts the window hashes it again at its end, so the next run (or plan) does
    // not read it once more.
    let p = Project::new();
    std::fs::write(p.path().join("dep.txt"), "fresh\n").unwrap();
    let yaml = r#"
version: 1
stages:
  slow:
    uses: command
    run: "sleep 2.5 && cat dep.txt > ${outs.o}"
    deps: [dep.txt]
    outs: { o: o.txt }
"#;
    let pipeline = p.pipeline(yaml);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    let dep = std::fs::canonicalize(p.path().join("dep.txt")).unwrap();
    let dep = dep.to_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cached = runtime.block_on(async {
        let store = histodiff_engine::store::open(".histodiff", None, p.path())
            .await
            .unwrap();
        store
            .stat_get_many(std::slice::from_ref(&dep))
            .await
            .unwrap()
    });
    assert!(cached.contains_key(&dep), "no stat-cache entry for {dep}");
}
