//! Lineage, one step each way, as links the page follows: an execution's inputs (each
//! with the execution that wrote it), and an artifact's producers (with their own inputs)
//! and consumers. Edges are recorded when an execution succeeds; while one is still
//! running (or after it failed) its inputs are read from its fingerprint instead, so a
//! training stage shows what it trains on, and the artifact lists it as a reader, while
//! it trains.

use super::api::ExecutionView;
use super::artifacts::{preview, resolve, Preview};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::commands::run_graph::fingerprint_inputs;
use axum::extract::{Path, State};
use axum::Json;
use histodiff_engine::fingerprint::Fingerprint;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ExecutionId, ExecutionRecord, InputEdge, Store};
use serde::Serialize;

/// Inputs of one execution whose producers are looked up (a gather may read thousands).
const NAMED_INPUTS: usize = 100;

/// An artifact an edge names, with the execution that wrote it when known.
#[derive(Debug, Serialize)]
pub struct ArtifactLink {
    pub hash: ArtifactHash,
    pub producer: Option<ProducerLink>,
}

#[derive(Debug, Serialize)]
pub struct ProducerLink {
    pub id: ExecutionId,
    pub instance: String,
    pub output: String,
}

#[derive(Debug, Serialize)]
pub struct InputView {
    pub slot: String,
    pub position: u32,
    pub artifact: ArtifactLink,
}

/// The edges an execution read: the recorded ones, else those of its fingerprint.
fn read_edges(record: &ExecutionRecord, recorded: Vec<InputEdge>) -> Vec<InputEdge> {
    if !recorded.is_empty() {
        return recorded;
    }
    record
        .fingerprint
        .as_deref()
        .and_then(|json| Fingerprint::from_json(json).ok())
        .map(|fingerprint| fingerprint_inputs(&fingerprint))
        .unwrap_or_default()
}

/// The inputs of an execution as links (at most [`NAMED_INPUTS`]), and how many more.
pub async fn inputs_of(
    store: &dyn Store,
    record: &ExecutionRecord,
    recorded: Vec<InputEdge>,
) -> ApiResult<(Vec<InputView>, usize)> {
    let edges = read_edges(record, recorded);
    let more = edges.len().saturating_sub(NAMED_INPUTS);
    let mut inputs = Vec::with_capacity(edges.len().min(NAMED_INPUTS));
    for edge in edges.into_iter().take(NAMED_INPUTS) {
        inputs.push(InputView {
            slot: edge.slot,
            position: edge.position,
            artifact: link(store, edge.artifact).await?,
        });
    }
    Ok((inputs, more))
}

/// An artifact with the (first) execution that wrote it.
async fn link(store: &dyn Store, hash: ArtifactHash) -> ApiResult<ArtifactLink> {
    let edges = store.artifact_edges(&hash).await.map_err(ApiError::store)?;
    let mut producer = None;
    if let Some((id, output)) = edges.producers.into_iter().next() {
        let found = store.execution(id).await.map_err(ApiError::store)?;
        producer = found.map(|e| ProducerLink {
            id,
            instance: e.instance,
            output,
        });
    }
    Ok(ArtifactLink { hash, producer })
}

#[derive(Debug, Serialize)]
pub struct ProducerView {
    pub execution: ExecutionView,
    pub output: String,
    pub inputs: Vec<InputView>,
    pub more_inputs: usize,
}

#[derive(Debug, Serialize)]
pub struct ConsumerView {
    pub execution: ExecutionView,
    pub slot: String,
    pub position: u32,
}

#[derive(Debug, Serialize)]
pub struct ArtifactDetail {
    pub hash: ArtifactHash,
    pub kind: ArtifactKind,
    pub size: u64,
    pub created: i64,
    pub producers: Vec<ProducerView>,
    pub consumers: Vec<ConsumerView>,
    pub preview: Preview,
}

/// `GET /api/artifacts/{hash}`: the artifact, who wrote it (and what that read), who
/// reads or read it, and its preview.
pub async fn artifact(
    State(app): State<AppState>,
    Path(hash): Path<String>,
) -> ApiResult<Json<ArtifactDetail>> {
    let store = app.store.as_ref();
    let record = resolve(store, &hash).await?;
    let edges = store
        .artifact_edges(&record.hash)
        .await
        .map_err(ApiError::store)?;
    let mut producers = Vec::new();
    for (id, output) in edges.producers {
        let Some(e) = store.execution(id).await.map_err(ApiError::store)? else {
            continue;
        };
        let read = store.execution_edges(id).await.map_err(ApiError::store)?;
        let (inputs, more_inputs) = inputs_of(store, &e, read.inputs).await?;
        producers.push(ProducerView {
            execution: e.into(),
            output,
            inputs,
            more_inputs,
        });
    }
    let mut consumers = Vec::new();
    for (id, edge) in edges.consumers {
        if let Some(e) = store.execution(id).await.map_err(ApiError::store)? {
            consumers.push(consumer(e, edge));
        }
    }
    consumers.extend(readers_in_flight(store, &record.hash).await?);
    Ok(Json(ArtifactDetail {
        preview: preview(store, &record).await?,
        hash: record.hash,
        kind: record.kind,
        size: record.size,
        created: record.created,
        producers,
        consumers,
    }))
}

fn consumer(e: ExecutionRecord, edge: InputEdge) -> ConsumerView {
    ConsumerView {
        execution: e.into(),
        slot: edge.slot,
        position: edge.position,
    }
}

/// Executions running now whose fingerprint reads `hash` (their edges are not recorded
/// until they succeed).
async fn readers_in_flight(store: &dyn Store, hash: &ArtifactHash) -> ApiResult<Vec<ConsumerView>> {
    let mut readers = Vec::new();
    for e in store.in_flight().await.map_err(ApiError::store)? {
        let edge = read_edges(&e, Vec::new())
            .into_iter()
            .find(|edge| &edge.artifact == hash);
        if let Some(edge) = edge {
            readers.push(consumer(e, edge));
        }
    }
    Ok(readers)
}
