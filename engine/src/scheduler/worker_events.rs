//! Running the worker through the executor while its events flow to the observer (the
//! terminal) and the store (worker info, metrics, checkpoints, throttled progress).

use super::execution::RunContext;
use super::observer::RunEvent;
use super::progress::{ProgressReport, ProgressThrottle, PROGRESS_INTERVAL};
use crate::executor::{outcome, Cancel, EventSink, ExecutorEvent, JobOutcome, Submission};
use crate::protocol::{Event, Job};
use crate::store::{ExecutionId, WorkerInfo};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Runs the worker, forwarding its events to the observer and the store.
pub async fn run_worker(
    ctx: &RunContext,
    submission: &Submission,
    id: ExecutionId,
    cancel: watch::Receiver<Cancel>,
) -> JobOutcome {
    let job = &submission.job;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: EventSink = Arc::new(move |e| {
        let _ = tx.send(e);
    });
    let run = ctx.executor.execute(submission, sink, cancel);
    tokio::pin!(run);
    let mut throttle = ProgressThrottle::new(PROGRESS_INTERVAL);
    let exit = loop {
        let due = throttle.deadline();
        tokio::select! {
            exit = &mut run => break exit,
            Some(event) = rx.recv() => forward(ctx, id, job, event, &mut throttle).await,
            _ = sleep_until(due) => {
                let report = throttle.take_due(tokio::time::Instant::now());
                write_progress(ctx, id, report).await;
            }
        }
    };
    while let Ok(event) = rx.try_recv() {
        forward(ctx, id, job, event, &mut throttle).await;
    }
    write_progress(ctx, id, throttle.flush()).await;
    match exit {
        Ok(exit) => outcome(submission, exit),
        Err(e) => JobOutcome::Failed(e.to_string()),
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

async fn forward(
    ctx: &RunContext,
    id: ExecutionId,
    job: &Job,
    event: ExecutorEvent,
    throttle: &mut ProgressThrottle,
) {
    let instance = job.instance.clone();
    let stored = match event {
        ExecutorEvent::Started { worker_id, host } => {
            let worker = worker_info(&worker_id, host, job);
            ctx.store.set_worker(id, &worker).await
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
            write_progress(ctx, id, throttle.offer(report, tokio::time::Instant::now())).await;
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
