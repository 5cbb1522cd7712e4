//! The Slurm executor against a real Slurm (scripts/services/slurm.sh starts a one-node
//! cluster and exports SLURM_CONF and HISTODIFF_SLURM=1; scripts/test.sh sources it).
//! The worker is a stand-in script with the worker's contract (events on stdout,
//! `result.json`, exit 0/1/75, USR1 → checkpoint and exit 75), so these tests cover the
//! executor alone: resources reaching the job, events, the environment, failures with
//! their log tail, preemption → resubmission → completion, and cancellation.
//! Without Slurm the tests FAIL, they do not skip.

use histodiff_engine::executor::slurm::{SlurmExecutor, SlurmOptions};
use histodiff_engine::executor::{
    outcome, Allocation, Cancel, EventSink, Executor, ExecutorEvent, JobOutcome, Submission,
};
use histodiff_engine::hash::StageKey;
use histodiff_engine::protocol::{Event, Job};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Stands in for `histodiff worker JOB`; its behaviour comes from the file `mode`.
const FAKE_WORKER: &str = r#"#!/bin/bash
echo '{"event":"progress","step":1,"total":2,"loss":0.5}'
printf '%s\n' "cpus=$SLURM_CPUS_PER_TASK mem=$SLURM_MEM_PER_NODE threads=$HISTODIFF_THREADS marker=$HISTODIFF_TEST_MARKER job=$2" > "env-$SLURM_JOB_ID.txt"
ok() { echo '{"outputs":{},"metrics":{"accuracy":0.9},"error":null}' > result.json; exit 0; }
case "$(cat mode)" in
  ok) ok ;;
  fail) echo "boom: the stand-in worker failed on purpose" >&2; exit 1 ;;
  resumable)
    if [ -f checkpoint ]; then echo '{"event":"log","level":"info","message":"resumed"}'; ok; fi
    trap 'echo step-1 > checkpoint; exit 75' USR1
    echo '{"event":"log","level":"info","message":"waiting"}'
    for i in $(seq 1200); do sleep 0.1; done
    exit 3 ;;
esac
"#;

fn require_slurm() {
    assert_eq!(
        std::env::var("HISTODIFF_SLURM").as_deref(),
        Ok("1"),
        "Slurm is not running: `source scripts/services/slurm.sh` first (scripts/test.sh does)"
    );
}

struct Fixture {
    _dir: tempfile::TempDir,
    submission: Submission,
    program: PathBuf,
}

/// A work directory under target/ (shared with the one-node cluster) with a stand-in
/// worker in `mode`.
fn fixture(mode: &str) -> Fixture {
    require_slurm();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cluster-tests");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let work_dir = dir.path().join("work");
    std::fs::create_dir_all(&work_dir).unwrap();
    let program = dir.path().join("fake-histodiff");
    std::fs::write(&program, FAKE_WORKER).unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(work_dir.join("mode"), mode).unwrap();
    let job_file = work_dir.join("job.json");
    let allocation = Allocation {
        gpus: vec![],
        threads: 1,
        memory: Some(256 << 20),
        time: Some(300),
    };
    let submission = Submission {
        instance: format!("fake[{mode}]"),
        job: Arc::new(stand_in_job(&work_dir, mode)),
        job_file,
        work_dir,
        allocation,
    };
    Fixture {
        _dir: dir,
        submission,
        program,
    }
}

/// The job the executor writes to `job.json` (the stand-in worker does not read it).
fn stand_in_job(work_dir: &Path, mode: &str) -> Job {
    Job {
        execution_id: 1,
        key: StageKey("0".repeat(64)),
        instance: format!("fake[{mode}]"),
        kind: "fake".into(),
        kind_version: 1,
        params: Default::default(),
        external_paths: Default::default(),
        inputs: Default::default(),
        command: None,
        base_dir: work_dir.to_path_buf(),
        work_dir: work_dir.to_path_buf(),
        checkpoint_dir: work_dir.join("checkpoints"),
        objects_dir: work_dir.join("objects"),
        device: "cpu".into(),
        threads: 1,
    }
}

fn executor(program: &Path) -> SlurmExecutor {
    let options = SlurmOptions {
        poll: Duration::from_millis(500),
        ..SlurmOptions::default()
    };
    SlurmExecutor::new(program.to_path_buf(), options)
}

