//! One execution of one stage key, as a task of the scheduler: reserve the key in the
//! store (waiting while another orchestrator holds it), prepare the job ([`prepare`]),
//! run the worker while forwarding its events ([`worker_events`]), and record the outcome
//! ([`record`]). The reservation is released on every path.
//!
//! [`prepare`]: super::prepare
//! [`worker_events`]: super::worker_events
//! [`record`]: super::record

use super::keys::Outputs;
use super::observer::{Observer, RunEvent};
use super::prepare::prepare;
use super::record::{hashes_of, record, record_unprepared, store_failure};
use super::worker_events::{run_worker, WorkerEnd};
use crate::executor::{Allocation, Cancel, Executor, JobOutcome, Submission};
use crate::fingerprint::Fingerprint;
use crate::hash::StageKey;
use crate::plan::Plan;
use crate::protocol::JOB_FILE;
use crate::store::{Holder, NewExecution, Reservation, RunId, Store, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often a waiting orchestrator looks whether the holder of a key has finished.
const RESERVATION_POLL: Duration = Duration::from_millis(200);

/// What every execution task of a run shares.
pub struct RunContext {
    pub plan: Arc<Plan>,
    pub store: Arc<dyn Store>,
    pub executor: Arc<dyn Executor>,
    pub observer: Arc<dyn Observer>,
    pub run_id: RunId,
    /// This orchestrator, as the holder of its reservations.
    pub holder: Holder,
    /// Keys reserved now (the heartbeat keeps them alive).
    pub reserved: Mutex<HashSet<StageKey>>,
}

/// A key to execute, led by one instance (others with the same key wait on it).
#[derive(Debug, Clone)]
pub struct Launch {
    pub instance: usize,
    pub key: StageKey,
    pub fingerprint: Fingerprint,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Failed(String),
    Interrupted,
}

/// How an execution task ended.
pub struct ExecutionEnd {
    pub allocation: Allocation,
    pub result: Result<Outputs, Failure>,
    /// False when another orchestrator produced the outputs while this one waited.
    pub executed: bool,
}

/// Runs one launch to its end; never panics on worker or store trouble.
pub async fn execute(
    ctx: &RunContext,
    launch: &Launch,
    allocation: Allocation,
    mut cancel: watch::Receiver<Cancel>,
) -> ExecutionEnd {
    let end = |result, executed| ExecutionEnd {
        allocation: allocation.clone(),
        result,
        executed,
    };
    match reserve(ctx, launch, &mut cancel).await {
        Err(failure) => end(Err(failure), false),
        Ok(Some(outputs)) => end(Ok(outputs), false),
        Ok(None) => {
            let (result, finished) = run_reserved(ctx, launch, &allocation, cancel).await;
            ctx.reserved.lock().map(|mut r| r.remove(&launch.key)).ok();
            // Finishing the execution released the key; only an early store error did not.
            if finished == Finished::No {
                release(ctx, &launch.key).await;
            }
            end(result, true)
        }
    }
}

/// Whether the execution's end reached the store (which also released its key).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Finished {
    Yes,
    No,
}

async fn release(ctx: &RunContext, key: &StageKey) {
    if let Err(e) = ctx.store.release(key, &ctx.holder).await {
        tracing::warn!("cannot release the reservation of {}: {e}", key.short());
    }
}

/// Takes the key's reservation (`Ok(None)`), or the outputs another orchestrator
/// produced while this one waited (`Ok(Some(..))`).
async fn reserve(
    ctx: &RunContext,
    launch: &Launch,
    cancel: &mut watch::Receiver<Cancel>,
) -> Result<Option<Outputs>, Failure> {
    let mut announced = false;
    loop {
        match ctx
            .store
            .reserve(&launch.key, &ctx.holder)
            .await
            .map_err(store_failure)?
        {
            Reservation::Reserved => {
                // The holder may have finished between our lookup and our reservation.
                return match cached(ctx, &launch.key).await.map_err(store_failure)? {
                    Some(outputs) => {
                        let _ = ctx.store.release(&launch.key, &ctx.holder).await;
                        Ok(Some(outputs))
                    }
                    None => {
                        ctx.reserved
                            .lock()
                            .map(|mut r| r.insert(launch.key.clone()))
                            .ok();
                        Ok(None)
                    }
                };
            }
            Reservation::HeldBy(_) => {
                if !announced {
                    announced = true;
                    let instance = ctx.plan.instances[launch.instance].name.clone();
                    ctx.observer.on(RunEvent::Waiting {
                        instance,
                        key: launch.key.clone(),
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(RESERVATION_POLL) => {}
                    _ = cancel.changed() => return Err(Failure::Interrupted),
                }
                if let Some(outputs) = cached(ctx, &launch.key).await.map_err(store_failure)? {
                    return Ok(Some(outputs));
                }
            }
        }
    }
}

async fn cached(ctx: &RunContext, key: &StageKey) -> Result<Option<Outputs>, StoreError> {
    Ok(ctx
        .store
        .cached(key)
        .await?
        .map(|hit| hashes_of(&hit.outputs)))
}

/// Executes a reserved key and records the outcome.
async fn run_reserved(
    ctx: &RunContext,
    launch: &Launch,
    allocation: &Allocation,
    cancel: watch::Receiver<Cancel>,
) -> (Result<Outputs, Failure>, Finished) {
    let inst = &ctx.plan.instances[launch.instance];
    let id = match ctx.store.start_execution(&new_execution(ctx, launch)).await {
        Ok(id) => id,
        Err(e) => return (Err(store_failure(e)), Finished::No),
    };
    ctx.observer.on(RunEvent::Started {
        instance: inst.name.clone(),
        key: launch.key.clone(),
        attempt: launch.attempt,
    });
    let device = if allocation.gpus.is_empty() {
        "cpu".to_string()
    } else {
        "cuda:0".to_string()
    };
    let recorded = match prepare(ctx, launch, id, device, allocation.threads).await {
        Ok(job) => {
            let submission = Submission {
                instance: inst.name.clone(),
                job_file: job.work_dir.join(JOB_FILE),
                work_dir: job.work_dir.clone(),
                job: Arc::new(job),
                allocation: allocation.clone(),
            };
            let end = run_submission(ctx, &submission, id, cancel).await;
            record(ctx, id, &submission.job, end).await
        }
        Err(error) => record_unprepared(ctx, id, error).await,
    };
    match recorded {
        Ok(result) => (result, Finished::Yes),
        Err(e) => (Err(store_failure(e)), Finished::No),
    }
}

/// The execution row of a launch.
fn new_execution(ctx: &RunContext, launch: &Launch) -> NewExecution {
    let inst = &ctx.plan.instances[launch.instance];
    NewExecution {
        run_id: ctx.run_id,
        stage_key: launch.key.clone(),
        stage: inst.stage.clone(),
        instance: inst.name.clone(),
        kind: inst.kind.clone(),
        kind_version: inst.kind_version,
        attempt: launch.attempt,
        fingerprint: launch.fingerprint.canonical_json(),
    }
}

/// Runs the worker; a failure after the user asked to kill is an interruption.
async fn run_submission(
    ctx: &RunContext,
    submission: &Submission,
    id: crate::store::ExecutionId,
    cancel: watch::Receiver<Cancel>,
) -> WorkerEnd {
    let mut end = run_worker(ctx, submission, id, cancel.clone()).await;
    if matches!(end.outcome, JobOutcome::Failed(_)) && *cancel.borrow() != Cancel::Keep {
        // Killed on the user's request (a second Ctrl-C): not a failure of the stage.
        end.outcome = JobOutcome::Interrupted("killed on request".into());
    }
    end
}
