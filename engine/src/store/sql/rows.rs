//! Reading rows back into store types. Every column is read by name; a value the schema
//! does not allow (an unknown status text, a negative size) is reported as
//! [`StoreError::Corrupt`] rather than trusted.

use super::db_err;
use crate::hash::{ArtifactHash, StageKey};
use crate::store::types::*;
use crate::store::{StoreError, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The columns [`execution`] reads, from `executions e` joined to its cache source `src`.
pub(crate) const EXECUTION_COLUMNS: &str = "e.id, e.run_id, e.stage_key, e.stage, e.instance, \
     e.kind, e.kind_version, e.status, e.attempt, e.host, e.worker_pid, e.slurm_job_id, \
     e.device, e.started, e.finished, e.duration, \
     COALESCE(e.fingerprint, src.fingerprint) AS fingerprint, e.error, e.cached_from";

/// `FROM` clause matching [`EXECUTION_COLUMNS`].
pub(crate) const EXECUTION_FROM: &str =
    "executions e LEFT JOIN executions src ON src.id = e.cached_from";

pub(crate) const RUN_COLUMNS: &str = "id, pipeline, file, started, finished, status, host, pid";

pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &'static str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column).map_err(db_err(column))
}

fn corrupt(place: &str, value: impl ToString) -> StoreError {
    StoreError::Corrupt {
        place: place.to_string(),
        value: value.to_string(),
    }
}

fn unsigned(place: &'static str, v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|_| corrupt(place, v))
}

fn small(place: &'static str, v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(place, v))
}

pub(crate) fn execution(row: &AnyRow) -> StoreResult<ExecutionRecord> {
    let status: String = get(row, "status")?;
    let cached_from: Option<i64> = get(row, "cached_from")?;
    Ok(ExecutionRecord {
        id: ExecutionId(get(row, "id")?),
        run_id: RunId(get(row, "run_id")?),
        stage_key: StageKey(get(row, "stage_key")?),
        stage: get(row, "stage")?,
        instance: get(row, "instance")?,
        kind: get(row, "kind")?,
        kind_version: small("executions.kind_version", get(row, "kind_version")?)?,
        status: ExecStatus::parse(&status).ok_or_else(|| corrupt("executions.status", &status))?,
        attempt: small("executions.attempt", get(row, "attempt")?)?,
        host: get(row, "host")?,
        worker_pid: get(row, "worker_pid")?,
        slurm_job_id: get(row, "slurm_job_id")?,
        device: get(row, "device")?,
        started: get(row, "started")?,
        finished: get(row, "finished")?,
        duration: get(row, "duration")?,
        fingerprint: get(row, "fingerprint")?,
        error: get(row, "error")?,
        cached_from: cached_from.map(ExecutionId),
    })
}

pub(crate) fn run(row: &AnyRow) -> StoreResult<RunRecord> {
    let status: String = get(row, "status")?;
    Ok(RunRecord {
        id: RunId(get(row, "id")?),
        pipeline: get(row, "pipeline")?,
        file: get(row, "file")?,
        started: get(row, "started")?,
        finished: get(row, "finished")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("runs.status", &status))?,
        host: get(row, "host")?,
        pid: get(row, "pid")?,
    })
}

/// An artifact from columns `hash`, `kind`, `size`.
pub(crate) fn output(row: &AnyRow) -> StoreResult<crate::protocol::OutputArtifact> {
    let kind: String = get(row, "kind")?;
    output_of(get(row, "hash")?, &kind, get(row, "size")?)
}

/// An output from its `artifacts` columns (as [`output`] reads them from a row).
pub(crate) fn output_of(
    hash: String,
    kind: &str,
    size: i64,
) -> StoreResult<crate::protocol::OutputArtifact> {
    Ok(crate::protocol::OutputArtifact {
        hash: ArtifactHash(hash),
        kind: parse_kind(kind).ok_or_else(|| corrupt("artifacts.kind", kind))?,
        size: unsigned("artifacts.size", size)?,
    })
}

pub(crate) fn artifact(row: &AnyRow) -> StoreResult<ArtifactRecord> {
    let out = output(row)?;
    Ok(ArtifactRecord {
        hash: out.hash,
        kind: out.kind,
        size: out.size,
        created: get(row, "created")?,
    })
}

pub(crate) fn holder(row: &AnyRow) -> StoreResult<Holder> {
    let run_id: Option<i64> = get(row, "run_id")?;
    Ok(Holder {
        run_id: run_id.map(RunId),
        host: get(row, "host")?,
        pid: get(row, "pid")?,
        slurm_job_id: get(row, "slurm_job_id")?,
    })
}

/// A stat-cache entry from its columns (path, size, mtime_ns, inode, hash).
pub(crate) fn stat_entry_of(
    (path, size, mtime_ns, inode, hash): (String, i64, i64, i64, String),
) -> StoreResult<StatEntry> {
    Ok(StatEntry {
        path,
        size: unsigned("stat_cache.size", size)?,
        mtime_ns,
        // Inodes are stored as their i64 bit pattern (PostgreSQL has no unsigned type).
        inode: inode as u64,
        hash: ArtifactHash(hash),
    })
}

pub(crate) fn checkpoint(row: &AnyRow) -> StoreResult<CheckpointRecord> {
    Ok(CheckpointRecord {
        stage_key: StageKey(get(row, "stage_key")?),
        step: unsigned("checkpoints.step", get(row, "step")?)?,
        file: get(row, "file")?,
        created: get(row, "created")?,
    })
}

pub(crate) fn input_edge(row: &AnyRow) -> StoreResult<InputEdge> {
    Ok(InputEdge {
        slot: get(row, "slot")?,
        position: small("execution_inputs.position", get(row, "position")?)?,
        artifact: ArtifactHash(get(row, "artifact")?),
    })
}

pub(crate) fn progress(row: &AnyRow) -> StoreResult<ProgressRecord> {
    Ok(ProgressRecord {
        execution_id: ExecutionId(get(row, "execution_id")?),
        step: unsigned("progress.step", get(row, "step")?)?,
        total: unsigned("progress.total", get(row, "total")?)?,
        message: get(row, "message")?,
        updated: get(row, "updated")?,
    })
}