/// Collects events; calls `on_event` with each (and the Slurm job id once known).
fn sink(
    seen: Arc<Mutex<Vec<ExecutorEvent>>>,
    on_event: impl Fn(&ExecutorEvent, Option<&str>) + Send + Sync + 'static,
) -> EventSink {
    let job = Arc::new(Mutex::new(None::<String>));
    Arc::new(move |e: ExecutorEvent| {
        if let ExecutorEvent::Started { worker_id, .. } = &e {
            *job.lock().unwrap() = worker_id.strip_prefix("slurm:").map(str::to_string);
        }
        on_event(&e, job.lock().unwrap().as_deref());
        seen.lock().unwrap().push(e);
    })
}

fn logs(seen: &[ExecutorEvent]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match e {
            ExecutorEvent::Worker(Event::Log { message, .. }) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the Slurm job did not end in time")
}

#[tokio::test]
async fn a_job_runs_with_its_resources_environment_and_events() {
    let fx = fixture("ok");
    std::env::set_var("HISTODIFF_TEST_MARKER", "carried");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_tx, rx) = watch::channel(Cancel::Keep);
    let exec = executor(&fx.program);
    let exit = within(
        120,
        exec.execute(&fx.submission, sink(seen.clone(), |_, _| {}), rx),
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert!(
        matches!(outcome(&fx.submission, exit.clone()), JobOutcome::Succeeded(r) if r.metrics["accuracy"] == 0.9)
    );
    let seen = seen.lock().unwrap();
    let id = seen.iter().find_map(|e| match e {
        ExecutorEvent::Started { worker_id, host } => {
            Some((worker_id.strip_prefix("slurm:")?.to_string(), host.clone()))
        }
        _ => None,
    });
    let (id, host) = id.expect("a Started event with the job id");
    assert!(
        id.chars().all(|c| c.is_ascii_digit()) && !host.is_empty(),
        "{id} on {host}"
    );
    assert!(seen.iter().any(|e| matches!(
        e,
        ExecutorEvent::Worker(Event::Progress {
            step: 1,
            total: 2,
            ..
        })
    )));
    let env =
        std::fs::read_to_string(fx.submission.work_dir.join(format!("env-{id}.txt"))).unwrap();
    let job = fx.submission.job_file.display();
    assert_eq!(
        env.trim(),
        format!("cpus=1 mem=256 threads=1 marker=carried job={job}")
    );
}

#[tokio::test]
async fn a_failed_job_reports_its_status_and_log_tail() {
    let fx = fixture("fail");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_tx, rx) = watch::channel(Cancel::Keep);
    let exit = within(
        120,
        executor(&fx.program).execute(&fx.submission, sink(seen, |_, _| {}), rx),
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(1));
    assert!(
        exit.log_tail
            .contains("boom: the stand-in worker failed on purpose"),
        "{}",
        exit.log_tail
    );
    assert!(
        matches!(outcome(&fx.submission, exit.clone()), JobOutcome::Failed(m) if m.contains("boom"))
    );
}

/// Preemption: USR1 reaches the batch shell from outside (as `--signal=B:USR1@N` or a
/// preempting scheduler would send it), the worker checkpoints and exits 75, the
/// executor resubmits, and the second job resumes and completes.
#[tokio::test]
async fn a_preempted_job_is_resubmitted_and_resumes() {
    let fx = fixture("resumable");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_tx, rx) = watch::channel(Cancel::Keep);
    let preempt = |e: &ExecutorEvent, job: Option<&str>| {
        if let (ExecutorEvent::Worker(Event::Log { message, .. }), Some(id)) = (e, job) {
            if message == "waiting" {
                let status = std::process::Command::new("scancel")
                    .args(["--batch", "--signal=USR1", id])
                    .status();
                assert!(status.unwrap().success(), "scancel --signal=USR1 {id}");
            }
        }
    };
    let exit = within(
        180,
        executor(&fx.program).execute(&fx.submission, sink(seen.clone(), preempt), rx),
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    assert_eq!(
        std::fs::read_to_string(fx.submission.work_dir.join("checkpoint"))
            .unwrap()
            .trim(),
        "step-1"
    );
    let logs = logs(&seen.lock().unwrap());
    assert!(
        logs.iter().any(|m| m.contains("resubmitting (1/3)")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|m| m == "resumed"), "{logs:?}");
    let starts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ExecutorEvent::Started { .. }))
        .count();
    assert_eq!(starts, 2, "two Slurm jobs");
}

