//! One execution of one stage key, as a task of the scheduler: reserve the key in the
//! store (waiting while another orchestrator holds it), materialise the inputs into a
//! fresh work directory, write the job, run the worker through the executor while
//! forwarding its events, and record the outcome in one store transaction. The
//! reservation is released on every path.

use super::keys::{external_paths, ExternalHashes, Outputs};
use super::observer::{Observer, RunEvent};
use super::progress::{ProgressReport, ProgressThrottle, PROGRESS_INTERVAL};
use crate::executor::{
    outcome, Allocation, Cancel, EventSink, Executor, ExecutorEvent, Outcome, Submission,
};
use crate::fingerprint::Fingerprint;
use crate::hash::StageKey;
use crate::plan::{InputBinding, Plan, Upstream};
use crate::protocol::{Event, InputArtifact, Job, JOB_FILE};
use crate::store::{
    self, ExecutionId, Holder, InputEdge, NewExecution, Reservation, RunId, Store, StoreError,
    WorkerInfo,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

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

/// Hashes every external path of the plan (each once) through the store's stat cache;
/// also says how many files were too recently modified to be cached.
pub async fn hash_externals(
    store: &Arc<dyn Store>,
    plan: &Plan,
) -> Result<(ExternalHashes, usize), (PathBuf, String)> {
    let paths = external_paths(plan);
    let hashed = store::stat_cache::hash_externals(store.as_ref(), &paths)
        .await
        .map_err(|(path, e)| (path, e.to_string()))?;
    let mut hashes = ExternalHashes::new();
    let mut racy = 0;
    for (path, external) in paths.into_iter().zip(hashed) {
        racy += external.files_racy;
        hashes.insert(path, external.hash);
    }
    tracing::debug!(
        "hashed {} external files ({racy} too recent to cache)",
        hashes.len()
    );
    Ok((hashes, racy))
}

/// Hashes the plan's external data again once the files that were too recently modified
/// to cache at the start of a run are old enough: data written just before a run would
/// otherwise be read again by the next run (or `plan`) too. Only when the run outlasted
/// the window, and only those files are read; a failure is only a warning.
pub async fn cache_racy_externals(
    store: &Arc<dyn Store>,
    plan: &Plan,
    racy: usize,
    since: std::time::Instant,
) {
    if racy == 0 || since.elapsed() <= store::stat_cache::RACY_WINDOW {
        return;
    }
    let paths = external_paths(plan);
    if let Err((path, e)) = store::stat_cache::hash_externals(store.as_ref(), &paths).await {
        tracing::warn!("cannot cache the hash of {}: {e}", path.display());
    }
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
            let result = run_reserved(ctx, launch, &allocation, cancel).await;
            ctx.reserved.lock().map(|mut r| r.remove(&launch.key)).ok();
            if let Err(e) = ctx.store.release(&launch.key, &ctx.holder).await {
                tracing::warn!(
                    "cannot release the reservation of {}: {e}",
                    launch.key.short()
                );
            }
            end(result, true)
        }
    }
}

/// Takes the key's reservation (`Ok(None)`), or the outputs another orchestrator
/// produced while this one waited (`Ok(Some(..))`).
async fn reserve(
    ctx: &RunContext,
    launch: &Launch,
    cancel: &mut watch::Receiver<Cancel>,
) -> Result<Option<Outputs>, Failure> {
    let store_failure = |e: StoreError| Failure::Failed(format!("store: {e}"));
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
) -> Result<Outputs, Failure> {
    let inst = &ctx.plan.instances[launch.instance];
    let device = if allocation.gpus.is_empty() {
        "cpu".to_string()
    } else {
        "cuda:0".to_string()
    };
    let store_failure = |e: StoreError| Failure::Failed(format!("store: {e}"));
    let new = NewExecution {
        run_id: ctx.run_id,
        stage_key: launch.key.clone(),
        stage: inst.stage.clone(),
        instance: inst.name.clone(),
        kind: inst.kind.clone(),
        kind_version: inst.kind_version,
        attempt: launch.attempt,
        fingerprint: launch.fingerprint.canonical_json(),
    };
    let id = ctx
        .store
        .start_execution(&new)
        .await
        .map_err(store_failure)?;
    ctx.observer.on(RunEvent::Started {
        instance: inst.name.clone(),
        key: launch.key.clone(),
        attempt: launch.attempt,
    });
    let job = match prepare(ctx, launch, id, device, allocation.threads).await {
        Ok(job) => job,
        Err(error) => {
            let failed = store::Outcome::Failed {
                error: error.clone(),
            };
            ctx.store
                .finish_execution(id, &failed)
                .await
                .map_err(store_failure)?;
            return Err(Failure::Failed(error));
        }
    };
    let submission = Submission {
        instance: inst.name.clone(),
        job_file: job.work_dir.join(JOB_FILE),
        work_dir: job.work_dir.clone(),
        allocation: allocation.clone(),
    };
    let mut outcome = run_worker(ctx, &submission, id, &job, cancel.clone()).await;
    if matches!(outcome, Outcome::Failed(_)) && *cancel.borrow() != Cancel::Keep {
        // Killed on the user's request (a second Ctrl-C): not a failure of the stage.
        outcome = Outcome::Interrupted("killed on request".into());
    }
    record(ctx, id, &job, outcome).await
}

