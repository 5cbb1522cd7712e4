//! Executors start worker processes for prepared jobs and report how they ended.
//!
//! One [`Executor::execute`] call covers an execution's whole life, which fits both the
//! local executor (spawn `histodiff worker JOB`, read its stdout) and a batch system
//! (submit with `sbatch`, poll `squeue`/`sacct`, follow the worker's event log file,
//! `scancel` on cancel). Events are handed to an [`EventSink`] as they come; cancellation
//! arrives through a watch channel. Whatever happens to the worker — crash, abort, OOM
//! kill — comes back as a [`WorkerExit`], never as a panic in the orchestrator.

pub mod local;
pub mod slurm;

use crate::protocol::{exit, Event, Job, JobResult, RESULT_FILE};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// What the scheduler grants one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// Physical GPU ids; the worker sees them as `cuda:0..` through CUDA_VISIBLE_DEVICES.
    pub gpus: Vec<u32>,
    /// CPU threads.
    pub threads: usize,
    /// Bytes (a Slurm `--mem`; locally only an admission limit).
    pub memory: Option<u64>,
    /// Seconds (a Slurm `--time`).
    pub time: Option<u64>,
}

/// A prepared job: `job.json` written in its work directory for a worker process, and
/// the job itself for an executor that runs it in-process.
#[derive(Debug, Clone)]
pub struct Submission {
    pub instance: String,
    pub job: Arc<Job>,
    pub job_file: PathBuf,
    pub work_dir: PathBuf,
    pub allocation: Allocation,
}

impl Submission {
    /// Writes `job.json` for a worker process to read: executors that start one call this,
    /// so a job run in-process never goes through the file.
    pub fn write_job_file(&self) -> Result<(), ExecutorError> {
        let spawn = |source| ExecutorError::Spawn {
            instance: self.instance.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(&*self.job).map_err(std::io::Error::other);
        std::fs::write(&self.job_file, bytes.map_err(spawn)?).map_err(spawn)
    }
}

/// What an executor reports while a job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorEvent {
    /// The worker started: a pid locally, a job id under Slurm.
    Started {
        worker_id: String,
        host: String,
    },
    Worker(Event),
}

/// Receives events of one execution (the scheduler tags them with the instance).
pub type EventSink = Arc<dyn Fn(ExecutorEvent) + Send + Sync>;

/// How hard the orchestrator wants a job to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cancel {
    Keep,
    /// Checkpoint and stop (SIGINT; `scancel --signal=INT`).
    Interrupt,
    /// Stop now (SIGKILL; `scancel`).
    Kill,
}

/// How the worker process ended.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerExit {
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// The end of the worker's stderr log, for failure messages.
    pub log_tail: String,
    /// The result of a job run in-process; a worker process leaves `result.json` instead.
    pub result: Option<JobResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot start the worker for {instance}: {source}")]
    Spawn {
        instance: String,
        source: std::io::Error,
    },
    #[error("lost track of the worker for {instance}: {message}")]
    Lost { instance: String, message: String },
}

#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs the job to its end, forwarding events; obeys `cancel` while it runs.
    async fn execute(
        &self,
        submission: &Submission,
        events: EventSink,
        cancel: watch::Receiver<Cancel>,
    ) -> Result<WorkerExit, ExecutorError>;
}

/// The meaning of a finished job, from its exit and its result: the executor layer's one
/// outcome type (the store records a [`crate::store::Outcome`], the run an
/// `InstanceOutcome`).
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    Succeeded(JobResult),
    Failed(String),
    /// Checkpointed after an interrupt request (exit 75); running again resumes.
    Interrupted(String),
}

/// The exit status and the result (in memory, else `result.json`) as an [`JobOutcome`].
pub fn outcome(submission: &Submission, worker: WorkerExit) -> JobOutcome {
    let WorkerExit {
        code,
        signal,
        log_tail,
        result,
    } = worker;
    let result = result.or_else(|| {
        std::fs::read(submission.work_dir.join(RESULT_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<JobResult>(&bytes).ok())
    });
    let error = result.as_ref().and_then(|r| r.error.clone());
    match (code, result) {
        (Some(exit::OK), Some(r)) if r.error.is_none() => JobOutcome::Succeeded(r),
        (Some(exit::OK), _) => JobOutcome::Failed("the worker exited 0 without a result".into()),
        (Some(exit::RESUMABLE), _) => {
            JobOutcome::Interrupted(error.unwrap_or_else(|| "interrupted".into()))
        }
        (Some(code), _) => JobOutcome::Failed(match error {
            Some(e) => e,
            None => format!("the worker exited with status {code}\n{log_tail}"),
        }),
        (None, _) => JobOutcome::Failed(killed(signal.unwrap_or(0), &log_tail)),
    }
}

/// The failure message of a worker killed by `signal`.
fn killed(signal: i32, log_tail: &str) -> String {
    let hint = if signal == libc::SIGKILL {
        " — out of memory or killed"
    } else {
        ""
    };
    format!(
        "the worker was killed by signal {signal} ({}){hint}\n{log_tail}",
        signal_name(signal)
    )
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}
