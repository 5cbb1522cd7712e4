//! Lineage: the walk upstream from an instance or an artifact along recorded edges, and
//! the one-step edges the dashboard navigates (who made an artifact, who read it, what an
//! execution read and wrote), with artifacts found by hash prefix.

use crate::store_support::*;
use histodiff_engine::protocol::OutputArtifact;
use histodiff_engine::store::*;
use std::path::Path;

/// From the last of fewshot → select → evaluate, lineage lists all three, newest first,
/// with the edges between them; from the middle artifact, two; from nothing, none.
pub async fn lineage_follows_edges_upstream(backend: &impl Backend) {
    let store = backend.store().await;
    let (_, outs) = chain(&store, backend.dir()).await;
    let nodes = store
        .lineage(&LineageTarget::Instance("evaluate[ratio=1]".into()))
        .await
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.instance.as_str()).collect();
    assert_eq!(names, ["evaluate[ratio=1]", "select[ratio=1]", "fewshot"]);
    assert_eq!(nodes[0].inputs[0].artifact, outs[1].hash);
    assert_eq!(nodes[1].outputs["out"], outs[1].hash);
    let from_middle = store
        .lineage(&LineageTarget::Artifact(outs[1].hash.clone()))
        .await
        .unwrap();
    assert_eq!(from_middle.len(), 2);
    assert!(store
        .lineage(&LineageTarget::Instance("nothing".into()))
        .await
        .unwrap()
        .is_empty());
}

fn edge(slot: &str, out: &OutputArtifact) -> InputEdge {
    InputEdge {
        slot: slot.into(),
        position: 0,
        artifact: out.hash.clone(),
    }
}

/// The executions and outputs of [`fork`].
struct Fork {
    crc: (ExecutionId, OutputArtifact),
    fewshot: (ExecutionId, OutputArtifact),
    /// train (reads fewshot's output as `data`) and evaluate (also crc's as `base`).
    readers: Vec<ExecutionId>,
}

/// crc → fewshot → {train, evaluate}, evaluate also reading crc: all succeeded.
async fn fork(store: &dyn Store, dir: &Path) -> Fork {
    let run = begin_run(store).await;
    let finish = async |name: &str, slot: &str, inputs: Vec<InputEdge>| {
        let id = store.start_execution(&new_exec(run, name)).await.unwrap();
        let out = output(store, dir, name.as_bytes());
        let outcome = success(&[(slot, &out)], inputs);
        store.finish_execution(id, &outcome, None).await.unwrap();
        (id, out)
    };
    let crc = finish("crc", "images", vec![]).await;
    let fewshot = finish("fewshot", "subset", vec![edge("images", &crc.1)]).await;
    let mut readers = Vec::new();
    for (i, name) in ["train", "evaluate"].into_iter().enumerate() {
        let inputs = [edge("data", &fewshot.1), edge("base", &crc.1)];
        let (id, _) = finish(name, "result", inputs[..1 + i].to_vec()).await;
        readers.push(id);
    }
    Fork {
        crc,
        fewshot,
        readers,
    }
}

/// fewshot's output has one producer and two consumers, crc's is read by fewshot and
/// evaluate, and each execution lists what it read and wrote.
pub async fn edges_lead_both_ways(backend: &impl Backend) {
    let (store, dir) = (backend.store().await, backend.dir());
    let Fork {
        crc: (crc, crc_out),
        fewshot: (few, few_out),
        readers,
    } = fork(&store, dir).await;
    let around = store.artifact_edges(&few_out.hash).await.unwrap();
    assert_eq!(around.producers, vec![(few, "subset".to_string())]);
    let consumers: Vec<_> = around
        .consumers
        .iter()
        .map(|(id, e)| (*id, e.slot.as_str()))
        .collect();
    assert_eq!(consumers, vec![(readers[0], "data"), (readers[1], "data")]);
    let around_crc = store.artifact_edges(&crc_out.hash).await.unwrap();
    assert_eq!(around_crc.producers, vec![(crc, "images".to_string())]);
    let crc_readers: Vec<_> = around_crc.consumers.iter().map(|(id, _)| *id).collect();
    assert_eq!(crc_readers, vec![few, readers[1]]);

    assert!(store.in_flight().await.unwrap().is_empty(), "all finished");
    let edges = store.execution_edges(few).await.unwrap();
    assert_eq!(edges.inputs, vec![edge("images", &crc_out)]);
    assert_eq!(edges.outputs.get("subset"), Some(&few_out.hash));
    let nothing = store
        .artifact_edges(&output(&store, dir, b"stray").hash)
        .await
        .unwrap();
    assert_eq!(nothing, ArtifactEdges::default());
}

/// A unique prefix or the whole hash finds one artifact; the empty prefix finds every
/// artifact, up to the limit.
pub async fn artifacts_are_found_by_hash_prefix(backend: &impl Backend) {
    let store = backend.store().await;
    let few_out = fork(&store, backend.dir()).await.fewshot.1;
    let full = &few_out.hash.0;
    let found = store.artifacts_by_prefix(&full[..8], 2).await.unwrap();
    assert_eq!(found, vec![few_out.hash.clone()], "a unique prefix");
    let found = store.artifacts_by_prefix(full, 2).await.unwrap();
    assert_eq!(found, vec![few_out.hash.clone()], "the whole hash");
    let all = store.artifacts_by_prefix("", 10).await.unwrap();
    assert_eq!(
        all.len(),
        4,
        "an empty prefix matches every artifact: {all:?}"
    );
    assert_eq!(
        store.artifacts_by_prefix("", 2).await.unwrap().len(),
        2,
        "limit"
    );
}
