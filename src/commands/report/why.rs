//! "Why did this re-run" for one execution of the run, in the terms of `histodiff why`
//! (the comparison itself is `commands::rerun`, shared with that command): a cache hit
//! names what it reused; a retry of the same key says how the previous try ended; an
//! execution with a new key lists the fingerprint fields that changed since the newest
//! earlier execution with another key.

use super::html::{esc, exec_link};
use super::model::RunData;
use crate::commands::rerun::key_change;
use histodiff_engine::fingerprint::canonical_json;
use histodiff_engine::store::{ExecStatus, ExecutionRecord};
use std::fmt::Write as _;

/// The explanation as an HTML fragment (a paragraph, and a list of changes if any).
pub fn explain(data: &RunData, e: &ExecutionRecord) -> String {
    let earlier = data.earlier(e);
    if e.status == ExecStatus::Cached {
        let source = match e.cached_from {
            Some(src) if data.graph.execution(src).is_some() => {
                format!(", that of execution {}", exec_link(src, &format!("#{src}")))
            }
            Some(src) => format!(", that of execution #{src} of another run"),
            None => String::new(),
        };
        return format!(
            "<p class=\"why\">cached: nothing ran; the key's result was reused{source}.</p>"
        );
    }
    let mut out = String::new();
    if let Some(prev) = earlier.last().filter(|p| p.stage_key == e.stage_key) {
        let how = match prev.status {
            ExecStatus::Failed => "failed",
            ExecStatus::Interrupted => "was interrupted",
            ExecStatus::Succeeded | ExecStatus::Cached => {
                "succeeded, but its outputs were no longer in the object store"
            }
            ExecStatus::Pending | ExecStatus::Running => "did not finish",
        };
        let _ = write!(
            out,
            "<p class=\"why\">same key as execution #{} (run {}), which {how}: this is another try{}.</p>",
            prev.id,
            prev.run_id,
            if e.attempt > 1 { format!(" (attempt {})", e.attempt) } else { String::new() }
        );
    }
    match key_change(&earlier, e) {
        None if out.is_empty() => {
            out.push_str("<p class=\"why\">first execution of this instance.</p>")
        }
        None => {}
        Some(change) => {
            let _ = write!(
                out,
                "<p class=\"why\">the key changed since execution #{} (run {}, {}):</p>",
                change.previous.id, change.previous.run_id, change.previous.status
            );
            out.push_str(&changes_list(change.changes));
        }
    }
    out
}

fn changes_list(changes: Option<Vec<histodiff_engine::fingerprint::FieldChange>>) -> String {
    let Some(changes) = changes else {
        return "<ul class=\"changes\"><li>(fingerprint not recorded)</li></ul>".into();
    };
    let show = |v: &Option<serde_json::Value>| match v {
        Some(v) => esc(&shorten(&canonical_json(v))),
        None => "<i>absent</i>".into(),
    };
    let mut out = String::from("<ul class=\"changes\">");
    for c in &changes {
        let _ = write!(
            out,
            "<li><code>{}</code>: <code>{}</code> → <code>{}</code></li>",
            esc(&c.field),
            show(&c.old),
            show(&c.new)
        );
    }
    out.push_str("</ul>");
    out
}

/// Long values (hash lists of gathered inputs) cut to a readable length.
fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    text.chars().take(MAX).collect::<String>() + "…"
}
