//! The Slurm executor: each execution is an `sbatch` job running `histodiff worker JOB`
//! (this binary, by absolute path, with the orchestrator's library paths exported).
//!
//! While the job lives the executor follows its stdout file (the worker's event lines)
//! on the shared filesystem and asks `squeue` (then `scontrol`, then `sacct`) for its
//! state every `poll`; the worker's status comes from `slurm-<jobid>.exit`, written by
//! the batch script, or from Slurm's `ExitCode` when the script was killed. Cancellation
//! becomes `scancel --batch --signal=USR1` (checkpoint and stop) or `scancel`. A job
//! that ends resumable without being asked to — exit 75 after `--signal=B:USR1@N` near
//! its time limit, preemption, a node failure — is submitted again (same work and
//! checkpoint directories) up to `resubmits` times.

mod follow;
mod options;
mod query;
mod script;
mod tail;

pub use options::{OptionsError, SlurmOptions};
pub use query::{JobState, SlurmError};

use super::{Cancel, EventSink, Executor, ExecutorError, ExecutorEvent, Submission, WorkerExit};
use crate::protocol::Event;
use crate::scheduler::resources::Capacity;
use async_trait::async_trait;
use follow::{parse_event, JobEnd, JobWatch};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::watch;

/// `Started.worker_id` of a Slurm job is `slurm:<jobid>` (a bare number is a local pid):
/// the scheduler records the id in `executions.slurm_job_id`.
pub const SLURM_WORKER_PREFIX: &str = "slurm:";

pub struct SlurmExecutor {
    /// The `histodiff` binary; must be reachable at this path on the compute nodes.
    pub program: PathBuf,
    pub options: SlurmOptions,
}

impl SlurmExecutor {
    pub fn new(program: PathBuf, options: SlurmOptions) -> Self {
        SlurmExecutor { program, options }
    }

    /// From `settings.slurm` of a pipeline file.
    pub fn from_settings(
        program: PathBuf,
        raw: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, OptionsError> {
        Ok(SlurmExecutor::new(
            program,
            SlurmOptions::from_settings(raw)?,
        ))
    }
}

#[async_trait]
impl Executor for SlurmExecutor {
    async fn execute(
        &self,
        s: &Submission,
        events: EventSink,
        mut cancel: watch::Receiver<Cancel>,
    ) -> Result<WorkerExit, ExecutorError> {
        let mut attempt = 0;
        loop {
            let end = self.run_job(s, &events, &mut cancel).await?;
            if !end.resubmit || attempt >= self.options.resubmits {
                return Ok(end.exit);
            }
            attempt += 1;
            log(&events, format!(
                "{}: job ended resumable (preempted or at its time limit); resubmitting ({attempt}/{})",
                s.instance, self.options.resubmits
            ));
        }
    }
}

impl SlurmExecutor {
    /// Submits one job and follows it to its end.
    async fn run_job(
        &self,
        s: &Submission,
        events: &EventSink,
        cancel: &mut watch::Receiver<Cancel>,
    ) -> Result<JobEnd, ExecutorError> {
        let id = self.submit(s).await?;
        log(events, format!("{}: submitted Slurm job {id}", s.instance));
        let mut guard = CancelOnDrop(Some(id.clone()));
        let mut watch = JobWatch::new(s, &id);
        let end = watch.follow(&self.options, events, cancel).await;
        guard.0 = None;
        for line in watch.tail.finish() {
            events(ExecutorEvent::Worker(parse_event(&line)));
        }
        end
    }

    async fn submit(&self, s: &Submission) -> Result<String, ExecutorError> {
        s.write_job_file()?;
        let spawn = |e: std::io::Error| ExecutorError::Spawn {
            instance: s.instance.clone(),
            source: e,
        };
        let spec = script::ScriptSpec {
            instance: &s.instance,
            program: &self.program,
            job_file: &s.job_file,
            work_dir: &s.work_dir,
            threads: s.allocation.threads,
            gpus: s.allocation.gpus.len(),
        };
        let script_path = s.work_dir.join("slurm-batch.sh");
        std::fs::write(&script_path, script::batch_script(&spec, std::env::vars()))
            .map_err(spawn)?;
        let events_file = s.work_dir.join("slurm-%j.out");
        let log_file = s.work_dir.join("worker.log");
        let mut args = self.options.sbatch_args(
            &s.allocation,
            &job_name(&s.instance),
            &events_file.to_string_lossy(),
            &log_file.to_string_lossy(),
        );
        args.push(format!("--chdir={}", s.work_dir.display()));
        args.push(script_path.to_string_lossy().into_owned());
        query::sbatch(&args)
            .await
            .map_err(|e| spawn(std::io::Error::other(e.to_string())))
    }
}

/// What the scheduler may hand out when executions go to Slurm: `jobs` in the queue at
/// once, each with what its `resources:` ask (the cluster, not this machine, decides where
/// they fit; the GPU ids are placeholders that become `--gres=gpu:N`).
pub fn cluster_capacity(jobs: usize) -> Capacity {
    let jobs = jobs.max(1);
    Capacity {
        jobs,
        cpus: jobs * 1024,
        gpus: (0..(jobs * 64) as u32).collect(),
        memory: None,
    }
}

/// Cancels the job if the orchestrator stops following it (its future dropped).
struct CancelOnDrop(Option<String>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            let _ = std::process::Command::new("scancel").arg(&id).status();
        }
    }
}
/// Slurm job names are shown truncated; keep them short and free of odd characters.
fn job_name(instance: &str) -> String {
    let name: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.=,[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("hd-{name}")
}

fn log(events: &EventSink, message: String) {
    events(ExecutorEvent::Worker(Event::Log {
        level: "info".into(),
        message,
    }));
}