/// Materialises the inputs into a fresh work directory and writes `job.json`.
async fn prepare(
    ctx: &RunContext,
    launch: &Launch,
    id: ExecutionId,
    device: String,
    threads: usize,
) -> Result<Job, String> {
    let plan = &ctx.plan;
    let inst = &plan.instances[launch.instance];
    let layout = ctx.store.layout();
    let work_dir = layout.work_dir(id);
    let job = Job {
        execution_id: id.0,
        key: launch.key.clone(),
        instance: inst.name.clone(),
        kind: inst.kind.clone(),
        kind_version: inst.kind_version,
        params: inst.params.clone(),
        external_paths: inst.external_paths.clone(),
        inputs: input_artifacts(plan, launch, &work_dir)?,
        command: inst.command.clone(),
        base_dir: plan.base_dir.clone(),
        checkpoint_dir: layout.checkpoint_dir(&launch.key),
        objects_dir: layout.objects.clone(),
        work_dir,
        device,
        threads,
    };
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || write_work_dir(store.objects(), job))
        .await
        .map_err(|e| format!("input materialisation ended abnormally: {e}"))?
}

/// A fresh work directory with the inputs materialised read-only and `job.json`.
fn write_work_dir(objects: &store::ObjectStore, job: Job) -> Result<Job, String> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        format!("cannot {what} {}: {e}", path.display())
    };
    if job.work_dir.exists() {
        std::fs::remove_dir_all(&job.work_dir).map_err(|e| io("clear", &job.work_dir, e))?;
    }
    std::fs::create_dir_all(&job.work_dir).map_err(|e| io("create", &job.work_dir, e))?;
    for arts in job.inputs.values() {
        for a in arts {
            if let Some(parent) = a.path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
            }
            objects
                .materialize(&a.hash, &a.path)
                .map_err(|e| format!("cannot materialise the input from {}: {e}", a.producer))?;
        }
    }
    let bytes = serde_json::to_vec_pretty(&job).map_err(|e| e.to_string())?;
    let file = job.work_dir.join(JOB_FILE);
    std::fs::write(&file, bytes).map_err(|e| io("write", &file, e))?;
    Ok(job)
}

/// Slot → artifacts with their paths in the work directory: `in/<slot>` for a single
/// slot, `in/<slot>/<index>` for a list.
fn input_artifacts(
    plan: &Plan,
    launch: &Launch,
    work_dir: &Path,
) -> Result<BTreeMap<String, Vec<InputArtifact>>, String> {
    let hashes = &launch.fingerprint.inputs;
    let mut inputs = BTreeMap::new();
    for (slot, binding) in &plan.instances[launch.instance].inputs {
        let dir = work_dir.join("in").join(slot);
        let arts = match (binding, hashes.get(slot)) {
            (InputBinding::One(u), Some(crate::fingerprint::SlotHashes::One(h))) => {
                vec![artifact(plan, u, h.clone(), dir)]
            }
            (InputBinding::Many(us), Some(crate::fingerprint::SlotHashes::Many(hs))) => us
                .iter()
                .zip(hs)
                .enumerate()
                .map(|(k, (u, h))| artifact(plan, u, h.clone(), dir.join(format!("{k:04}"))))
                .collect(),
            _ => return Err(format!("input slot `{slot}` has no upstream hash")),
        };
        inputs.insert(slot.clone(), arts);
    }
    Ok(inputs)
}

fn artifact(
    plan: &Plan,
    u: &Upstream,
    hash: crate::hash::ArtifactHash,
    path: PathBuf,
) -> InputArtifact {
    let producer = &plan.instances[u.instance];
    InputArtifact {
        hash,
        path,
        producer: producer.name.clone(),
        coords: producer
            .coords
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Runs the worker, forwarding its events to the observer and the store.
async fn run_worker(
    ctx: &RunContext,
    submission: &Submission,
    id: ExecutionId,
    job: &Job,
    cancel: watch::Receiver<Cancel>,
) -> Outcome {
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
        Ok(exit) => outcome(submission, &exit),
        Err(e) => Outcome::Failed(e.to_string()),
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
            // A Slurm job reports `slurm:<jobid>`, a local worker its pid.
            let slurm_job_id = worker_id
                .strip_prefix(crate::executor::slurm::SLURM_WORKER_PREFIX)
                .map(str::to_string);
            let worker = WorkerInfo {
                pid: if slurm_job_id.is_some() {
                    None
                } else {
                    worker_id.parse().ok()
                },
                host: Some(host),
                device: Some(job.device.clone()),
                slurm_job_id,
            };
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

/// Records the outcome in one transaction; a success clears the work directory.
async fn record(
    ctx: &RunContext,
    id: ExecutionId,
    job: &Job,
    outcome: Outcome,
) -> Result<Outputs, Failure> {
    let store_failure = |e: StoreError| Failure::Failed(format!("store: {e}"));
    let (stored, result) = match outcome {
        Outcome::Succeeded(result) => {
            let outputs = hashes_of(&result.outputs);
            let stored = store::Outcome::Succeeded {
                outputs: result.outputs,
                inputs: input_edges(job),
                metrics: result.metrics,
            };
            (stored, Ok(outputs))
        }
        Outcome::Failed(error) => (
            store::Outcome::Failed {
                error: error.clone(),
            },
            Err(Failure::Failed(error)),
        ),
        Outcome::Interrupted(reason) => (
            store::Outcome::Interrupted {
                reason: Some(reason),
            },
            Err(Failure::Interrupted),
        ),
    };
    ctx.store
        .finish_execution(id, &stored)
        .await
        .map_err(store_failure)?;
    if result.is_ok() {
        let _ = tokio::fs::remove_dir_all(&job.work_dir).await;
    }
    result
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

/// Output name → hash.
pub fn hashes_of<'a>(
    outputs: impl IntoIterator<Item = (&'a String, &'a crate::protocol::OutputArtifact)>,
) -> Outputs {
    outputs
        .into_iter()
        .map(|(name, a)| (name.clone(), a.hash.clone()))
        .collect()
}
