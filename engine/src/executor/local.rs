//! The local executor: each execution is a child process `histodiff worker JOB` of the
//! orchestrator, in its own process group (so a terminal Ctrl-C reaches the orchestrator,
//! which decides what the workers get). Stdout carries events; stderr goes to
//! `work_dir/worker.log`.

use super::{Cancel, EventSink, Executor, ExecutorError, ExecutorEvent, Submission, WorkerExit};
use crate::command::stderr_tail;
use crate::protocol::Event;
use async_trait::async_trait;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

/// Runs workers on this machine.
pub struct LocalExecutor {
    /// The `histodiff` binary (the orchestrator's own executable).
    pub program: PathBuf,
}

impl LocalExecutor {
    pub fn new(program: PathBuf) -> Self {
        LocalExecutor { program }
    }

    fn command(&self, s: &Submission) -> Result<Command, ExecutorError> {
        let log = std::fs::File::create(s.work_dir.join("worker.log")).map_err(|source| {
            ExecutorError::Spawn {
                instance: s.instance.clone(),
                source,
            }
        })?;
        let threads = s.allocation.threads.max(1).to_string();
        let gpus: Vec<String> = s.allocation.gpus.iter().map(u32::to_string).collect();
        let mut cmd = Command::new(&self.program);
        cmd.arg("worker")
            .arg(&s.job_file)
            .current_dir(&s.work_dir)
            .env("CUDA_VISIBLE_DEVICES", gpus.join(","))
            .env("OMP_NUM_THREADS", &threads)
            .env("MKL_NUM_THREADS", &threads)
            .env("HISTODIFF_THREADS", &threads)
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
        })
    }
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

/// This machine's name, for the executions table.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}
