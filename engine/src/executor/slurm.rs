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

mod options;
mod query;
mod script;
mod tail;

pub use options::{OptionsError, SlurmOptions};
pub use query::{JobState, SlurmError};

use super::{Cancel, EventSink, Executor, ExecutorError, ExecutorEvent, Submission, WorkerExit};
use crate::command::stderr_tail;
use crate::protocol::{exit, Event};
use crate::scheduler::resources::Capacity;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tail::LineTail;
use tokio::sync::watch;

/// `Started.worker_id` of a Slurm job is `slurm:<jobid>` (a bare number is a local pid):
/// the scheduler records the id in `executions.slurm_job_id`.
pub const SLURM_WORKER_PREFIX: &str = "slurm:";

/// How often the exit file and the stdout file are looked at.
const TICK: Duration = Duration::from_millis(200);
/// How long a job Slurm calls ended may take to show its exit file (NFS caches).
const EXIT_FILE_GRACE: Duration = Duration::from_secs(5);
/// Consecutive "unknown job" answers before the job counts as lost.
const UNKNOWN_LIMIT: u32 = 3;

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

/// How one submitted job ended.
struct JobEnd {
    exit: WorkerExit,
    /// Ended resumable on its own (not because the orchestrator asked).
    resubmit: bool,
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

/// Slurm's record of a job that ended: state name and `ExitCode` (`code:signal`).
struct Ended {
    state: String,
    code: i32,
    signal: i32,
}

/// Following one submitted job.
struct JobWatch {
    instance: String,
    id: String,
    work_dir: PathBuf,
    tail: LineTail,
    exit_file: PathBuf,
    started: bool,
    /// Where the job runs (from the last answer that named a node).
    node: String,
    /// Consecutive polls Slurm did not know the job.
    unknown: u32,
    /// Strongest cancellation sent so far.
    sent: Cancel,
    /// The job was cancelled before it ever ran.
    cancelled_waiting: bool,
}

impl JobWatch {
    fn new(s: &Submission, id: &str) -> Self {
        JobWatch {
            instance: s.instance.clone(),
            id: id.to_string(),
            work_dir: s.work_dir.clone(),
            tail: LineTail::new(s.work_dir.join(format!("slurm-{id}.out"))),
            exit_file: s.work_dir.join(script::exit_file_name(id)),
            started: false,
            node: String::new(),
            unknown: 0,
            sent: Cancel::Keep,
            cancelled_waiting: false,
        }
    }

