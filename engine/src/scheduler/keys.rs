//! Stage keys from upstream *content*: an instance's key is known once every upstream's
//! output hashes are, so a re-executed upstream that produced identical bytes leaves the
//! key — and everything downstream — unchanged (early cutoff). External data (path
//! parameters, command deps) enters keys by content, hashed once per run through the
//! store's stat cache.

use crate::fingerprint::{dep_key, Fingerprint, FingerprintRef, SlotRef};
use crate::hash::ArtifactHash;
use crate::hash::StageKey;
use crate::plan::{InputBinding, Instance, Plan, SmallMap, Upstream};
use crate::store::{self, Store};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
            .flat_map(|c| c.deps.iter().map(|d| dep_path(plan, d)));
        let params = inst
            .external_paths
            .values()
            .map(|p| Cow::Borrowed(p.as_path()));
        for p in params.chain(deps) {
            if !seen.contains(p.as_ref()) {
                seen.insert(p.clone().into_owned());
                paths.push(p.into_owned());
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
    fingerprint_ref(plan, i, outputs, externals).map(|f| f.to_owned())
}

/// The stage key of instance `i`, or `None` while an upstream's outputs are unknown;
/// the same as `fingerprint(…).key()` without building the owned fingerprint.
pub fn key(
    plan: &Plan,
    i: usize,
    outputs: &[Option<Arc<Outputs>>],
    externals: &ExternalHashes,
) -> Option<StageKey> {
    fingerprint_ref(plan, i, outputs, externals).map(|f| f.key())
}

fn fingerprint_ref<'a>(
    plan: &'a Plan,
    i: usize,
    outputs: &'a [Option<Arc<Outputs>>],
    externals: &'a ExternalHashes,
) -> Option<FingerprintRef<'a>> {
    let inst = &plan.instances[i];
    let mut inputs = Vec::with_capacity(inst.inputs.len());
    for (slot, binding) in &inst.inputs {
        let hashes = match binding {
            InputBinding::One(u) => SlotRef::One(upstream_hash(u, outputs)?),
            InputBinding::Many(us) => SlotRef::Many(
                us.iter()
                    .map(|u| upstream_hash(u, outputs))
                    .collect::<Option<_>>()?,
            ),
        };
        inputs.push((slot.as_str(), hashes));
    }
    Some(FingerprintRef::of(
        inst,
        inputs,
        instance_externals(plan, inst, externals)?,
        &plan.settings.salt,
    ))
}

fn upstream_hash<'a>(
    u: &Upstream,
    outputs: &'a [Option<Arc<Outputs>>],
) -> Option<&'a ArtifactHash> {
    outputs[u.instance].as_ref()?.get(&u.output)
}

/// The instance's external data hashes, sorted by key (a path parameter's name, or
/// `deps:<path>` as written), each key once.
fn instance_externals<'a>(
    plan: &Plan,
    inst: &'a Instance,
    externals: &'a ExternalHashes,
) -> Option<Vec<(Cow<'a, str>, &'a ArtifactHash)>> {
    let deps = inst.command.as_ref().map_or(0, |c| c.deps.len());
    let mut found = Vec::with_capacity(inst.external_paths.len() + deps);
    for (name, path) in &inst.external_paths {
        found.push((Cow::Borrowed(name.as_str()), externals.get(path)?));
    }
    for dep in inst.command.iter().flat_map(|c| c.deps.iter()) {
        // Keyed as written (relative to the pipeline), so moving the project keeps keys.
        let written = dep.strip_prefix(&plan.base_dir).unwrap_or(dep);
        let hash = externals.get(dep_path(plan, dep).as_ref())?;
        found.push((Cow::Owned(dep_key(written)), hash));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    Some(found)
}

/// Where a command dep is: planned deps are already absolute, so this borrows them
/// (keying a 10,000-member sweep asks it once per member).
fn dep_path<'a>(plan: &Plan, dep: &'a Path) -> Cow<'a, Path> {
    match dep.is_absolute() {
        true => Cow::Borrowed(dep),
        false => Cow::Owned(plan.base_dir.join(dep)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::spec::{self, SettingsOverrides};

    /// `key` hashes the borrowed view; executions keep the owned fingerprint. Both must
    /// give one key for every shape: deps (sorted, a repeated one once), outs, a single
    /// input, a list slot and a gather.
    #[test]
    fn the_key_of_the_view_is_the_key_of_the_owned_fingerprint() {
        let yaml = "version: 1\nname: t\nstages:\n  \
          a:\n    uses: command\n    matrix: { i: [1, 2] }\n    \
            run: echo ${matrix.i} > ${outs.x}\n    deps: [z.txt, b/y.txt, z.txt]\n    \
            outs: { x: out/x.txt, w: ./w.txt }\n  \
          b:\n    uses: command\n    run: cat ${inputs.one} ${inputs.all} > ${outs.y}\n    \
            inputs: { one: a.x, all: \"a.w[*]\" }\n    outs: { y: y.txt }\n";
        let plan = spec::load_str(
            yaml,
            std::path::Path::new("/p/pipeline.yaml"),
            &Registry::with_builtins(),
            &SettingsOverrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let externals: ExternalHashes = external_paths(&plan)
            .into_iter()
            .enumerate()
            .map(|(n, p)| (p, ArtifactHash(format!("{n:064x}"))))
            .collect();
        let mut outputs: Vec<Option<Arc<Outputs>>> = vec![None; plan.instances.len()];
        for (i, inst) in plan.instances.iter().enumerate() {
            let by_view = key(&plan, i, &outputs, &externals).expect("upstreams are known");
            let owned = fingerprint(&plan, i, &outputs, &externals).expect("the same");
            assert_eq!(by_view, owned.key(), "{}", inst.name);
            assert_eq!(
                owned,
                Fingerprint::from_json(&owned.canonical_json()).unwrap()
            );
            let made = inst.outputs.iter().map(|o| {
                let hash = blake3::hash(format!("{}.{o}", inst.name).as_bytes());
                (o.clone(), ArtifactHash(hash.to_hex().to_string()))
            });
            outputs[i] = Some(Arc::new(made.collect()));
        }
        let deps = &fingerprint(&plan, 0, &outputs, &externals)
            .unwrap()
            .externals;
        let names: Vec<&str> = deps.keys().map(String::as_str).collect();
        assert_eq!(names, ["deps:b/y.txt", "deps:z.txt"]);
    }
}
