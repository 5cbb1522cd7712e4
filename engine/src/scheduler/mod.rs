//! The orchestrator's scheduler: walks the plan in dependency order, computes each
//! instance's stage key once its upstreams' output hashes are known, skips what the store
//! already holds (looked up in batches), and runs the rest under resource limits. The main
//! loop reads like the node runner it implements: deps known → key → cached? → reserve →
//! execute → record. Identical keys run once per run (later instances wait on the first)
//! and once across concurrent runs (a reservation in the store). A failure stops only its
//! dependents; Ctrl-C stops scheduling, interrupts workers and waits for them.

mod execution;
mod keys;
pub mod observer;
mod prepare;
pub mod preview;
mod progress;
mod record;
pub mod resources;
mod state;
mod worker_events;

use crate::executor::{Cancel, Executor};
use crate::hash::StageKey;
use crate::plan::Plan;
use crate::store::{ExecutionId, Holder, NewCacheHit, NewRun, RunId, RunStatus, Store};
use execution::{ExecutionEnd, Launch, RunContext};
use keys::{ExternalHashes, Outputs};
use observer::{InstanceOutcome, Observer, RunEvent};
use resources::{Capacity, ResourcePool};
use state::RunState;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a run did, for the summary line and the exit code.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: RunId,
    pub executed: usize,
    pub cached: usize,
    /// Instance → error.
    pub failed: Vec<(String, String)>,
    pub skipped: usize,
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("store error: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl RunSummary {
    fn new(run_id: RunId) -> Self {
        RunSummary {
            run_id,
            executed: 0,
            cached: 0,
            failed: Vec::new(),
            skipped: 0,
            interrupted: false,
        }
    }
}

/// Instances keyed and looked up together (one bulk statement of the store's).
const LOOKUP_CHUNK: usize = crate::store::sql::BULK_ROWS;

/// How often reserved keys are marked alive (well inside the store's stale timeout).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(20);

/// Keeps this run's reservations alive while their executions run.
async fn heartbeat(ctx: Arc<RunContext>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let keys: Vec<StageKey> = ctx
            .reserved
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            if let Err(e) = ctx.store.heartbeat(&keys, &ctx.holder).await {
                tracing::warn!("cannot refresh reservations: {e}");
            }
        }
    }
}

/// Everything a run needs.
pub struct Scheduler {
    pub plan: Arc<Plan>,
    pub store: Arc<dyn Store>,
    pub executor: Arc<dyn Executor>,
    pub observer: Arc<dyn Observer>,
    pub capacity: Capacity,
}

impl Scheduler {
    /// Runs the plan to the end (or until `shutdown` asks to stop).
    pub async fn run(
        self,
        shutdown: watch::Receiver<Cancel>,
    ) -> Result<RunSummary, SchedulerError> {
        let new_run = NewRun {
            pipeline: self.plan.name.clone(),
            file: self.plan.pipeline_file.display().to_string(),
            host: crate::store::liveness::hostname(),
            pid: std::process::id() as i64,
        };
        let run_id = self.store.begin_run(&new_run).await?;
        tracing::debug!("run {} begun", run_id.0);
        let hashed_at = std::time::Instant::now();
        let externals = keys::hash_externals(&self.store, &self.plan).await;
        let racy = externals.as_ref().map_or(0, |(_, racy)| *racy);
        let externals = externals.map(|(hashes, _)| hashes);
        let ctx = Arc::new(RunContext {
            plan: self.plan.clone(),
            store: self.store.clone(),
            executor: self.executor.clone(),
            observer: self.observer.clone(),
            run_id,
            holder: Holder::this_process(Some(run_id)),
            reserved: Default::default(),
        });
        let heartbeat = tokio::spawn(heartbeat(ctx.clone()));
        let mut lp = Loop {
            state: RunState::new(&self.plan),
            pool: ResourcePool::new(self.capacity),
            queue: VecDeque::new(),
            tasks: JoinSet::new(),
            cancel: watch::channel(Cancel::Keep).0,
            summary: RunSummary::new(run_id),
            recording: JoinSet::new(),
            batches: 0,
            ctx,
            externals,
        };
        let result = lp.drive(shutdown).await;
        tracing::debug!("scheduling done");
        let result = result.and(lp.recorded().await);
        tracing::debug!("cache hits recorded");
        keys::cache_racy_externals(&self.store, &self.plan, racy, hashed_at).await;
        heartbeat.abort();
        let status = match (
            &result,
            lp.summary.interrupted,
            lp.summary.failed.is_empty(),
        ) {
            (Err(_), _, _) => RunStatus::Failed,
            (_, true, _) => RunStatus::Interrupted,
            (_, _, false) => RunStatus::Failed,
            _ => RunStatus::Succeeded,
        };
        self.store.finish_run(run_id, status).await?;
        result.map(|_| lp.summary)
    }
}

