//! Everything the report shows about one run, read from the store in one place: the run,
//! its executions, the history of its instances (for "why did this re-run"), each
//! execution's lineage edges and metrics, the checkpoints of the keys it executed, and the
//! pipeline file's plan when it can still be read (for the instances that did not run).

use crate::exit::{CliError, Coded, BAD_INPUT, STORE};
use histodiff_engine::fingerprint::{Fingerprint, SlotHashes};
use histodiff_engine::hash::StageKey;
use histodiff_engine::plan::Plan;
use histodiff_engine::registry::COMMAND_KIND;
use histodiff_engine::store::{
    CheckpointRecord, ExecStatus, ExecutionEdges, ExecutionId, ExecutionRecord, InputEdge, RunId,
    RunRecord, Store,
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
    pub run: RunRecord,
    /// This run's executions, oldest first.
    pub executions: Vec<ExecutionRecord>,
    /// Every execution of this run's instances in the store, any run, oldest first; empty
    /// when every execution of the run was a cache hit (nothing to explain).
    pub history: BTreeMap<String, Vec<ExecutionRecord>>,
    /// Inputs and outputs of each execution of the run ([`lineage_edges`]); an execution
    /// that did not succeed has inputs but no outputs.
    pub edges: HashMap<ExecutionId, ExecutionEdges>,
    /// Metrics of each execution of the run (a cache hit: of the execution it reused);
    /// absent for `command` executions.
    pub metrics: HashMap<ExecutionId, Vec<Metric>>,
    /// The newest checkpoint of each executed key, when it has any.
    pub checkpoints: HashMap<ExecutionId, CheckpointRecord>,
    pub plan: PlanSource,
    /// Positions in `executions`, by execution id and by instance (oldest first).
    by_id: HashMap<ExecutionId, usize>,
    by_instance: HashMap<String, Vec<usize>>,
}

impl RunData {
    /// The execution whose outputs, edges and metrics a record stands for: itself, or
    /// for a cache hit the execution it reused.
    pub fn source(e: &ExecutionRecord) -> ExecutionId {
        e.cached_from
            .filter(|_| e.status == ExecStatus::Cached)
            .unwrap_or(e.id)
    }

    /// The parsed fingerprint of an execution (a cache hit's is its source's).
    pub fn fingerprint(e: &ExecutionRecord) -> Option<Fingerprint> {
        e.fingerprint
            .as_deref()
            .and_then(|j| Fingerprint::from_json(j).ok())
    }

    /// The executions of the run's instances before `e`, oldest first.
    pub fn earlier(&self, e: &ExecutionRecord) -> Vec<&ExecutionRecord> {
        self.history
            .get(&e.instance)
            .map(|h| h.iter().filter(|x| x.id < e.id).collect())
            .unwrap_or_default()
    }

    /// This run's execution `id`.
    pub fn execution(&self, id: ExecutionId) -> Option<&ExecutionRecord> {
        self.by_id.get(&id).map(|&i| &self.executions[i])
    }

    /// This run's executions of `instance`, oldest first.
    pub fn executions_of<'a>(
        &'a self,
        instance: &str,
    ) -> impl Iterator<Item = &'a ExecutionRecord> {
        self.by_instance
            .get(instance)
            .into_iter()
            .flatten()
            .map(|&i| &self.executions[i])
    }

    /// The run's newest execution of each instance, by instance name.
    pub fn latest_by_instance(&self) -> BTreeMap<&str, &ExecutionRecord> {
        let mut latest = BTreeMap::new();
        for e in &self.executions {
            latest.insert(e.instance.as_str(), e);
        }
        latest
    }
}

