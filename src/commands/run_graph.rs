//! A run's executions with their lineage edges, read from the store in one place: what
//! the HTML report (`report`) and the exports (`export provenance`, `export tensorboard`)
//! describe.
//!
//! Every execution stands for a *source* ([`source_of`]): itself, or for a cache hit the
//! execution it reused. What it read and wrote are its source's lineage edges, which are
//! recorded when an execution succeeds. One that did not succeed has none: its inputs
//! are the hashes its fingerprint names, and it wrote nothing.
//!
//! The cost follows the size of the run in a few bulk reads rather than one query per
//! execution, so that the report a 3,000-instance sweep writes after every run stays a
//! fraction of a second. The recorded inputs of a success are exactly the hashes its
//! fingerprint names (the scheduler records those), and the cache row of its key keeps a
//! copy of its recorded outputs: both are read for every execution at once. Only an
//! execution whose key's cache row is not its source's (the key ran again since, or an
//! output object is gone) has its edges queried on its own.

use crate::exit::{CliError, Coded, BAD_INPUT, STORE};
use histodiff_engine::fingerprint::{Fingerprint, SlotHashes};
use histodiff_engine::hash::{ArtifactHash, StageKey};
use histodiff_engine::store::{
    ArtifactRecord, CachedExecution, ExecStatus, ExecutionEdges, ExecutionId, ExecutionRecord,
    InputEdge, RunId, RunRecord, Store,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One run and what its executions read and wrote.
pub struct RunGraph {
    pub run: RunRecord,
    /// Oldest first, cache hits included.
    pub executions: Vec<ExecutionView>,
    /// Positions in `executions`: of the executions that ran, by id; of every record, by
    /// instance (oldest first).
    by_id: HashMap<ExecutionId, usize>,
    by_instance: HashMap<String, Vec<usize>>,
    /// Of the cache hits, by the id of the execution they reused: the first.
    first_hit: HashMap<ExecutionId, usize>,
    /// Each artifact an execution of the run wrote: the first such execution.
    writers: HashMap<ArtifactHash, usize>,
    /// The artifacts an execution of the run that succeeded (or was a cache hit) read.
    consumed: HashSet<ArtifactHash>,
}

/// One execution with what it read and wrote.
pub struct ExecutionView {
    pub record: ExecutionRecord,
    /// Its fingerprint (a cache hit's is its source's); absent when none was stored, or
    /// when the stored JSON cannot be read (reported on stderr).
    pub fingerprint: Option<Fingerprint>,
    /// What it read: the recorded edges of its source, else the upstream hashes its
    /// fingerprint names; in slot then list order.
    pub inputs: Vec<InputEdge>,
    /// Output name → artifact; empty unless it succeeded or was a cache hit.
    pub outputs: BTreeMap<String, ArtifactHash>,
    /// Path parameter (or `deps:<path>`) → content hash of the external data it read.
    pub externals: BTreeMap<String, ArtifactHash>,
}

/// What a provenance export names besides the executions (the report needs neither).
pub struct Records {
    /// Every artifact an execution of the run read or wrote, by hash.
    pub artifacts: BTreeMap<ArtifactHash, ArtifactRecord>,
    /// The executions of earlier runs whose outputs the run's cache hits reused.
    pub sources: BTreeMap<ExecutionId, ExecutionRecord>,
}

/// The execution whose outputs, edges and metrics a record stands for: itself, or for a
/// cache hit the execution it reused.
pub fn source_of(e: &ExecutionRecord) -> ExecutionId {
    e.cached_from
        .filter(|_| e.status == ExecStatus::Cached)
        .unwrap_or(e.id)
}

impl RunGraph {
    /// Reads run `id`; an unknown id is bad input (exit 2), a store failure exit 3.
    pub async fn load(store: &dyn Store, id: RunId) -> Result<Self, CliError> {
        let runs = store.runs().await.code(STORE)?;
        let Some(run) = runs.into_iter().find(|r| r.id == id) else {
            return Err(anyhow::anyhow!(
                "run {id} is not in the store (`histodiff status` lists the runs)"
            ))
            .code(BAD_INPUT);
        };
        let records = store.executions(Some(id)).await.code(STORE)?;
        let keys: Vec<StageKey> = records.iter().map(|e| e.stage_key.clone()).collect();
        let cache_rows = store.cached_many(&keys).await.code(STORE)?;
        let mut executions = Vec::with_capacity(records.len());
        for record in records {
            executions.push(ExecutionView::load(store, record, &cache_rows).await?);
        }
        Ok(Self::indexed(run, executions))
    }

    fn indexed(run: RunRecord, executions: Vec<ExecutionView>) -> Self {
        let mut graph = RunGraph {
            run,
            by_id: HashMap::with_capacity(executions.len()),
            by_instance: HashMap::with_capacity(executions.len()),
            first_hit: HashMap::new(),
            writers: HashMap::new(),
            consumed: HashSet::new(),
            executions: Vec::new(),
        };
        for (i, e) in executions.iter().enumerate() {
            // A cache hit carries its source's id, which is not an execution of this run.
            if e.record.status != ExecStatus::Cached {
                graph.by_id.insert(e.record.id, i);
            } else {
                graph.first_hit.entry(e.record.id).or_insert(i);
            }
            let instance = e.record.instance.clone();
            graph.by_instance.entry(instance).or_default().push(i);
            for hash in e.outputs.values() {
                graph.writers.entry(hash.clone()).or_insert(i);
            }
            if matches!(e.record.status, ExecStatus::Succeeded | ExecStatus::Cached) {
                let read = e.inputs.iter().map(|input| input.artifact.clone());
                graph.consumed.extend(read);
            }
        }
        graph.executions = executions;
        graph
    }

    /// This run's execution `id` (one that ran, not a cache hit).
    pub fn execution(&self, id: ExecutionId) -> Option<&ExecutionView> {
        self.by_id.get(&id).map(|&i| &self.executions[i])
    }

    /// Whether links to execution `view.record.id` should land on `view`: it is that
    /// execution, or a cache hit of it, the run's first, when the execution itself did not
    /// run in this run (a hit carries its source's id, and several hits can share one).
    pub fn is_anchor(&self, view: &ExecutionView) -> bool {
        let id = view.record.id;
        if view.record.status != ExecStatus::Cached {
            return true;
        }
        if self.by_id.contains_key(&id) {
            return false;
        }
        let first = self.first_hit.get(&id).map(|&i| &self.executions[i]);
        first.is_some_and(|first| std::ptr::eq(first, view))
    }

    /// This run's executions of `instance`, oldest first.
    pub fn executions_of<'a>(&'a self, instance: &str) -> impl Iterator<Item = &'a ExecutionView> {
        self.by_instance
            .get(instance)
            .into_iter()
            .flatten()
            .map(|&i| &self.executions[i])
    }

    /// The run's newest execution of each instance, by instance name.
    pub fn latest_by_instance(&self) -> BTreeMap<&str, &ExecutionView> {
        let mut latest = BTreeMap::new();
        for e in &self.executions {
            latest.insert(e.record.instance.as_str(), e);
        }
        latest
    }

    /// The first execution of this run that wrote `hash` (a cache hit counts as writing
    /// the outputs it reused), with the output name.
    pub fn producer(&self, hash: &ArtifactHash) -> Option<(&ExecutionView, &str)> {
        let e = &self.executions[*self.writers.get(hash)?];
        let name = e.outputs.iter().find(|(_, h)| *h == hash)?.0;
        Some((e, name.as_str()))
    }

    /// Whether an execution of this run that succeeded (or was a cache hit) read `hash`:
    /// what none did is a result of the run, not an intermediate.
    pub fn is_consumed(&self, hash: &ArtifactHash) -> bool {
        self.consumed.contains(hash)
    }

    /// The store's records of the artifacts the executions read or wrote, and of the
    /// earlier executions the cache hits reused: one query each, so read only on demand.
    /// An artifact named by an edge but not recorded means a damaged store (exit 3).
    pub async fn records(&self, store: &dyn Store) -> Result<Records, CliError> {
        let mut artifacts = BTreeMap::new();
        for e in &self.executions {
            let hashes = e.inputs.iter().map(|i| &i.artifact);
            for hash in hashes.chain(e.outputs.values()) {
                if artifacts.contains_key(hash) {
                    continue;
                }
                let record = store.artifact(hash).await.code(STORE)?.ok_or_else(|| {
                    anyhow::anyhow!(
                        "execution {} names artifact {hash}, which the store does not record",
                        e.record.id
                    )
                });
                artifacts.insert(hash.clone(), record.code(STORE)?);
            }
        }
        let mut sources = BTreeMap::new();
        for source in self.executions.iter().filter_map(|e| e.record.cached_from) {
            if sources.contains_key(&source) || self.by_id.contains_key(&source) {
                continue;
            }
            if let Some(record) = store.execution(source).await.code(STORE)? {
                sources.insert(source, record);
            }
        }
        Ok(Records { artifacts, sources })
    }
}

