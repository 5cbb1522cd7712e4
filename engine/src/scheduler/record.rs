//! Recording an execution's end: the outcome, its lineage edges and metrics in one store
//! transaction, and the work directory cleared after a success.

use super::execution::{Failure, RunContext};
use super::keys::Outputs;
use super::worker_events::WorkerEnd;
use crate::executor::JobOutcome;
use crate::hash::StageKey;
use crate::protocol::Job;
use crate::store::{self, CachedExecution, ExecutionId, InputEdge, StoreError};
use std::collections::HashMap;
use std::sync::Arc;

/// A store error as the failure of the execution it interrupted.
pub fn store_failure(e: StoreError) -> Failure {
    Failure::Failed(format!("store: {e}"))
}

/// Records the outcome in one transaction (the outer error: the store could not) and
/// clears a successful job's work directory.
pub async fn record(
    ctx: &RunContext,
    id: ExecutionId,
    job: &Job,
    end: WorkerEnd,
) -> Result<Result<Outputs, Failure>, StoreError> {
    let (stored, result) = match end.outcome {
        JobOutcome::Succeeded(result) => {
            let outputs = hashes_of(&result.outputs);
            let stored = store::Outcome::Succeeded {
                outputs: result.outputs,
                inputs: input_edges(job),
                metrics: result.metrics,
            };
            (stored, Ok(outputs))
        }
        JobOutcome::Failed(error) => (
            store::Outcome::Failed {
                error: error.clone(),
            },
            Err(Failure::Failed(error)),
        ),
        JobOutcome::Interrupted(reason) => (
            store::Outcome::Interrupted {
                reason: Some(reason),
            },
            Err(Failure::Interrupted),
        ),
    };
    ctx.store
        .finish_execution(id, &stored, end.worker.as_ref())
        .await?;
    if result.is_ok() {
        // Off the critical path: the dependents need the store row, not the cleared
        // directory. The runtime waits for blocking tasks when it shuts down.
        let dir = job.work_dir.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir));
    }
    Ok(result)
}

/// Records a job that could not be prepared as failed.
pub async fn record_unprepared(
    ctx: &RunContext,
    id: ExecutionId,
    error: String,
) -> Result<Result<Outputs, Failure>, StoreError> {
    let failed = store::Outcome::Failed {
        error: error.clone(),
    };
    ctx.store.finish_execution(id, &failed, None).await?;
    Ok(Err(Failure::Failed(error)))
}

/// The lineage edges of a job: each input artifact with its slot and list position.
fn input_edges(job: &Job) -> Vec<InputEdge> {
    job.inputs
        .iter()
        .flat_map(|(slot, arts)| {
            arts.iter().enumerate().map(move |(k, a)| InputEdge {
                slot: slot.clone(),
                position: k as u32,
                artifact: a.hash.clone(),
            })
        })
        .collect()
}

/// A cache lookup's hits by key: the source execution, and its outputs' hashes moved
/// (not copied) into one map that every instance of that key shares.
pub type SharedHits = HashMap<StageKey, (ExecutionId, Arc<Outputs>)>;

/// [`SharedHits`] from the store's answer.
pub fn shared_hits(cached: HashMap<StageKey, CachedExecution>) -> SharedHits {
    cached
        .into_iter()
        .map(|(key, hit)| {
            let outputs = hit.outputs.into_iter().map(|(name, a)| (name, a.hash));
            (key, (hit.execution_id, Arc::new(outputs.collect())))
        })
        .collect()
}

/// Output name → hash.
pub fn hashes_of<'a>(
    outputs: impl IntoIterator<Item = (&'a String, &'a crate::protocol::OutputArtifact)>,
) -> Outputs {
    outputs
        .into_iter()
        .map(|(name, a)| (name.clone(), a.hash.clone()))
        .collect()
}
