//! Everything an export says about one run, read from the store once: the run, each of
//! its executions with its fingerprint and lineage edges, and the artifacts they touched.

use crate::exit::{CliError, Coded, BAD_INPUT, STORE};
use histodiff_engine::fingerprint::{Fingerprint, SlotHashes};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::store::{
    ArtifactRecord, ExecStatus, ExecutionId, ExecutionRecord, InputEdge, RunId, RunRecord, Store,
};
use std::collections::BTreeMap;

/// One run and what its executions read and wrote.
pub struct RunGraph {
    pub run: RunRecord,
    /// Oldest first, cache hits included.
    pub executions: Vec<ExecutionView>,
    /// Every artifact an execution of the run read or wrote, by hash.
    pub artifacts: BTreeMap<ArtifactHash, ArtifactRecord>,
    /// The executions of earlier runs whose outputs the run's cache hits reused.
    pub sources: BTreeMap<ExecutionId, ExecutionRecord>,
}

/// One execution with what it read and wrote.
pub struct ExecutionView {
    pub record: ExecutionRecord,
    /// Absent only if the stored JSON cannot be read (reported on stderr).
    pub fingerprint: Option<Fingerprint>,
    /// What it read: the recorded edges of a success (a cache hit: of the execution it
    /// reused), else the upstream hashes its fingerprint names.
    pub inputs: Vec<InputEdge>,
    /// Output name → artifact; empty unless it succeeded or was a cache hit.
    pub outputs: BTreeMap<String, ArtifactHash>,
    /// Path parameter (or `deps:<path>`) → content hash of the external data it read.
    pub externals: BTreeMap<String, ArtifactHash>,
}

impl RunGraph {
    /// Reads run `id`; an unknown id is bad input (exit 2), a store failure exit 3.
    pub async fn load(store: &dyn Store, id: RunId) -> Result<Self, CliError> {
        let runs = store.runs().await.code(STORE)?;
        let run = runs.into_iter().find(|r| r.id == id).ok_or_else(|| {
            anyhow::anyhow!("no run {id} in this store (`histodiff status` lists the runs)")
        });
        let run = run.code(BAD_INPUT)?;
        let mut executions = Vec::new();
        for record in store.executions(Some(id)).await.code(STORE)? {
            executions.push(ExecutionView::load(store, record).await?);
        }
        let mut artifacts = BTreeMap::new();
        for e in &executions {
            let hashes = e
                .inputs
                .iter()
                .map(|i| &i.artifact)
                .chain(e.outputs.values());
            for hash in hashes {
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
        for source in executions.iter().filter_map(|e| e.record.cached_from) {
            if sources.contains_key(&source) || executions.iter().any(|e| e.record.id == source) {
                continue;
            }
            if let Some(record) = store.execution(source).await.code(STORE)? {
                sources.insert(source, record);
            }
        }
        Ok(RunGraph {
            run,
            executions,
            artifacts,
            sources,
        })
    }

    /// The execution of this run that wrote `hash` (a cache hit counts as writing the
    /// outputs it reused), with the output name.
    pub fn producer(&self, hash: &ArtifactHash) -> Option<(&ExecutionView, &str)> {
        self.executions.iter().find_map(|e| {
            e.outputs
                .iter()
                .find(|(_, h)| *h == hash)
                .map(|(name, _)| (e, name.as_str()))
        })
    }

    /// Whether an execution of this run that succeeded (or was a cache hit) read `hash`:
    /// what none did is a result of the run, not an intermediate.
    pub fn is_consumed(&self, hash: &ArtifactHash) -> bool {
        self.executions.iter().any(|e| {
            matches!(e.record.status, ExecStatus::Succeeded | ExecStatus::Cached)
                && e.inputs.iter().any(|i| &i.artifact == hash)
        })
    }
}

impl ExecutionView {
    async fn load(store: &dyn Store, record: ExecutionRecord) -> Result<Self, CliError> {
        let fingerprint = record.fingerprint.as_deref().and_then(|json| {
            Fingerprint::from_json(json)
                .map_err(|e| eprintln!("warning: execution {}: {e}", record.id))
                .ok()
        });
        let succeeded = matches!(record.status, ExecStatus::Succeeded | ExecStatus::Cached);
        let (mut inputs, outputs) = if succeeded {
            let source = record.cached_from.unwrap_or(record.id);
            let edges = store.execution_edges(source).await.code(STORE)?;
            (edges.inputs, edges.outputs)
        } else {
            (Vec::new(), BTreeMap::new())
        };
        if inputs.is_empty() {
            inputs = fingerprint
                .as_ref()
                .map(fingerprint_inputs)
                .unwrap_or_default();
        }
        let externals = fingerprint
            .as_ref()
            .map(|f| {
                f.externals
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ExecutionView {
            record,
            fingerprint,
            inputs,
            outputs,
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

/// The input edges a fingerprint names, in slot then list order.
fn fingerprint_inputs(f: &Fingerprint) -> Vec<InputEdge> {
    let mut edges = Vec::new();
    for (slot, hashes) in f.inputs.iter() {
        let list = match hashes {
            SlotHashes::One(h) => std::slice::from_ref(h),
            SlotHashes::Many(hs) => hs.as_slice(),
        };
        for (position, artifact) in list.iter().enumerate() {
            edges.push(InputEdge {
                slot: slot.clone(),
                position: position as u32,
                artifact: artifact.clone(),
            });
        }
    }
    edges
}
