//! The lineage edges around one artifact (its producers and consumers) and around one
//! execution (its inputs and outputs): the two directions the dashboard navigates.

use super::{db_err, rows, SqlStore};
use crate::hash::ArtifactHash;
use crate::store::types::*;
use crate::store::StoreResult;

impl SqlStore {
    pub(super) async fn edges_of_artifact(
        &self,
        hash: &ArtifactHash,
    ) -> StoreResult<ArtifactEdges> {
        let written = sqlx::query(
            "SELECT execution_id, name FROM execution_outputs WHERE artifact = $1 \
             ORDER BY execution_id, name",
        )
        .bind(&hash.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("artifact producers"))?;
        let read = sqlx::query(
            "SELECT execution_id, slot, position, artifact FROM execution_inputs \
             WHERE artifact = $1 ORDER BY execution_id, slot, position",
        )
        .bind(&hash.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("artifact consumers"))?;
        let mut edges = ArtifactEdges::default();
        for row in &written {
            let id = ExecutionId(rows::get(row, "execution_id")?);
            edges.producers.push((id, rows::get(row, "name")?));
        }
        for row in &read {
            let id = ExecutionId(rows::get(row, "execution_id")?);
            edges.consumers.push((id, rows::input_edge(row)?));
        }
        Ok(edges)
    }

    pub(super) async fn edges_of_execution(&self, id: ExecutionId) -> StoreResult<ExecutionEdges> {
        let read = sqlx::query(
            "SELECT slot, position, artifact FROM execution_inputs WHERE execution_id = $1 \
             ORDER BY slot, position",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("execution inputs"))?;
        let written = sqlx::query(
            "SELECT name, artifact FROM execution_outputs WHERE execution_id = $1 ORDER BY name",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("execution outputs"))?;
        let mut edges = ExecutionEdges::default();
        for row in &read {
            edges.inputs.push(rows::input_edge(row)?);
        }
        for row in &written {
            let hash = ArtifactHash(rows::get(row, "artifact")?);
            edges.outputs.insert(rows::get(row, "name")?, hash);
        }
        Ok(edges)
    }
}