impl ExecutionView {
    /// `cache_rows`: the cache rows of the run's keys (see the module documentation).
    async fn load(
        store: &dyn Store,
        record: ExecutionRecord,
        cache_rows: &HashMap<StageKey, CachedExecution>,
    ) -> Result<Self, CliError> {
        let fingerprint = record.fingerprint.as_deref().and_then(|json| {
            Fingerprint::from_json(json)
                .map_err(|e| eprintln!("warning: execution {}: {e}", record.id))
                .ok()
        });
        let edges = match record.status {
            ExecStatus::Succeeded | ExecStatus::Cached => {
                recorded_edges(store, &record, fingerprint.as_ref(), cache_rows).await?
            }
            _ => ExecutionEdges {
                inputs: fingerprint
                    .as_ref()
                    .map(fingerprint_inputs)
                    .unwrap_or_default(),
                outputs: BTreeMap::new(),
            },
        };
        let externals = fingerprint
            .iter()
            .flat_map(|f| f.externals.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(ExecutionView {
            record,
            fingerprint,
            inputs: edges.inputs,
            outputs: edges.outputs,
            externals,
        })
    }

    /// The fingerprint's parameters (empty when it is unreadable).
    pub fn params(&self) -> Vec<(&str, &serde_json::Value)> {
        self.fingerprint
            .iter()
            .flat_map(|f| f.params.iter().map(|(k, v)| (k.as_str(), v)))
            .collect()
    }
}

/// The recorded edges of the source of a success or cache hit: from its fingerprint and
/// its key's cache row when that row is the source's, else queried.
async fn recorded_edges(
    store: &dyn Store,
    record: &ExecutionRecord,
    fingerprint: Option<&Fingerprint>,
    cache_rows: &HashMap<StageKey, CachedExecution>,
) -> Result<ExecutionEdges, CliError> {
    let source = source_of(record);
    let row = cache_rows
        .get(&record.stage_key)
        .filter(|row| row.execution_id == source);
    if let (Some(fingerprint), Some(row)) = (fingerprint, row) {
        return Ok(ExecutionEdges {
            inputs: fingerprint_inputs(fingerprint),
            outputs: row
                .outputs
                .iter()
                .map(|(name, a)| (name.clone(), a.hash.clone()))
                .collect(),
        });
    }
    let mut edges = store.execution_edges(source).await.code(STORE)?;
    if edges.inputs.is_empty() {
        edges.inputs = fingerprint.map(fingerprint_inputs).unwrap_or_default();
    }
    Ok(edges)
}

/// The input edges a fingerprint names, in slot then list order: the edges the scheduler
/// records when the execution succeeds.
pub fn fingerprint_inputs(f: &Fingerprint) -> Vec<InputEdge> {
    let mut edges = Vec::new();
    for (slot, hashes) in f.inputs.iter() {
        let list = match hashes {
            SlotHashes::One(h) => std::slice::from_ref(h),
            SlotHashes::Many(hs) => hs.as_slice(),
        };
        edges.extend(
            list.iter()
                .enumerate()
                .map(|(position, artifact)| InputEdge {
                    slot: slot.clone(),
                    position: position as u32,
                    artifact: artifact.clone(),
                }),
        );
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use histodiff_engine::protocol::{ArtifactKind, OutputArtifact};
    use histodiff_engine::store::{self, NewCacheHit, NewExecution, NewRun, Outcome};
    use std::sync::Arc;

    /// A `command` fingerprint reading `inputs` (slot, hash); `salt` tells keys apart.
    fn fingerprint(salt: &str, inputs: &[(&str, &ArtifactHash)]) -> Fingerprint {
        let inputs: serde_json::Map<String, serde_json::Value> = inputs
            .iter()
            .map(|(slot, h)| (slot.to_string(), serde_json::json!({ "one": h.0 })))
            .collect();
        let json = serde_json::json!({
            "command": null, "externals": {}, "inputs": inputs, "key_schema": 1,
            "kind": "command", "kind_version": 1, "params": {}, "salt": salt,
        });
        Fingerprint::from_json(&json.to_string()).unwrap()
    }

    fn new_execution(run: RunId, instance: &str, fp: &Fingerprint) -> NewExecution {
        NewExecution {
            run_id: run,
            stage_key: fp.key(),
            stage: instance.to_string(),
            instance: instance.to_string(),
            kind: "command".to_string(),
            kind_version: 1,
            attempt: 1,
            fingerprint: fp.canonical_json(),
        }
    }

    async fn begin(store: &dyn Store) -> RunId {
        let run = NewRun {
            pipeline: "p".into(),
            file: "p.yaml".into(),
            host: "h".into(),
            pid: 1,
        };
        store.begin_run(&run).await.unwrap()
    }

    /// Runs `instance` to success, writing `bytes` as its output `out`.
    async fn succeed(
        store: &dyn Store,
        run: RunId,
        instance: &str,
        fp: &Fingerprint,
        bytes: &[u8],
    ) -> ExecutionId {
        let hash = store.objects().put_bytes(bytes).unwrap();
        let out = OutputArtifact {
            hash,
            kind: ArtifactKind::File,
            size: bytes.len() as u64,
        };
        let id = store
            .start_execution(&new_execution(run, instance, fp))
            .await
            .unwrap();
        let outcome = Outcome::Succeeded {
            outputs: BTreeMap::from([("out".to_string(), out)]),
            inputs: fingerprint_inputs(fp),
            metrics: BTreeMap::new(),
        };
        store.finish_execution(id, &outcome, None).await.unwrap();
        id
    }

    /// Each success or cache hit of `run` reads and writes what its source recorded.
    async fn assert_source_edges(store: &dyn Store, run: RunId) -> RunGraph {
        let graph = RunGraph::load(store, run).await.unwrap();
        let succeeded = |e: &&ExecutionView| e.record.status != ExecStatus::Failed;
        for e in graph.executions.iter().filter(succeeded) {
            let recorded = store.execution_edges(source_of(&e.record)).await.unwrap();
            assert_eq!(e.inputs, recorded.inputs, "inputs of {}", e.record.instance);
            assert_eq!(
                e.outputs, recorded.outputs,
                "outputs of {}",
                e.record.instance
            );
        }
        graph
    }

    /// A first run: `prepare` writes `data`, `train` reads it and writes `model`, and
    /// `evaluate` reads `model` and fails.
    struct FirstRun {
        run: RunId,
        prepare: (ExecutionId, Fingerprint),
        train: (ExecutionId, Fingerprint),
        evaluate: (ExecutionId, Fingerprint),
        data: ArtifactHash,
        model: ArtifactHash,
    }

    async fn first_run(store: &dyn Store) -> FirstRun {
        let run = begin(store).await;
        let prepare_fp = fingerprint("prepare", &[]);
        let prepare = succeed(store, run, "prepare", &prepare_fp, b"data").await;
        let data = store.execution_edges(prepare).await.unwrap().outputs["out"].clone();
        let train_fp = fingerprint("train", &[("data", &data)]);
        let train = succeed(store, run, "train", &train_fp, b"model 1").await;
        let model = store.execution_edges(train).await.unwrap().outputs["out"].clone();
        let evaluate_fp = fingerprint("evaluate", &[("model", &model)]);
        let new = new_execution(run, "evaluate", &evaluate_fp);
        let evaluate = store.start_execution(&new).await.unwrap();
        let failed = Outcome::Failed {
            error: "boom".into(),
        };
        store
            .finish_execution(evaluate, &failed, None)
            .await
            .unwrap();
        FirstRun {
            run,
            prepare: (prepare, prepare_fp),
            train: (train, train_fp),
            evaluate: (evaluate, evaluate_fp),
            data,
            model,
        }
    }

    async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
        store::open(".histodiff", None, dir).await.unwrap()
    }

    /// A success reads and writes what it recorded, a failure what its fingerprint names
    /// and nothing; what a failure alone read is not consumed.
    #[tokio::test]
    async fn executions_read_what_they_recorded_or_their_fingerprint_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let first = first_run(&*store).await;
        let graph = assert_source_edges(&*store, first.run).await;
        let evaluate = graph.execution(first.evaluate.0).unwrap();
        assert_eq!(evaluate.inputs, fingerprint_inputs(&first.evaluate.1));
        assert!(evaluate.outputs.is_empty());
        let writer = graph.producer(&first.data).map(|(e, n)| (e.record.id, n));
        assert_eq!(writer, Some((first.prepare.0, "out")));
        assert!(
            graph.is_consumed(&first.data),
            "train read it and succeeded"
        );
        assert!(!graph.is_consumed(&first.model), "only evaluate read it");
        let missing = RunGraph::load(&*store, RunId(99)).await.err().unwrap();
        assert_eq!(missing.code, BAD_INPUT);
    }

    /// A cache hit's edges are its source's, whether they come from the key's cache row or
    /// are queried: also after the key ran again (the row names the newer execution) and
    /// after an output object is gone (the row no longer answers).
    #[tokio::test]
    async fn a_cache_hit_shows_the_edges_its_source_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let store = &*store;
        let first = first_run(store).await;
        let second = begin(store).await;
        let hit = |name: &'static str, source| NewCacheHit {
            stage: name,
            instance: name,
            source,
        };
        let hits = [hit("prepare", first.prepare.0), hit("train", first.train.0)];
        store.record_cache_hits(second, 0, &hits).await.unwrap();
        let graph = assert_source_edges(store, second).await;
        assert_eq!(graph.executions[1].outputs["out"], first.model);

        let third = begin(store).await;
        succeed(store, third, "train", &first.train.1, b"model 2").await;
        let graph = assert_source_edges(store, second).await;
        let reused = &graph.executions[1].outputs["out"];
        assert_eq!(reused, &first.model, "not the newer result");

        let data_file = store.objects().path_of(&first.data).unwrap();
        std::fs::remove_file(data_file).unwrap();
        let graph = assert_source_edges(store, second).await;
        assert_eq!(graph.executions[0].outputs["out"], first.data);
    }
}
