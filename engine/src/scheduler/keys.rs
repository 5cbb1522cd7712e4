//! Stage keys from upstream *content*: an instance's key is known once every upstream's
//! output hashes are, so a re-executed upstream that produced identical bytes leaves the
//! key — and everything downstream — unchanged (early cutoff). External data (path
//! parameters, command deps) enters keys by content, hashed once per run through the
//! store's stat cache.

use crate::fingerprint::{dep_key, Fingerprint, SlotHashes};
use crate::hash::ArtifactHash;
use crate::plan::{InputBinding, Instance, Plan, SmallMap, Upstream};
use crate::store::{self, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Output name → artifact hash of one instance.
pub type Outputs = SmallMap<String, ArtifactHash>;

/// Content hashes of external data (path parameters, command deps), by absolute path.
pub type ExternalHashes = HashMap<PathBuf, ArtifactHash>;

/// Every external path of the plan, once each (10,000 sweep members share one data set).
pub fn external_paths(plan: &Plan) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for inst in &plan.instances {
        let deps = inst
            .command
            .iter()
            .flat_map(|c| c.deps.iter().map(|d| plan.base_dir.join(d)));
        for p in inst.external_paths.values().cloned().chain(deps) {
            if seen.insert(p.clone()) {
                paths.push(p);
            }
        }
    }
    paths
}

/// The fingerprint of instance `i`, or `None` while an upstream's outputs are unknown.
pub fn fingerprint(
    plan: &Plan,
    i: usize,
    outputs: &[Option<Arc<Outputs>>],
    externals: &ExternalHashes,
) -> Option<Fingerprint> {
    let inst = &plan.instances[i];
    let mut inputs = SmallMap::with_capacity(inst.inputs.len());
    for (slot, binding) in &inst.inputs {
        let hashes = match binding {
            InputBinding::One(u) => SlotHashes::One(upstream_hash(u, outputs)?),
            InputBinding::Many(us) => SlotHashes::Many(
                us.iter()
                    .map(|u| upstream_hash(u, outputs))
                    .collect::<Option<_>>()?,
            ),
        };
        inputs.insert(slot.clone(), hashes);
    }
    Some(Fingerprint::of(
        inst,
        inputs,
        instance_externals(plan, inst, externals)?,
        &plan.settings.salt,
    ))
}

fn upstream_hash(u: &Upstream, outputs: &[Option<Arc<Outputs>>]) -> Option<ArtifactHash> {
    outputs[u.instance].as_ref()?.get(&u.output).cloned()
}

fn instance_externals(
    plan: &Plan,
    inst: &Instance,
    externals: &ExternalHashes,
) -> Option<SmallMap<String, ArtifactHash>> {
    let deps = inst.command.as_ref().map_or(0, |c| c.deps.len());
    let mut map = SmallMap::with_capacity(inst.external_paths.len() + deps);
    for (name, path) in &inst.external_paths {
        map.insert(name.clone(), externals.get(path)?.clone());
    }
    for dep in inst.command.iter().flat_map(|c| c.deps.iter()) {
        // Keyed as written (relative to the pipeline), so moving the project keeps keys.
        let written = dep.strip_prefix(&plan.base_dir).unwrap_or(dep);
        map.insert(
            dep_key(written),
            externals.get(&plan.base_dir.join(dep))?.clone(),
        );
    }
    Some(map)
}

/// Hashes every external path of the plan (each once) through the store's stat cache;
/// also says how many files were too recently modified to be cached.
pub async fn hash_externals(
    store: &Arc<dyn Store>,
    plan: &Plan,
) -> Result<(ExternalHashes, usize), (PathBuf, String)> {
    let paths = external_paths(plan);
    let hashed = hash_in_chunks(store, &paths).await?;
    let mut hashes = ExternalHashes::with_capacity(paths.len());
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

/// Paths hashed together: one bulk statement of the store's.
const EXTERNALS_CHUNK: usize = store::sql::BULK_ROWS;
/// Chunks hashed at once: one chunk's files are read while the store answers for another.
const EXTERNALS_IN_FLIGHT: usize = 3;

/// Hashes `paths` a chunk at a time, a few chunks at once, results in order.
async fn hash_in_chunks(
    store: &Arc<dyn Store>,
    paths: &[PathBuf],
) -> Result<Vec<store::stat_cache::ExternalHash>, (PathBuf, String)> {
    let mut hashed = Vec::with_capacity(paths.len());
    let mut in_flight = std::collections::VecDeque::new();
    let mut chunks = paths.chunks(EXTERNALS_CHUNK).peekable();
    while chunks.peek().is_some() || !in_flight.is_empty() {
        while in_flight.len() < EXTERNALS_IN_FLIGHT {
            let Some(chunk) = chunks.next() else { break };
            let (store, chunk) = (store.clone(), chunk.to_vec());
            let first = chunk[0].clone();
            let task = tokio::spawn(async move {
                store::stat_cache::hash_externals(store.as_ref(), &chunk).await
            });
            in_flight.push_back((first, task));
        }
        let Some((first, task)) = in_flight.pop_front() else {
            break;
        };
        let chunk = task
            .await
            .map_err(|e| (first, format!("hashing ended abnormally: {e}")))?
            .map_err(|(path, e)| (path, e.to_string()))?;
        hashed.extend(chunk);
    }
    Ok(hashed)
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
