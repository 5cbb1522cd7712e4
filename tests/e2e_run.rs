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
