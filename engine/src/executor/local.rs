//! The local executor: each execution is a child process `histodiff worker JOB` of the
//! orchestrator, in its own process group (so a terminal Ctrl-C reaches the orchestrator,
//! which decides what the workers get). Stdout carries events; stderr goes to
//! `work_dir/worker.log`.
//!
//! A `command` job is run in the orchestrator instead (on a blocking thread): its program
//! is a process of its own, so a crash there cannot touch the orchestrator, and starting a
//! libtorch-linked worker for a one-line shell command would cost more than the command.
//! `HISTODIFF_INLINE_COMMANDS=0` sends commands through worker processes too.

use super::{Cancel, EventSink, Executor, ExecutorError, ExecutorEvent, Submission, WorkerExit};
use crate::command::{stderr_tail, CommandStage};
use crate::protocol::Event;
use crate::registry::COMMAND_KIND;
use crate::store::liveness::hostname;
use crate::worker::run_job;
use async_trait::async_trait;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

/// Runs workers on this machine.
pub struct LocalExecutor {
    /// The `histodiff` binary (the orchestrator's own executable).
    pub program: PathBuf,
    /// Run `command` jobs in this process (see the module doc).
    pub inline_commands: bool,
}

impl LocalExecutor {
    pub fn new(program: PathBuf) -> Self {
        let inline_commands = std::env::var("HISTODIFF_INLINE_COMMANDS")
            .map(|v| v != "0")
            .unwrap_or(true);
        LocalExecutor {
            program,
            inline_commands,
        }
    }

    /// Whether this is a `command` job this executor runs in-process.
    fn runs_inline(&self, s: &Submission) -> bool {
        self.inline_commands && s.job.kind == COMMAND_KIND
    }

    /// Runs a `command` job on a blocking thread; cancellation raises its interrupt flag.
    /// Its events reach the sink as values and its result comes back in memory: no
    /// process boundary, so no JSON and no `result.json`.
    async fn execute_inline(
        &self,
        s: &Submission,
        events: EventSink,
        mut cancel: watch::Receiver<Cancel>,
    ) -> Result<WorkerExit, ExecutorError> {
        events(ExecutorEvent::Started {
            worker_id: std::process::id().to_string(),
            host: hostname(),
        });
        let interrupt = Arc::new(AtomicBool::new(false));
        let flag = interrupt.clone();
        let env = allocation_env(&s.allocation);
        let forward = move |event| events(ExecutorEvent::Worker(event));
        let job = s.job.clone();
        let run = tokio::task::spawn_blocking(move || {
            let command = CommandStage {
                die_with_parent: false,
                env,
            };
            run_job(&job, &[], &command, flag, Box::new(forward))
        });
        tokio::pin!(run);
        let joined = loop {
            tokio::select! {
                joined = &mut run => break joined,
                changed = cancel.changed() => {
                    if changed.is_err() {
                        cancel = watch::channel(Cancel::Keep).1;
                    } else if *cancel.borrow() != Cancel::Keep {
                        interrupt.store(true, Ordering::SeqCst);
                    }
                }
            }
        };
        let lost = |message: String| ExecutorError::Lost {
            instance: s.instance.clone(),
            message,
        };
        let (code, result) = joined.map_err(|e| lost(e.to_string()))?;
        Ok(WorkerExit {
            code: Some(code),
            signal: None,
            log_tail: String::new(),
            result: Some(result),
        })
    }

    fn command(&self, s: &Submission) -> Result<Command, ExecutorError> {
        s.write_job_file()?;
        let log = std::fs::File::create(s.work_dir.join("worker.log")).map_err(|source| {
            ExecutorError::Spawn {
                instance: s.instance.clone(),
                source,
            }
        })?;
        let mut cmd = Command::new(&self.program);
        cmd.arg("worker")
            .arg(&s.job_file)
            .current_dir(&s.work_dir)
            .envs(allocation_env(&s.allocation))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        Ok(cmd)
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn execute(
        &self,
        s: &Submission,
        events: EventSink,
        mut cancel: watch::Receiver<Cancel>,
    ) -> Result<WorkerExit, ExecutorError> {
        if self.runs_inline(s) {
            return self.execute_inline(s, events, cancel).await;
        }
        let mut child = self
            .command(s)?
            .spawn()
            .map_err(|source| ExecutorError::Spawn {
                instance: s.instance.clone(),
                source,
            })?;
        let pid = child.id().unwrap_or(0) as i32;
        events(ExecutorEvent::Started {
            worker_id: pid.to_string(),
            host: hostname(),
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut reading = true;
        let mut sent = Cancel::Keep;
        let status = loop {
            tokio::select! {
                line = lines.next_line(), if reading => match line {
                    Ok(Some(line)) => events(ExecutorEvent::Worker(parse_event(&line))),
                    _ => reading = false,
                },
                changed = cancel.changed() => {
                    let wanted = *cancel.borrow();
                    if changed.is_err() || wanted <= sent {
                        // Sender gone or nothing new: keep waiting for the worker.
                        if changed.is_err() { cancel = watch::channel(sent).1; }
                        continue;
                    }
                    sent = wanted;
                    signal_group(pid, wanted);
                }
                status = child.wait() => break status,
            }
        };
        // Drain what the worker printed before it exited.
        while let Ok(Some(line)) = lines.next_line().await {
            events(ExecutorEvent::Worker(parse_event(&line)));
        }
        let status = status.map_err(|e| ExecutorError::Lost {
            instance: s.instance.clone(),
            message: e.to_string(),
        })?;
        if status.signal().is_some() {
            // A killed worker may leave children (a command's shell) behind.
            signal_group(pid, Cancel::Kill);
        }
        Ok(WorkerExit {
            code: status.code(),
            signal: status.signal(),
            log_tail: stderr_tail(&s.work_dir.join("worker.log")),
            result: None,
        })
    }
}

/// What a worker (or an in-process command) may use: only its GPUs, its thread count.
fn allocation_env(a: &super::Allocation) -> Vec<(String, String)> {
    let threads = a.threads.max(1).to_string();
    let gpus: Vec<String> = a.gpus.iter().map(u32::to_string).collect();
    vec![
        ("CUDA_VISIBLE_DEVICES".into(), gpus.join(",")),
        ("OMP_NUM_THREADS".into(), threads.clone()),
        ("MKL_NUM_THREADS".into(), threads.clone()),
        ("HISTODIFF_THREADS".into(), threads),
    ]
}

/// A stdout line as an event; anything that is not one becomes a log line.
fn parse_event(line: &str) -> Event {
    serde_json::from_str(line).unwrap_or_else(|_| Event::Log {
        level: "info".into(),
        message: line.to_string(),
    })
}

fn signal_group(pid: i32, cancel: Cancel) {
    let signal = match cancel {
        Cancel::Keep => return,
        Cancel::Interrupt => libc::SIGINT,
        Cancel::Kill => libc::SIGKILL,
    };
    if pid > 0 {
        // SAFETY: kill(2) on the worker's own process group.
        unsafe { libc::kill(-pid, signal) };
    }
}
