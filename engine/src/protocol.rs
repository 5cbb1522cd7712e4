//! The contract between the orchestrator and a worker process (`histodiff worker JOB`).
//!
//! The orchestrator writes a [`Job`] as JSON into the execution's work directory and starts
//! the worker on it (directly, or inside an `sbatch` job). The worker streams [`Event`]s as
//! JSON lines on stdout, writes its outputs into the object store, writes a [`JobResult`]
//! to `result.json` atomically, and exits with one of the [`exit`] codes. Only the
//! orchestrator writes to the database.

use crate::hash::{ArtifactHash, StageKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Worker exit codes.
pub mod exit {
    /// Outputs written, `result.json` present.
    pub const OK: i32 = 0;
    /// The stage failed; `result.json` may hold the error.
    pub const FAILED: i32 = 1;
    /// Interrupted (SIGINT/SIGTERM/SIGUSR1) after writing a checkpoint: run again to resume.
    pub const RESUMABLE: i32 = 75;
}

/// A materialised input artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputArtifact {
    pub hash: ArtifactHash,
    /// A read-only file, or a directory of read-only files, inside the work directory.
    pub path: PathBuf,
    /// Instance that produced it (for messages and lineage).
    pub producer: String,
    /// Matrix coordinates of the producer.
    pub coords: BTreeMap<String, serde_json::Value>,
}

/// Everything a worker needs to run one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub execution_id: i64,
    pub key: StageKey,
    pub instance: String,
    pub kind: String,
    pub kind_version: u32,
    /// Canonical parameters (defaults filled).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Params of type `path`, absolute.
    pub external_paths: BTreeMap<String, PathBuf>,
    /// Slot → artifacts (one element for a single slot; in order for a list slot).
    pub inputs: BTreeMap<String, Vec<InputArtifact>>,
    /// For `command`.
    pub command: Option<crate::plan::CommandSpec>,
    /// Directory the pipeline file lives in (commands resolve `deps` against it).
    pub base_dir: PathBuf,
    /// Scratch directory of this execution; outputs are written under `work_dir/out/`.
    pub work_dir: PathBuf,
    /// Directory for checkpoints of this stage key (never shared across keys).
    pub checkpoint_dir: PathBuf,
    /// Root of the object store (`objects/` inside it).
    pub objects_dir: PathBuf,
    /// `cpu`, `cuda:N` (after CUDA_VISIBLE_DEVICES remapping, usually `cuda:0`).
    pub device: String,
    /// CPU threads the worker may use.
    pub threads: usize,
}

/// One line on the worker's stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Progress of a long stage.
    Progress {
        step: u64,
        total: u64,
        loss: Option<f64>,
        message: Option<String>,
    },
    /// A scalar to keep in the `metrics` table.
    Metric {
        name: String,
        step: Option<u64>,
        value: f64,
    },
    /// A checkpoint was written (path relative to `checkpoint_dir`).
    Checkpoint { step: u64, file: String },
    /// Free text for the log.
    Log { level: String, message: String },
}

/// What the worker leaves in `work_dir/result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Output name → artifact, already in the object store.
    pub outputs: BTreeMap<String, OutputArtifact>,
    /// Final metrics (also streamed as events).
    pub metrics: BTreeMap<String, f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputArtifact {
    pub hash: ArtifactHash,
    /// `file` or `dir`.
    pub kind: ArtifactKind,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    File,
    Dir,
}

/// The ABI between the `histodiff` binary and the stages library it loads at run time
/// (stages/src/plugin.rs exports it, src/worker.rs checks it): bumped whenever the
/// signature or meaning of a library entry point changes (2: `run_worker` takes the job's
/// JSON text instead of the job file's path). Defined here because the binary does not
/// link the stages crate, and both link the engine.
pub const STAGES_ABI_VERSION: u32 = 2;

pub const JOB_FILE: &str = "job.json";
pub const RESULT_FILE: &str = "result.json";
