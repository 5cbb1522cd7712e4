//! Stage keys from upstream *content*: an instance's key is known once every upstream's
//! output hashes are, so a re-executed upstream that produced identical bytes leaves the
//! key — and everything downstream — unchanged (early cutoff).

use crate::fingerprint::{dep_key, Fingerprint, SlotHashes};
use crate::hash::ArtifactHash;
use crate::plan::{InputBinding, Instance, Plan, SmallMap, Upstream};
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
