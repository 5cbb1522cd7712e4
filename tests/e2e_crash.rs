//! End-to-end: kill -9 of the orchestrator mid-run, then a resume that redoes no recorded
//! stage; kill -9 of a worker is a failed execution while the orchestrator lives on and
//! finishes the independent branch.

mod common;
use common::{count, Project};
use std::time::{Duration, Instant};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_of_the_orchestrator_then_resume_redoes_nothing_recorded() {
    let p = Project::new();
    let yaml = r#"
version: 1
settings: { jobs: 1 }
stages:
  first:
    uses: command
    run: "echo first >> LOG; echo x > ${outs.o}"
    outs: { o: o.txt }
  slow:
    uses: command
    matrix: { n: [1, 2, 3, 4] }
    inputs: { i: first }
    run: "echo slow-${matrix.n} >> LOG; sleep 0.3; echo ${matrix.n} > ${outs.o}"
    outs: { o: o.txt }
"#;
    let pipeline = p.pipeline(yaml);
    let pipeline = pipeline.to_str().unwrap();
    let mut child = p.command(&["run", pipeline]).spawn().unwrap();
    // With one job at a time, slow-2 starts only after slow-1 was recorded.
    wait_until("slow-2 to start", || {
        p.executions().iter().any(|l| l == "slow-2")
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = p.executions();

    p.run(&["run", pipeline]).expect_code(0);
    let log = p.executions();
    assert_eq!(count(&log, "first"), 1, "{log:?}");
    assert_eq!(count(&log, "slow-1"), 1, "{log:?}");
    for n in 2..=4 {
        let name = format!("slow-{n}");
        let expected_max = count(&before, &name) + 1;
        assert!(
            (1..=expected_max).contains(&count(&log, &name)),
            "{name} in {log:?}"
        );
    }
    p.run(&["run", pipeline]).expect_code(0);
    assert_eq!(
        p.executions().len(),
        log.len(),
        "a third run executes nothing"
    );
}

/// A `command` job runs its program as its own process: that process is the worker.
#[test]
fn kill_9_of_a_command_fails_its_stage_only() {
    kill_9_fails_its_stage_only("$$", true);
}

/// Through a `histodiff worker` process (as every libtorch kind runs).
#[test]
fn kill_9_of_a_worker_process_fails_its_stage_only() {
    kill_9_fails_its_stage_only("$PPID", false);
}

fn kill_9_fails_its_stage_only(victim_pid: &str, inline: bool) {
    let p = Project::new();
    let pid_file = p.path().join("victim.pid");
    let yaml = r#"
version: 1
settings: { jobs: 2 }
stages:
  victim:
    uses: command
    run: "echo victim >> LOG; echo VICTIM > PIDFILE; sleep 30; echo x > ${outs.o}"
    outs: { o: o.txt }
  other:
    uses: command
    run: "echo other >> LOG; sleep 0.5; echo ok > ${outs.o}"
    outs: { o: o.txt }
  after_other:
    uses: command
    inputs: { i: other }
    run: "echo after_other >> LOG; cp ${inputs.i} ${outs.o}"
    outs: { o: o.txt }
"#;
    let yaml = yaml
        .replace("PIDFILE", &pid_file.display().to_string())
        .replace("VICTIM", victim_pid);
    let pipeline = p.pipeline(&yaml);
    let mut command = p.command(&["run", pipeline.to_str().unwrap()]);
    command.env("HISTODIFF_INLINE_COMMANDS", if inline { "1" } else { "0" });
    let child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the victim's worker pid", || {
        std::fs::read_to_string(&pid_file)
            .map(|s| s.trim().parse::<i32>().is_ok())
            .unwrap_or(false)
    });
    let worker: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on a process this test started (indirectly).
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    let out = common::Outcome::from(child.wait_with_output().unwrap()).expect_code(1);
    assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
    let log = p.executions();
    assert_eq!(
        count(&log, "after_other"),
        1,
        "independent branch finished: {log:?}"
    );
    let status = p.run(&["status"]).expect_code(0).stdout;
    assert!(
        status
            .lines()
            .any(|l| l.contains("failed") && l.contains("victim")),
        "{status}"
    );
}
