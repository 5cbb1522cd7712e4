//! Everything the report shows about one run, read from the store in one place: the run
//! with its executions and their lineage edges ([`RunGraph`]), the history of its
//! instances (for "why did this re-run"), each execution's metrics, the checkpoints of the
//! keys it executed, and the pipeline file's plan when it can still be read (for the
//! instances that did not run).

use crate::commands::run_graph::{source_of, RunGraph};
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::plan::Plan;
use histodiff_engine::registry::COMMAND_KIND;
use histodiff_engine::store::{
    CheckpointRecord, ExecStatus, ExecutionId, ExecutionRecord, RunId, Store,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One metric row: name, step (None for a final value), value.
pub type Metric = (String, Option<u64>, f64);

/// The pipeline's plan, or why it is not shown.
pub enum PlanSource {
    Loaded(Arc<Plan>),
    Unavailable(String),
}

pub struct RunData {
    /// The run, its executions (oldest first) and what each read and wrote.
    pub graph: RunGraph,
    /// Every execution of this run's instances in the store, any run, oldest first; empty
    /// when every execution of the run was a cache hit (nothing to explain).
    pub history: BTreeMap<String, Vec<ExecutionRecord>>,
    /// Metrics of each execution of the run (a cache hit: of the execution it reused);
    /// absent for `command` executions.
    pub metrics: HashMap<ExecutionId, Vec<Metric>>,
    /// The newest checkpoint of each executed key, when it has any.
    pub checkpoints: HashMap<ExecutionId, CheckpointRecord>,
    pub plan: PlanSource,
}

impl RunData {
    /// The executions of the run's instances before `e`, oldest first.
    pub fn earlier(&self, e: &ExecutionRecord) -> Vec<&ExecutionRecord> {
        self.history
            .get(&e.instance)
            .map(|h| h.iter().filter(|x| x.id < e.id).collect())
            .unwrap_or_default()
    }
}

/// Reads run `id` and what belongs to it; without a `plan`, `load_plan` reads the run's
/// pipeline file. An unknown run is bad input (exit 2); a store that fails to answer is
/// exit 3.
///
/// The cost follows the work the run did, so that the report a no-op run of a large sweep
/// writes stays cheap: the executions and their edges are read in bulk ([`RunGraph`]),
/// and only executions that ran are queried one by one (checkpoints and the history
/// behind "why", which a cache hit does not need). Metrics are read for every kind but
/// `command`, which records none.
pub async fn gather(
    store: &dyn Store,
    id: RunId,
    plan: Option<Arc<Plan>>,
    load_plan: impl Fn(&str) -> PlanSource,
) -> Result<RunData, CliError> {
    let graph = RunGraph::load(store, id).await?;
    let records: Vec<&ExecutionRecord> = graph.executions.iter().map(|e| &e.record).collect();
    let ran = records.iter().any(|e| e.status != ExecStatus::Cached);
    let history = if ran {
        instance_history(store, &records).await?
    } else {
        BTreeMap::new()
    };
    let mut metrics = HashMap::new();
    let mut checkpoints = HashMap::new();
    for e in records.iter().filter(|e| e.kind != COMMAND_KIND) {
        metrics.insert(e.id, store.metrics(source_of(e)).await.code(STORE)?);
        if e.status != ExecStatus::Cached {
            if let Some(c) = store.latest_checkpoint(&e.stage_key).await.code(STORE)? {
                checkpoints.insert(e.id, c);
            }
        }
    }
    let plan = plan.map_or_else(|| load_plan(&graph.run.file), PlanSource::Loaded);
    Ok(RunData {
        graph,
        history,
        metrics,
        checkpoints,
        plan,
    })
}

/// Every execution of the run's instances, by instance, oldest first.
async fn instance_history(
    store: &dyn Store,
    executions: &[&ExecutionRecord],
) -> Result<BTreeMap<String, Vec<ExecutionRecord>>, CliError> {
    let mut history: BTreeMap<String, Vec<ExecutionRecord>> = executions
        .iter()
        .map(|e| (e.instance.clone(), Vec::new()))
        .collect();
    for e in store.executions(None).await.code(STORE)? {
        if let Some(h) = history.get_mut(&e.instance) {
            h.push(e);
        }
    }
    Ok(history)
}