    async fn follow(
        &mut self,
        options: &SlurmOptions,
        events: &EventSink,
        cancel: &mut watch::Receiver<Cancel>,
    ) -> Result<JobEnd, ExecutorError> {
        let mut next_poll = Instant::now();
        let mut ended_at: Option<(Instant, Ended)> = None;
        loop {
            let lines = self.tail.read_lines();
            let status = read_exit_file(&self.exit_file);
            let has_run = !lines.is_empty() || status.is_some();
            if ended_at.is_none() && (Instant::now() >= next_poll || (has_run && !self.started)) {
                // Output before `Started` would be recorded against no worker: learn the
                // node first.
                next_poll = Instant::now() + options.poll;
                if let Some(ended) = self.poll(events).await? {
                    ended_at = Some((Instant::now(), ended));
                }
            }
            if has_run || (ended_at.is_some() && !self.cancelled_waiting) {
                self.mark_started(events);
            }
            for line in lines {
                events(ExecutorEvent::Worker(parse_event(&line)));
            }
            if let Some(code) = status {
                return Ok(self.end_from_status(code));
            }
            if let Some((at, ended)) = &ended_at {
                if at.elapsed() >= EXIT_FILE_GRACE {
                    return Ok(self.end_from_slurm(ended));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                changed = cancel.changed() => {
                    if changed.is_err() {
                        // The sender is gone: nobody will cancel any more.
                        *cancel = watch::channel(self.sent).1;
                    } else {
                        let wanted = *cancel.borrow();
                        self.send_cancel(wanted).await;
                    }
                }
            }
        }
    }

    /// Asks Slurm once; `Some` when the job has ended.
    async fn poll(&mut self, events: &EventSink) -> Result<Option<Ended>, ExecutorError> {
        let state = query::state(&self.id)
            .await
            .map_err(|e| self.lost(e.to_string()))?;
        if !matches!(state, query::JobState::Unknown) {
            self.unknown = 0;
        }
        match state {
            query::JobState::Waiting => Ok(None),
            query::JobState::Running { node } => {
                self.node = node;
                self.mark_started(events);
                Ok(None)
            }
            query::JobState::Ended {
                state,
                code,
                signal,
                node,
            } => {
                self.node = node;
                Ok(Some(Ended {
                    state,
                    code,
                    signal,
                }))
            }
            query::JobState::Unknown => {
                self.unknown += 1;
                if self.unknown >= UNKNOWN_LIMIT {
                    return Err(self
                        .lost("Slurm no longer knows the job and it left no exit status".into()));
                }
                Ok(None)
            }
        }
    }

    /// Reports the job id and node once, before any of the worker's events.
    fn mark_started(&mut self, events: &EventSink) {
        if !self.started {
            self.started = true;
            events(ExecutorEvent::Started {
                worker_id: format!("{SLURM_WORKER_PREFIX}{}", self.id),
                host: self.node.clone(),
            });
        }
    }

    /// Interrupt: USR1 to the batch shell (forwarded to the worker, which checkpoints and
    /// exits 75); a job still waiting is simply removed. Kill: `scancel`.
    async fn send_cancel(&mut self, wanted: Cancel) {
        if wanted <= self.sent {
            return;
        }
        self.sent = wanted;
        let waiting = matches!(query::state(&self.id).await, Ok(query::JobState::Waiting));
        let signal = match wanted {
            Cancel::Keep => return,
            Cancel::Interrupt if !waiting => Some("USR1"),
            _ => None,
        };
        self.cancelled_waiting |= waiting && !self.started;
        if let Err(e) = query::scancel(&self.id, signal).await {
            tracing::warn!("{}: {e}", self.instance);
        }
    }

    /// The worker's status as the batch script recorded it (`128+n`: killed by signal n).
    fn end_from_status(&self, status: i32) -> JobEnd {
        let (code, signal) = if status > 128 {
            (None, Some(status - 128))
        } else {
            (Some(status), None)
        };
        let exit = WorkerExit {
            code,
            signal,
            log_tail: self.log_tail(""),
        };
        let resubmit = code == Some(exit::RESUMABLE) && self.sent == Cancel::Keep;
        JobEnd { exit, resubmit }
    }

    /// The job ended without the batch script recording a status: Slurm killed it.
    fn end_from_slurm(&self, ended: &Ended) -> JobEnd {
        let Ended {
            state,
            code,
            signal,
        } = ended;
        let note = format!(
            "Slurm job {} ended {state} (ExitCode {code}:{signal})",
            self.id
        );
        let resumable_state = matches!(state.as_str(), "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL");
        let exit = if self.cancelled_waiting || resumable_state {
            WorkerExit {
                code: Some(exit::RESUMABLE),
                signal: None,
                log_tail: self.log_tail(&note),
            }
        } else if *signal > 0 || matches!(state.as_str(), "TIMEOUT" | "OUT_OF_MEMORY" | "CANCELLED")
        {
            let sig = if *signal > 0 { *signal } else { libc::SIGKILL };
            WorkerExit {
                code: None,
                signal: Some(sig),
                log_tail: self.log_tail(&note),
            }
        } else {
            WorkerExit {
                code: Some(*code),
                signal: None,
                log_tail: self.log_tail(&note),
            }
        };
        JobEnd {
            exit,
            resubmit: resumable_state && self.sent == Cancel::Keep,
        }
    }

    fn log_tail(&self, note: &str) -> String {
        let tail = stderr_tail(&self.work_dir.join("worker.log"));
        match (note.is_empty(), tail.is_empty()) {
            (true, _) => tail,
            (false, true) => note.to_string(),
            (false, false) => format!("{tail}\n{note}"),
        }
    }

    fn lost(&self, message: String) -> ExecutorError {
        ExecutorError::Lost {
            instance: self.instance.clone(),
            message: format!("Slurm job {}: {message}", self.id),
        }
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

fn read_exit_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
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

/// A stdout line as an event; anything that is not one becomes a log line.
fn parse_event(line: &str) -> Event {
    serde_json::from_str(line).unwrap_or_else(|_| Event::Log {
        level: "info".into(),
        message: line.to_string(),
    })
}

fn log(events: &EventSink, message: String) {
    events(ExecutorEvent::Worker(Event::Log {
        level: "info".into(),
        message,
    }));
}
