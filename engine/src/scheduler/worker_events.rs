//! Running the worker through the executor while its events flow to the observer (the
//! terminal) and the store (worker info, metrics, checkpoints, throttled progress).
//!
//! Where the worker runs is written once the execution has run for [`WORKER_RECORD_DELAY`]
//! (it is then `running`); a shorter one hands it to its outcome's write instead. A
//! shell command of a few milliseconds thus costs the store one write fewer, and SQLite
//! takes one writer at a time.

use super::execution::RunContext;
use super::observer::RunEvent;
use super::progress::{ProgressReport, ProgressThrottle, PROGRESS_INTERVAL};
use crate::executor::{outcome, Cancel, EventSink, ExecutorEvent, JobOutcome, Submission};
use crate::protocol::{Event, Job};
use crate::store::{ExecutionId, WorkerInfo};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long an execution runs before where its worker runs is written on its own.
pub const WORKER_RECORD_DELAY: Duration = Duration::from_millis(500);

/// How a worker ended, with where it ran when that is not written yet.
pub struct WorkerEnd {
    pub outcome: JobOutcome,
    pub worker: Option<WorkerInfo>,
}

/// Events of one execution on their way to the store.
struct Forwarding<'a> {
    ctx: &'a RunContext,
    id: ExecutionId,
    job: &'a Job,
    throttle: ProgressThrottle,
    /// Where the worker runs, until it is written, and when that is due.
    worker: Option<(WorkerInfo, tokio::time::Instant)>,
}

/// Runs the worker, forwarding its events to the observer and the store.
pub async fn run_worker(
    ctx: &RunContext,
    submission: &Submission,
    id: ExecutionId,
    cancel: watch::Receiver<Cancel>,
) -> WorkerEnd {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: EventSink = Arc::new(move |e| {
        let _ = tx.send(e);
    });
    let run = ctx.executor.execute(submission, sink, cancel);
    tokio::pin!(run);
    let mut f = Forwarding {
        ctx,
        id,
        job: &submission.job,
        throttle: ProgressThrottle::new(PROGRESS_INTERVAL),
        worker: None,
    };
    let exit = loop {
        let progress_due = f.throttle.deadline();
        let worker_due = f.worker.as_ref().map(|(_, due)| *due);
        tokio::select! {
            exit = &mut run => break exit,
            Some(event) = rx.recv() => f.forward(event).await,
            _ = sleep_until(progress_due) => {
                let report = f.throttle.take_due(tokio::time::Instant::now());
                write_progress(ctx, id, report).await;
            }
            _ = sleep_until(worker_due) => f.write_worker().await,
        }
    };
    while let Ok(event) = rx.try_recv() {
        f.forward(event).await;
    }
    write_progress(ctx, id, f.throttle.flush()).await;
    let outcome = match exit {
        Ok(exit) => outcome(submission, exit),
        Err(e) => JobOutcome::Failed(e.to_string()),
    };
    WorkerEnd {
        outcome,
        worker: f.worker.map(|(worker, _)| worker),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes a progress report the throttle let through (nothing for `None`).
async fn write_progress(ctx: &RunContext, id: ExecutionId, report: Option<ProgressReport>) {
    let Some(r) = report else { return };
    let written = ctx
        .store
        .record_progress(id, r.step, r.total, r.message.as_deref())
        .await;
    if let Err(e) = written {
        tracing::warn!("cannot record the progress of execution {id}: {e}");
    }
}

impl Forwarding<'_> {
    async fn forward(&mut self, event: ExecutorEvent) {
        let (ctx, id, job) = (self.ctx, self.id, self.job);
        let instance = job.instance.clone();
        let stored = match event {
            ExecutorEvent::Started { worker_id, host } => {
                let due = tokio::time::Instant::now() + WORKER_RECORD_DELAY;
                self.worker = Some((worker_info(&worker_id, host, job), due));
                Ok(())
            }
            ExecutorEvent::Worker(Event::Progress {
                step,
                total,
                loss,
                message,
            }) => {
                ctx.observer.on(RunEvent::Progress {
                    instance,
                    step,
                    total,
                    loss,
                });
                let report = ProgressReport {
                    step,
                    total,
                    message,
                };
                let now = tokio::time::Instant::now();
                write_progress(ctx, id, self.throttle.offer(report, now)).await;
                Ok(())
            }
            ExecutorEvent::Worker(Event::Metric { name, step, value }) => {
                ctx.store.record_metric(id, &name, step, value).await
            }
            ExecutorEvent::Worker(Event::Checkpoint { step, file }) => {
                ctx.store.record_checkpoint(&job.key, step, &file).await
            }
            ExecutorEvent::Worker(Event::Log { message, .. }) => {
                ctx.observer.on(RunEvent::Log { instance, message });
                Ok(())
            }
        };
        if let Err(e) = stored {
            tracing::warn!("cannot record an event of execution {id}: {e}");
        }
    }

    /// Writes where the worker runs (the execution is then `running`).
    async fn write_worker(&mut self) {
        let Some((worker, _)) = self.worker.take() else {
            return;
        };
        if let Err(e) = self.ctx.store.set_worker(self.id, &worker).await {
            tracing::warn!("cannot record the worker of execution {}: {e}", self.id);
        }
    }
}

/// Where a worker runs: a Slurm job reports `slurm:<jobid>`, a local worker its pid.
fn worker_info(worker_id: &str, host: String, job: &Job) -> WorkerInfo {
    let slurm_job_id = worker_id
        .strip_prefix(crate::executor::slurm::SLURM_WORKER_PREFIX)
        .map(str::to_string);
    WorkerInfo {
        pid: if slurm_job_id.is_some() {
            None
        } else {
            worker_id.parse().ok()
        },
        host: Some(host),
        device: Some(job.device.clone()),
        slurm_job_id,
    }
}
