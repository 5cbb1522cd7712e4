//! Why an execution has the stage key it has: the newest earlier execution of the same
//! instance with another key, and the fingerprint fields that differ. `histodiff why`
//! prints it for an instance's latest execution; the HTML report shows it for every
//! execution of a run.

use histodiff_engine::fingerprint::{FieldChange, Fingerprint};
use histodiff_engine::store::ExecutionRecord;

/// The key changed since `previous`.
pub struct KeyChange<'a> {
    pub previous: &'a ExecutionRecord,
    /// The fields that differ; `None` when either fingerprint was not recorded.
    pub changes: Option<Vec<FieldChange>>,
}

/// Compares `current` with the newest execution in `earlier` (same instance, oldest
/// first) whose key differs; `None` when every earlier execution had the same key (or
/// there is none).
pub fn key_change<'a>(
    earlier: &[&'a ExecutionRecord],
    current: &ExecutionRecord,
) -> Option<KeyChange<'a>> {
    let previous = *earlier
        .iter()
        .rev()
        .find(|e| e.stage_key != current.stage_key)?;
    Some(KeyChange {
        previous,
        changes: diff(previous, current),
    })
}

/// Fingerprint fields that differ from `old` to `new`.
fn diff(old: &ExecutionRecord, new: &ExecutionRecord) -> Option<Vec<FieldChange>> {
    let parse = |e: &ExecutionRecord| {
        e.fingerprint
            .as_deref()
            .and_then(|j| Fingerprint::from_json(j).ok())
    };
    Some(Fingerprint::diff(&parse(old)?, &parse(new)?))
}