/// Ctrl-C in the orchestrator: the job checkpoints and stops, and is not resubmitted.
#[tokio::test]
async fn an_interrupt_request_checkpoints_and_is_not_resubmitted() {
    let fx = fixture("resumable");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = watch::channel(Cancel::Keep);
    let tx = Arc::new(tx);
    let interrupt = {
        let tx = tx.clone();
        move |e: &ExecutorEvent, _: Option<&str>| {
            if matches!(e, ExecutorEvent::Worker(Event::Log { message, .. }) if message == "waiting")
            {
                tx.send(Cancel::Interrupt).unwrap();
            }
        }
    };
    let exit = within(
        120,
        executor(&fx.program).execute(&fx.submission, sink(seen.clone(), interrupt), rx),
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(75), "{exit:?}");
    assert!(matches!(
        outcome(&fx.submission, exit.clone()),
        JobOutcome::Interrupted(_)
    ));
    assert!(fx.submission.work_dir.join("checkpoint").exists());
    assert!(!logs(&seen.lock().unwrap())
        .iter()
        .any(|m| m.contains("resubmitting")));
}

/// A second Ctrl-C: `scancel`; the job ends at once and is not resubmitted.
#[tokio::test]
async fn a_kill_request_cancels_the_job() {
    let fx = fixture("resumable");
    std::fs::write(fx.submission.work_dir.join("mode"), "resumable").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = watch::channel(Cancel::Keep);
    let tx = Arc::new(tx);
    let kill = {
        let tx = tx.clone();
        move |e: &ExecutorEvent, _: Option<&str>| {
            if matches!(e, ExecutorEvent::Worker(Event::Log { message, .. }) if message == "waiting")
            {
                tx.send(Cancel::Kill).unwrap();
            }
        }
    };
    let exit = within(
        120,
        executor(&fx.program).execute(&fx.submission, sink(seen.clone(), kill), rx),
    )
    .await
    .unwrap();
    assert_ne!(exit.code, Some(0), "{exit:?}");
    assert!(!matches!(
        outcome(&fx.submission, exit.clone()),
        JobOutcome::Succeeded(_)
    ));
    let starts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ExecutorEvent::Started { .. }))
        .count();
    assert_eq!(starts, 1, "not resubmitted");
}

/// `sbatch` refusing the job (an unknown partition) fails the execution with its message.
#[tokio::test]
async fn a_refused_submission_names_sbatchs_reason() {
    let fx = fixture("ok");
    let options = SlurmOptions {
        partition: Some("no-such-partition".into()),
        ..SlurmOptions::default()
    };
    let exec = SlurmExecutor::new(fx.program.clone(), options);
    let (_tx, rx) = watch::channel(Cancel::Keep);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let err = within(60, exec.execute(&fx.submission, sink(seen, |_, _| {}), rx))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("sbatch") && message.to_lowercase().contains("partition"),
        "{message}"
    );
}

/// Interrupting a job that never started removes it from the queue: resumable, nothing ran.
#[tokio::test]
async fn interrupting_a_pending_job_removes_it() {
    let fx = fixture("ok");
    let options = SlurmOptions {
        extra: vec!["--hold".into()],
        poll: Duration::from_millis(300),
        ..SlurmOptions::default()
    };
    let exec = SlurmExecutor::new(fx.program.clone(), options);
    let (tx, rx) = watch::channel(Cancel::Keep);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let interrupt = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send(Cancel::Interrupt).unwrap();
    };
    let (exit, ()) = within(60, async {
        tokio::join!(
            exec.execute(&fx.submission, sink(seen.clone(), |_, _| {}), rx),
            interrupt
        )
    })
    .await;
    let exit = exit.unwrap();
    assert_eq!(exit.code, Some(75), "{exit:?}");
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ExecutorEvent::Started { .. })),
        "it never ran"
    );
    assert!(!fx.submission.work_dir.join("result.json").exists());
}

/// The automatic path: a one-minute job gets `--signal=B:USR1@30` from the executor, Slurm
/// signals it before its time limit, the worker checkpoints (exit 75), and the resubmitted
/// job resumes and completes — nobody sends a signal by hand.
#[tokio::test]
async fn the_time_limit_warning_signal_leads_to_resubmission() {
    let mut fx = fixture("resumable");
    fx.submission.allocation.time = Some(60);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (_tx, rx) = watch::channel(Cancel::Keep);
    let exit = within(
        150,
        executor(&fx.program).execute(&fx.submission, sink(seen.clone(), |_, _| {}), rx),
    )
    .await
    .unwrap();
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let logs = logs(&seen.lock().unwrap());
    assert!(
        logs.iter().any(|m| m.contains("resubmitting (1/3)")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|m| m == "resumed"), "{logs:?}");
}
