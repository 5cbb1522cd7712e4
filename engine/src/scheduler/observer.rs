//! What the scheduler tells the outside (the CLI's progress bars, tests) while it runs.

use crate::hash::StageKey;

/// How one instance ended in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceOutcome {
    /// Found in the store; nothing executed.
    Cached,
    /// Executed and recorded.
    Done,
    Failed(String),
    /// Checkpointed after an interrupt; the next run resumes it.
    Interrupted,
    /// Not run because an upstream failed or the run was interrupted.
    Skipped(String),
}

/// One thing that happened to an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Another orchestrator holds the key; waiting for its result.
    Waiting {
        instance: String,
        key: StageKey,
    },
    Started {
        instance: String,
        key: StageKey,
        attempt: u32,
    },
    Progress {
        instance: String,
        step: u64,
        total: u64,
        loss: Option<f64>,
    },
    Log {
        instance: String,
        message: String,
    },
    Finished {
        instance: String,
        outcome: InstanceOutcome,
    },
}

/// Receives run events; must not block.
pub trait Observer: Send + Sync {
    fn on(&self, event: RunEvent);
}

/// Ignores everything (tests, `--quiet`).
pub struct Silent;

impl Observer for Silent {
    fn on(&self, _event: RunEvent) {}
}
