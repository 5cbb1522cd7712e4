//! The values that cross the [`Store`](super::Store) trait: ids, new rows, outcomes and
//! query results. Timestamps are milliseconds since the Unix epoch (INTEGER columns), so
//! the same rows read alike from SQLite and PostgreSQL.

use crate::hash::{ArtifactHash, StageKey};
use crate::protocol::{ArtifactKind, OutputArtifact};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// `runs.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

/// `executions.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

/// `executions.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecStatus {
    /// Recorded, worker not started yet (e.g. queued in Slurm).
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Stopped after a checkpoint (resumable), or abandoned by a dead orchestrator.
    Interrupted,
    /// Not executed: the key was in the cache (`cached_from` names the execution).
    Cached,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            /// Parses the stored text.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(RunStatus {
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Interrupted = "interrupted",
});

text_enum!(ExecStatus {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Interrupted = "interrupted",
    Cached = "cached",
});

/// Text of an [`ArtifactKind`] in the `artifacts.kind` column.
pub fn kind_str(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::File => "file",
        ArtifactKind::Dir => "dir",
    }
}

/// Parses `artifacts.kind`.
pub fn parse_kind(text: &str) -> Option<ArtifactKind> {
    match text {
        "file" => Some(ArtifactKind::File),
        "dir" => Some(ArtifactKind::Dir),
        _ => None,
    }
}

/// A run about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub pipeline: String,
    /// The pipeline file, as given.
    pub file: String,
    pub host: String,
    pub pid: i64,
}

/// A row of `runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub pipeline: String,
    pub file: String,
    pub started: i64,
    pub finished: Option<i64>,
    pub status: RunStatus,
    pub host: String,
    pub pid: i64,
}

/// Who holds (or asks for) a reservation of a stage key: an orchestrator process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: Option<RunId>,
    pub host: String,
    pub pid: i64,
    pub slurm_job_id: Option<String>,
}

impl Holder {
    /// This process on this host.
    pub fn this_process(run_id: Option<RunId>) -> Self {
        Holder {
            run_id,
            host: super::liveness::hostname(),
            pid: std::process::id() as i64,
            slurm_job_id: std::env::var("SLURM_JOB_ID").ok(),
        }
    }
}

/// Answer of [`Store::reserve`](super::Store::reserve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The caller holds the key now and must execute it (or release it).
    Reserved,
    /// Someone else is executing this key; wait for its cache row.
    HeldBy(Holder),
}

/// An execution about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExecution {
    pub run_id: RunId,
    pub stage_key: StageKey,
    pub stage: String,
    pub instance: String,
    pub kind: String,
    pub kind_version: u32,
    /// 1 for the first try; retries count up.
    pub attempt: u32,
    /// [`Fingerprint::canonical_json`](crate::fingerprint::Fingerprint::canonical_json).
    pub fingerprint: String,
}

/// An instance of a run whose key was in the cache: it reused `source`'s outputs. The
/// names are borrowed from the plan: a no-op run of a 10,000-member sweep records 30,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewCacheHit<'a> {
    pub stage: &'a str,
    pub instance: &'a str,
    pub source: ExecutionId,
}

/// Where a worker runs (filled in once known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: Option<i64>,
    pub host: Option<String>,
    pub device: Option<String>,
    pub slurm_job_id: Option<String>,
}

/// One input edge: slot, position in a list slot (0 for a single slot), artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputEdge {
    pub slot: String,
    pub position: u32,
    pub artifact: ArtifactHash,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Outputs are in the object store; the execution becomes the cache entry of its key.
    Succeeded {
        outputs: BTreeMap<String, OutputArtifact>,
        inputs: Vec<InputEdge>,
        metrics: BTreeMap<String, f64>,
    },
    /// Never cached.
    Failed { error: String },
    /// Checkpointed and stopped; `reason` is shown by `status`.
    Interrupted { reason: Option<String> },
}

/// A cache hit: the successful execution of a key and its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedExecution {
    pub execution_id: ExecutionId,
    pub outputs: crate::plan::SmallMap<String, OutputArtifact>,
}

/// A row of `executions`, or a cache hit of a run read from `cache_hits`: status
/// `cached`, the id, key, kind and fingerprint of the execution it reused (`cached_from`),
/// its own run, stage and instance, attempt 0, and the time it was recorded as both start
/// and end. A hit has no id of its own, so two records can share an id: key a run's
/// records by instance, or skip the `cached` ones, where ids must be unique.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub id: ExecutionId,
    pub run_id: RunId,
    pub stage_key: StageKey,
    pub stage: String,
    pub instance: String,
    pub kind: String,
    pub kind_version: u32,
    pub status: ExecStatus,
    pub attempt: u32,
    pub host: Option<String>,
    pub worker_pid: Option<i64>,
    pub slurm_job_id: Option<String>,
    pub device: Option<String>,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// Milliseconds.
    pub duration: Option<i64>,
    /// The fingerprint JSON (for a cached row, that of the execution it reused).
    pub fingerprint: Option<String>,
    pub error: Option<String>,
    /// For a `cached` row: the execution whose outputs were reused.
    pub cached_from: Option<ExecutionId>,
}

/// A row of `artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub hash: ArtifactHash,
    pub kind: ArtifactKind,
    pub size: u64,
    pub created: i64,
}

/// What to trace upstream from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineageTarget {
    Artifact(ArtifactHash),
    /// The outputs of the instance's latest successful execution.
    Instance(String),
}

/// One execution in a lineage, with its edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageNode {
    pub execution_id: ExecutionId,
    pub instance: String,
    pub stage: String,
    pub kind: String,
    pub stage_key: StageKey,
    pub inputs: Vec<InputEdge>,
    /// Output name → artifact.
    pub outputs: BTreeMap<String, ArtifactHash>,
}

/// A checkpoint written under a stage key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    pub stage_key: StageKey,
    pub step: u64,
    /// Relative to the key's checkpoint directory.
    pub file: String,
    pub created: i64,
}

/// A row of `reservations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    pub stage_key: StageKey,
    pub holder: Holder,
    pub heartbeat: i64,
    pub created: i64,
}

/// Overview for `histodiff status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub runs: i64,
    /// Status text → number of executions.
    pub executions: BTreeMap<String, i64>,
    pub artifacts: i64,
    pub artifact_bytes: i64,
    pub cached_keys: i64,
    pub active_runs: Vec<RunRecord>,
    pub reservations: Vec<ReservationRecord>,
    /// Executions pending or running now.
    pub in_flight: Vec<ExecutionRecord>,
}

/// One stat-cache entry: a file's identity on disk and the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    /// Absolute path.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub hash: ArtifactHash,
}

/// A row of `progress`: the newest `step` of `total` an execution reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub execution_id: ExecutionId,
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
    /// When it was reported (ms).
    pub updated: i64,
}

/// The lineage edges that touch one artifact: who wrote it, who read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEdges {
    /// Executions that wrote it, with the output name, oldest first.
    pub producers: Vec<(ExecutionId, String)>,
    /// Executions that read it, with the input edge, oldest first.
    pub consumers: Vec<(ExecutionId, InputEdge)>,
}

/// The lineage edges of one execution (empty unless it succeeded: edges are recorded with
/// a success).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionEdges {
    pub inputs: Vec<InputEdge>,
    /// Output name → artifact.
    pub outputs: BTreeMap<String, ArtifactHash>,
}
