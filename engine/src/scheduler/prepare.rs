//! Job preparation: a fresh work directory with every input materialised read-only at
//! `in/<slot>[/<index>]`. The job itself goes to the executor, which writes `job.json`
//! only when it starts a worker process.

use super::execution::{Launch, RunContext};
use crate::plan::{InputBinding, Plan, Upstream};
use crate::protocol::{InputArtifact, Job};
use crate::store::{self, ExecutionId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The job of a launch, its inputs materialised into a fresh work directory.
pub async fn prepare(
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

/// A fresh work directory with the inputs materialised read-only.
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