/// Reads run `id` and what belongs to it; without a `plan`, `load_plan` reads the run's
/// pipeline file. An unknown run is bad input (exit 2); a store that fails to answer is
/// exit 3.
///
/// The cost follows the work the run did, so that the report a no-op run of a large sweep
/// writes stays cheap: cache hits are read in bulk (their outputs from the cache rows,
/// their inputs from their fingerprints), and only executions that ran are queried one by
/// one (lineage edges; checkpoints and the history behind "why", which a cache hit does
/// not need). Metrics are read for every kind but `command`, which records none.
pub async fn gather(
    store: &dyn Store,
    id: RunId,
    plan: Option<Arc<Plan>>,
    load_plan: impl Fn(&str) -> PlanSource,
) -> Result<RunData, CliError> {
    let runs = store.runs().await.code(STORE)?;
    let Some(run) = runs.into_iter().find(|r| r.id == id) else {
        return Err(anyhow::anyhow!(
            "run {id} is not in the store (`histodiff status` lists the runs)"
        ))
        .code(BAD_INPUT);
    };
    let executions = store.executions(Some(id)).await.code(STORE)?;
    let ran = executions.iter().any(|e| e.status != ExecStatus::Cached);
    let history = if ran {
        instance_history(store, &executions).await?
    } else {
        BTreeMap::new()
    };
    let edges = lineage_edges(store, &executions).await?;
    let mut metrics = HashMap::new();
    let mut checkpoints = HashMap::new();
    for e in executions.iter().filter(|e| e.kind != COMMAND_KIND) {
        metrics.insert(e.id, store.metrics(RunData::source(e)).await.code(STORE)?);
        if e.status != ExecStatus::Cached {
            if let Some(c) = store.latest_checkpoint(&e.stage_key).await.code(STORE)? {
                checkpoints.insert(e.id, c);
            }
        }
    }
    let by_id = executions
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id, i))
        .collect();
    let mut by_instance: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, e) in executions.iter().enumerate() {
        by_instance.entry(e.instance.clone()).or_default().push(i);
    }
    Ok(RunData {
        by_id,
        by_instance,
        executions,
        history,
        edges,
        metrics,
        checkpoints,
        plan: plan.map_or_else(|| load_plan(&run.file), PlanSource::Loaded),
        run,
    })
}

/// Each execution's inputs and outputs. An execution that succeeded in this run: its
/// recorded lineage edges. A cache hit: the edges of the execution it reused — its inputs
/// are the hashes its fingerprint names (the fingerprint is the source's, and
/// `execution_inputs` records exactly those hashes), its outputs the cache row's copy of
/// `execution_outputs`, read for every hit at once. An execution that did not succeed has
/// no recorded edges: its inputs come from its fingerprint, and it has no outputs.
async fn lineage_edges(
    store: &dyn Store,
    executions: &[ExecutionRecord],
) -> Result<HashMap<ExecutionId, ExecutionEdges>, CliError> {
    let hit_keys: Vec<StageKey> = executions
        .iter()
        .filter(|e| e.status == ExecStatus::Cached)
        .map(|e| e.stage_key.clone())
        .collect();
    let hits = store.cached_many(&hit_keys).await.code(STORE)?;
    let mut edges = HashMap::with_capacity(executions.len());
    for e in executions {
        let found = match e.status {
            ExecStatus::Succeeded => store.execution_edges(e.id).await.code(STORE)?,
            ExecStatus::Cached => ExecutionEdges {
                inputs: fingerprint_inputs(e),
                outputs: hits
                    .get(&e.stage_key)
                    .map(|h| {
                        h.outputs
                            .iter()
                            .map(|(n, a)| (n.clone(), a.hash.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            _ => ExecutionEdges {
                inputs: fingerprint_inputs(e),
                outputs: Default::default(),
            },
        };
        edges.insert(e.id, found);
    }
    Ok(edges)
}

/// The input artifacts an execution's fingerprint names, slot by slot, in list order.
fn fingerprint_inputs(e: &ExecutionRecord) -> Vec<InputEdge> {
    let Some(fp) = RunData::fingerprint(e) else {
        return Vec::new();
    };
    let mut inputs = Vec::new();
    for (slot, hashes) in fp.inputs.iter() {
        let list = match hashes {
            SlotHashes::One(h) => std::slice::from_ref(h),
            SlotHashes::Many(hs) => hs.as_slice(),
        };
        inputs.extend(list.iter().enumerate().map(|(k, h)| InputEdge {
            slot: slot.clone(),
            position: k as u32,
            artifact: h.clone(),
        }));
    }
    inputs
}

/// Every execution of the run's instances, by instance, oldest first.
async fn instance_history(
    store: &dyn Store,
    executions: &[ExecutionRecord],
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
