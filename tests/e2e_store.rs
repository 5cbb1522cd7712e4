//! End-to-end: two concurrent runs on one store execute each key once; a flipped byte
//! in an object is reported by `verify`; malformed pipelines exit 2 with a located error
//! and leave no store behind (nor a run in an existing one); artifacts come out with
//! `cat` and `export`.

mod common;
use common::{count, Project, SWEEP};
use std::path::{Path, PathBuf};

#[test]
fn two_concurrent_runs_execute_each_key_once() {
    let p = Project::new();
    let pipeline =
        p.pipeline(&SWEEP.replace("echo ${matrix.n} >>", "sleep 0.3; echo ${matrix.n} >>"));
    let pipeline = pipeline.to_str().unwrap();
    let a = p.command(&["run", pipeline]).spawn().unwrap();
    let b = p.command(&["run", pipeline]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    let log = p.executions();
    for name in ["source", "branch-1", "branch-2", "branch-3", "report"] {
        assert_eq!(count(&log, name), 1, "{name} executed once: {log:?}");
    }
}

fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.file_name().len() == 2 {
            files.extend(
                std::fs::read_dir(shard.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    files
}

#[test]
fn verify_reports_a_flipped_byte() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    p.run(&["verify"]).expect_code(0);
    let victim = objects(&p.path().join(".histodiff/objects"))
        .into_iter()
        .next()
        .expect("an object");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0x01;
    let mut perms = std::fs::metadata(&victim).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&victim, perms).unwrap();
    std::fs::write(&victim, bytes).unwrap();
    let out = p.run(&["verify"]).expect_code(3);
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        out.stderr.contains(&name),
        "the damaged object is named: {}",
        out.stderr
    );
}

#[test]
fn malformed_pipelines_exit_2_with_a_location_and_touch_no_store() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipelines/malformed");
    let mut checked = 0;
    for entry in std::fs::read_dir(&corpus).unwrap().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let p = Project::new();
        let file = p.path().join(path.file_name().unwrap());
        std::fs::copy(&path, &file).unwrap();
        for command in ["run", "plan"] {
            let out = p.run(&[command, file.to_str().unwrap()]).expect_code(2);
            let located = out.stderr.lines().any(|l| {
                l.split_once(".yaml:")
                    .map(|(_, rest)| rest.split(':').take(2).all(|n| n.parse::<u32>().is_ok()))
                    .unwrap_or(false)
            });
            assert!(
                located,
                "{}: `{command}` names file:line:col\n{}",
                path.display(),
                out.stderr
            );
            assert!(
                !p.path().join(".histodiff").exists(),
                "{}: no store created",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "the malformed corpus has only {checked} files"
    );
}

/// `run` opens an existing store while it still expands the stages; a pipeline whose
/// settings are fine but whose stages are not still exits 2 and records no run.
#[test]
fn a_bad_stage_next_to_an_existing_store_records_no_run() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    let runs = || p.run(&["status"]).expect_code(0).stdout;
    let before = runs();
    p.pipeline(&SWEEP.replace("inputs: { src: source }", "inputs: { src: nowhere }"));
    let out = p.run(&["run", pipeline]).expect_code(2);
    assert!(out.stderr.contains("nowhere"), "{}", out.stderr);
    assert_eq!(runs(), before, "the failed run left no trace in the store");
    p.pipeline(SWEEP);
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(
        count(&p.executions(), "source"),
        1,
        "the store still serves hits"
    );
}

#[test]
fn artifacts_come_out_with_cat_ls_and_export() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    assert_eq!(
        p.run(&["cat", "branch[n=2].result"]).expect_code(0).stdout,
        "data\n2\n"
    );
    let ls = p.run(&["ls"]).expect_code(0).stdout;
    assert!(
        ls.contains("branch[n=3].result") && ls.contains("report.table"),
        "{ls}"
    );
    let dest = p.path().join("exported.txt");
    p.run(&["export", "source", dest.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "data\n");
    std::fs::write(&dest, "editable").unwrap();
    p.run(&["verify"]).expect_code(0);
    p.run(&["cat", "nonexistent"]).expect_code(2);
    let lineage = p
        .run(&["lineage", "report", "--format", "dot"])
        .expect_code(0)
        .stdout;
    assert!(
        lineage.starts_with("digraph") && lineage.contains("branch[n=1]"),
        "{lineage}"
    );
    let why = p.run(&["why", "branch"]).expect_code(0).stdout;
    assert!(why.contains("branch[n=1]"), "{why}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `histodiff status | head -1` closes the pipe early; that is not an error of ours.
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors; the read end is closed at once, so every
    // write to the other end fails with EPIPE, deterministically.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is ours and handed over exactly once.
    let stdout = unsafe { <std::process::Stdio as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let out = p.command(&["status"]).stdout(stdout).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}