/// Keyed instances, and the store's answer on its way with their keys.
type Lookup = (
    Vec<usize>,
    tokio::task::JoinHandle<(Vec<StageKey>, CacheAnswer)>,
);

/// The store's answer to one chunk's lookup.
type CacheAnswer =
    crate::store::StoreResult<std::collections::HashMap<StageKey, crate::store::CachedExecution>>;

/// The scheduler's mutable state during one run.
struct Loop {
    state: RunState,
    pool: ResourcePool,
    /// Keys to execute, in plan order, with the instance that leads each.
    queue: VecDeque<Launch>,
    tasks: JoinSet<(Launch, ExecutionEnd)>,
    cancel: watch::Sender<Cancel>,
    summary: RunSummary,
    /// Cache hits being written to the store while the next layer is keyed.
    recording: JoinSet<Result<(), crate::store::StoreError>>,
    /// Cache-hit batches recorded so far (the number of the next one).
    batches: u32,
    ctx: Arc<RunContext>,
    externals: Result<ExternalHashes, (std::path::PathBuf, String)>,
}

impl Loop {
    async fn drive(&mut self, mut shutdown: watch::Receiver<Cancel>) -> Result<(), SchedulerError> {
        let mut stopping = false;
        loop {
            if !stopping {
                self.resolve_ready().await?;
                self.launch();
            }
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.tasks.join_next() => {
                    if let Some(joined) = joined {
                        self.finish(joined, stopping);
                    }
                }
                changed = shutdown.changed(), if *self.cancel.borrow() != Cancel::Kill => {
                    let level = if changed.is_ok() { *shutdown.borrow() } else { Cancel::Kill };
                    stopping = true;
                    self.summary.interrupted = true;
                    self.skip_queued("the run was interrupted");
                    let _ = self.cancel.send(level);
                }
            }
        }
        if stopping {
            self.skip_queued("the run was interrupted");
        }
        self.summary.skipped +=
            self.state
                .skip_unfinished(&self.ctx.plan, &*self.ctx.observer, stopping);
        Ok(())
    }

    /// Computes keys for every instance whose upstreams are known, looks them up, and
    /// either takes the cached outputs (which may make more instances ready) or queues an
    /// execution, until nothing new becomes ready.
    ///
    /// Lookups go a chunk at a time on the runtime (and the store's own threads) while
    /// this task keys the next chunk and takes the answers in order. A chunk's hits make
    /// their dependents ready at once, so a sweep's next stage is keyed and looked up
    /// while the rest of this one is still being looked up: at N = 10,000 the no-op run
    /// no longer waits, stage by stage, for keying and lookups one after the other.
    async fn resolve_ready(&mut self) -> Result<(), SchedulerError> {
        let mut lookups: VecDeque<Lookup> = VecDeque::new();
        loop {
            self.look_up_ready(&mut lookups);
            let Some((keyed, lookup)) = lookups.pop_front() else {
                return Ok(());
            };
            let (keys, cached) = lookup.await.map_err(|e| {
                crate::store::StoreError::Unsupported(format!(
                    "a cache lookup ended abnormally: {e}"
                ))
            })?;
            let (asked, mut hits) = (keys.len(), Vec::new());
            let cached = record::shared_hits(cached?);
            self.take_lookup(keyed, keys, &cached, &mut hits);
            tracing::debug!("{} of {asked} cached", hits.len());
            if !hits.is_empty() {
                // Nothing downstream reads these rows during the run: writing them
                // alongside the next keys and lookups takes them off the critical path
                // of a no-op run (see `recorded`).
                let (ctx, batch) = (self.ctx.clone(), self.batches);
                self.batches += 1;
                self.recording.spawn(async move {
                    let hits: Vec<NewCacheHit<'_>> = hits
                        .iter()
                        .map(|&(i, source)| {
                            let inst = &ctx.plan.instances[i];
                            let (stage, instance) = (inst.stage.as_str(), inst.name.as_str());
                            NewCacheHit {
                                stage,
                                instance,
                                source,
                            }
                        })
                        .collect();
                    ctx.store.record_cache_hits(ctx.run_id, batch, &hits).await
                });
            }
        }
    }

    /// Keys every ready instance and starts its chunk's lookup (an instance whose
    /// external data could not be hashed fails instead).
    fn look_up_ready(&mut self, lookups: &mut VecDeque<Lookup>) {
        let ready = self.state.take_ready();
        if ready.is_empty() {
            return;
        }
        let externals = match &self.externals {
            Ok(x) => x,
            Err((path, e)) => {
                let message = format!("cannot hash {}: {e}", path.display());
                for i in ready {
                    self.fail(i, message.clone());
                }
                return;
            }
        };
        for chunk in ready.chunks(LOOKUP_CHUNK) {
            let (keyed, keys): (Vec<usize>, Vec<StageKey>) = self
                .state
                .key_all(&self.ctx.plan, chunk, externals)
                .into_iter()
                .unzip();
            let store = self.ctx.store.clone();
            let lookup = tokio::spawn(async move {
                let cached = store.cached_many(&keys).await;
                (keys, cached)
            });
            lookups.push_back((keyed, lookup));
        }
        tracing::debug!("keyed {} instances", ready.len());
    }

    /// Takes one lookup's answer: a hit resolves its instance (adding it and its source
    /// execution to `hits`), a miss queues an execution or waits on the one already
    /// running its key.
    fn take_lookup(
        &mut self,
        keyed: Vec<usize>,
        keys: Vec<StageKey>,
        cached: &record::SharedHits,
        hits: &mut Vec<(usize, ExecutionId)>,
    ) {
        for (i, key) in keyed.into_iter().zip(keys) {
            // Looked up, not taken: two instances of a chunk may share a key.
            match cached.get(&key) {
                Some((source, outputs)) => {
                    self.summary.cached += 1;
                    hits.push((i, *source));
                    self.state.resolve(&self.ctx.plan, i, outputs.clone());
                    self.ctx.observer.on(RunEvent::Finished {
                        instance: self.ctx.plan.instances[i].name.clone(),
                        outcome: InstanceOutcome::Cached,
                    });
                }
                None => {
                    let fingerprint =
                        self.externals.as_ref().ok().and_then(|externals| {
                            self.state.fingerprint(&self.ctx.plan, i, externals)
                        });
                    let Some(fingerprint) = fingerprint else {
                        self.fail(i, "an input hash is unknown".into());
                        continue;
                    };
                    if self.state.join_in_flight(i, &key) {
                        continue;
                    }
                    self.queue.push_back(Launch {
                        instance: i,
                        key,
                        fingerprint,
                        attempt: 1,
                    });
                }
            }
        }
    }

    /// Waits for every cache-hit record; the first failure fails the run.
    async fn recorded(&mut self) -> Result<(), SchedulerError> {
        let mut first = Ok(());
        while let Some(joined) = self.recording.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(crate::store::StoreError::Unsupported(format!(
                    "recording cache hits ended abnormally: {e}"
                )))
            });
            if let (Ok(()), Err(e)) = (&first, result) {
                first = Err(SchedulerError::Store(e));
            }
        }
        first
    }

    /// Starts every queued execution that fits in the free resources, in plan order.
    fn launch(&mut self) {
        if !self.queue.is_empty() {
            // Executions start programs, which inherit this process's setting.
            crate::huge_pages::restore_for_children();
        }
        let mut waiting = VecDeque::new();
        // A full pool ends the pass: with 100,000 queued launches, looking at each of
        // them after every execution made a full run quadratic.
        while !self.pool.is_full() {
            let Some(launch) = self.queue.pop_front() else {
                break;
            };
            let ask = &self.ctx.plan.instances[launch.instance].resources;
            match self.pool.try_acquire(ask) {
                Some(allocation) => {
                    let ctx = self.ctx.clone();
                    let cancel = self.cancel.subscribe();
                    self.tasks.spawn(async move {
                        let end = execution::execute(&ctx, &launch, allocation, cancel).await;
                        (launch, end)
                    });
                }
                None => waiting.push_back(launch),
            }
        }
        // Back in front, in their order (the queue's rest is not touched).
        while let Some(launch) = waiting.pop_back() {
            self.queue.push_front(launch);
        }
    }

    fn finish(
        &mut self,
        joined: Result<(Launch, ExecutionEnd), tokio::task::JoinError>,
        stopping: bool,
    ) {
        let (launch, end) = match joined {
            Ok(pair) => pair,
            // A panic inside a task is a bug; the run goes on without that execution.
            Err(e) => {
                tracing::error!("an execution task ended abnormally: {e}");
                self.summary.failed.push(("(task)".into(), e.to_string()));
                return;
            }
        };
        self.pool.release(&end.allocation);
        let name = self.ctx.plan.instances[launch.instance].name.clone();
        match end.result {
            Ok(outputs) => {
                if end.executed {
                    self.summary.executed += 1;
                }
                self.resolve_key(&launch.key, Arc::new(outputs), end.executed);
            }
            Err(execution::Failure::Interrupted) => {
                self.summary.interrupted = true;
                self.ctx.observer.on(RunEvent::Finished {
                    instance: name,
                    outcome: InstanceOutcome::Interrupted,
                });
                self.state.abandon_key(&launch.key);
            }
            Err(execution::Failure::Failed(error)) => {
                let retries = self.ctx.plan.instances[launch.instance].retries;
                if launch.attempt <= retries && !stopping {
                    tracing::warn!(
                        "{name} failed (attempt {}), retrying: {error}",
                        launch.attempt
                    );
                    self.queue.push_back(Launch {
                        attempt: launch.attempt + 1,
                        ..launch
                    });
                    return;
                }
                for i in self.state.abandon_key(&launch.key) {
                    self.fail(i, error.clone());
                }
            }
        }
    }

    /// Every instance waiting on `key` gets its outputs; dependents may become ready.
    fn resolve_key(&mut self, key: &StageKey, outputs: Arc<Outputs>, executed: bool) {
        for i in self.state.abandon_key(key) {
            self.state.resolve(&self.ctx.plan, i, outputs.clone());
            let outcome = if executed {
                InstanceOutcome::Done
            } else {
                InstanceOutcome::Cached
            };
            let instance = self.ctx.plan.instances[i].name.clone();
            self.ctx
                .observer
                .on(RunEvent::Finished { instance, outcome });
        }
    }

    /// Marks `i` failed and skips everything downstream of it.
    fn fail(&mut self, i: usize, error: String) {
        let name = self.ctx.plan.instances[i].name.clone();
        self.summary.failed.push((name.clone(), error.clone()));
        self.ctx.observer.on(RunEvent::Finished {
            instance: name.clone(),
            outcome: InstanceOutcome::Failed(error),
        });
        self.summary.skipped +=
            self.state
                .skip_dependents(&self.ctx.plan, i, &name, &*self.ctx.observer);
    }

    fn skip_queued(&mut self, why: &str) {
        for launch in std::mem::take(&mut self.queue) {
            for i in self.state.abandon_key(&launch.key) {
                let instance = self.ctx.plan.instances[i].name.clone();
                self.summary.skipped += 1;
                self.ctx.observer.on(RunEvent::Finished {
                    instance,
                    outcome: InstanceOutcome::Skipped(why.into()),
                });
            }
        }
    }
}
