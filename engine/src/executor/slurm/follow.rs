//! Following one submitted Slurm job to its end: the worker's events from the job's
//! stdout file, its state from `squeue`/`scontrol`/`sacct`, its status from the exit
//! file the batch script writes (or Slurm's `ExitCode` when the script was killed), and
//! the orchestrator's cancellation turned into `scancel`.

use super::options::SlurmOptions;
use super::query;
use super::script;
use super::tail::LineTail;
use super::SLURM_WORKER_PREFIX;
use crate::command::stderr_tail;
use crate::executor::{Cancel, EventSink, ExecutorError, ExecutorEvent, Submission, WorkerExit};
use crate::protocol::{exit, Event};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the exit file and the stdout file are looked at.
const TICK: Duration = Duration::from_millis(200);
/// How long a job Slurm calls ended may take to show its exit file (NFS caches).
const EXIT_FILE_GRACE: Duration = Duration::from_secs(5);
/// Consecutive "unknown job" answers before the job counts as lost.
const UNKNOWN_LIMIT: u32 = 3;
/// How one submitted job ended.
pub(super) struct JobEnd {
    pub exit: WorkerExit,
    /// Ended resumable on its own (not because the orchestrator asked).
    pub resubmit: bool,
}
/// Slurm's record of a job that ended: state name and `ExitCode` (`code:signal`).
struct Ended {
    state: String,
    code: i32,
    signal: i32,
}

/// Following one submitted job.
pub(super) struct JobWatch {
    instance: String,
    id: String,
    work_dir: PathBuf,
    pub tail: LineTail,
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
    pub fn new(s: &Submission, id: &str) -> Self {
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

    pub async fn follow(
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
            result: None,
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
                result: None,
            }
        } else if *signal > 0 || matches!(state.as_str(), "TIMEOUT" | "OUT_OF_MEMORY" | "CANCELLED")
        {
            let sig = if *signal > 0 { *signal } else { libc::SIGKILL };
            WorkerExit {
                code: None,
                signal: Some(sig),
                log_tail: self.log_tail(&note),
                result: None,
            }
        } else {
            WorkerExit {
                code: Some(*code),
                signal: None,
                log_tail: self.log_tail(&note),
                result: None,
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

fn read_exit_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A stdout line as an event; anything that is not one becomes a log line.
pub(super) fn parse_event(line: &str) -> Event {
    serde_json::from_str(line).unwrap_or_else(|_| Event::Log {
        level: "info".into(),
        message: line.to_string(),
    })
}
