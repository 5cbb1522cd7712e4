//! What a stage implementation sees inside a worker: the [`Stage`] trait that every kind
//! implements (the stages crate for the paper's kinds, this crate for `command`) and the
//! [`StageContext`] it runs in. The worker runtime (`worker.rs`) builds the context from
//! a [`Job`], runs the stage and ingests `out/<name>` into the object store. Events go to
//! an [`EventSink`] as typed values; only a worker process turns them into JSON lines
//! ([`JsonLines`]), because its stdout is the one place they cross a process boundary.

use crate::protocol::{Event, InputArtifact, Job};
use crate::registry::KindSpec;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a stage did not finish.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A checkpoint was written after an interrupt request; running again resumes.
    #[error("interrupted at step {step}; checkpoint written, run again to resume")]
    Interrupted { step: u64 },
    /// Bad input data, parameters or weights: the message names the file and the place.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow_like::BoxError),
}

/// A boxed error without pulling anyhow into the engine.
pub mod anyhow_like {
    pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
}

impl StageError {
    pub fn other<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        StageError::Other(Box::new(e))
    }
    pub fn msg(m: impl Into<String>) -> Self {
        StageError::Other(m.into().into())
    }
}

/// One stage kind's implementation.
pub trait Stage: Send + Sync {
    fn spec(&self) -> KindSpec;
    /// Read inputs from `ctx`, write each declared output to `ctx.output_path(name)`
    /// (a file or a directory), and return. Long loops call `ctx.progress` and check
    /// `ctx.interrupted()`.
    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError>;
}

/// Where a running stage's events go.
pub trait EventSink: Send {
    fn emit(&mut self, event: Event);
}

/// Any closure over events is a sink (the in-process executor, tests).
impl<F: FnMut(Event) + Send> EventSink for F {
    fn emit(&mut self, event: Event) {
        self(event)
    }
}

/// Events as JSON lines on a writer: a worker process's stdout, read by its executor.
pub struct JsonLines<W: Write + Send>(pub W);

impl<W: Write + Send> EventSink for JsonLines<W> {
    fn emit(&mut self, event: Event) {
        // A closed stdout (orchestrator gone) must not kill a long training run.
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// The running execution, as a stage sees it.
pub struct StageContext {
    pub job: Job,
    interrupt: Arc<AtomicBool>,
    events: Box<dyn EventSink>,
}

impl StageContext {
    pub fn new(job: Job, interrupt: Arc<AtomicBool>, events: Box<dyn EventSink>) -> Self {
        StageContext {
            job,
            interrupt,
            events,
        }
    }

    /// Artifacts bound to a slot (empty if the slot is optional and unbound).
    pub fn inputs(&self, slot: &str) -> &[InputArtifact] {
        self.job.inputs.get(slot).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The single artifact of a required single slot.
    pub fn input(&self, slot: &str) -> Result<&InputArtifact, StageError> {
        self.inputs(slot)
            .first()
            .ok_or_else(|| StageError::Invalid(format!("input slot `{slot}` is not bound")))
    }

    pub fn param(&self, name: &str) -> Option<&serde_json::Value> {
        self.job.params.get(name)
    }

    pub fn param_f64(&self, name: &str) -> Result<f64, StageError> {
        self.param(name)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| StageError::Invalid(format!("parameter `{name}` is not a number")))
    }

    pub fn param_i64(&self, name: &str) -> Result<i64, StageError> {
        self.param(name)
            .and_then(|v| v.as_i64())
            .ok_or_else(|| StageError::Invalid(format!("parameter `{name}` is not an integer")))
    }

    pub fn param_str(&self, name: &str) -> Result<&str, StageError> {
        self.param(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| StageError::Invalid(format!("parameter `{name}` is not a string")))
    }

    pub fn param_bool(&self, name: &str) -> Result<bool, StageError> {
        self.param(name)
            .and_then(|v| v.as_bool())
            .ok_or_else(|| StageError::Invalid(format!("parameter `{name}` is not a boolean")))
    }

    /// Absolute path of a `path` parameter.
    pub fn external_path(&self, name: &str) -> Result<&Path, StageError> {
        self.job
            .external_paths
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::Invalid(format!("path parameter `{name}` is not set")))
    }

    /// Where to write output `name` (create a file or a directory there).
    pub fn output_path(&self, name: &str) -> PathBuf {
        self.job.work_dir.join("out").join(name)
    }

    /// Directory for this stage key's checkpoints (created on demand).
    pub fn checkpoint_dir(&self) -> &Path {
        &self.job.checkpoint_dir
    }

    pub fn device(&self) -> &str {
        &self.job.device
    }

    /// True once SIGINT, SIGTERM or SIGUSR1 asked the worker to checkpoint and stop.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    pub fn emit(&mut self, event: Event) {
        self.events.emit(event);
    }

    pub fn progress(&mut self, step: u64, total: u64, loss: Option<f64>) {
        self.emit(Event::Progress {
            step,
            total,
            loss,
            message: None,
        });
    }

    pub fn metric(&mut self, name: &str, step: Option<u64>, value: f64) {
        self.emit(Event::Metric {
            name: name.to_string(),
            step,
            value,
        });
    }

    pub fn log(&mut self, message: impl Into<String>) {
        self.emit(Event::Log {
            level: "info".into(),
            message: message.into(),
        });
    }
}
