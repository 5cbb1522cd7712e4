//! The run's timeline: a Gantt chart of its executions (plot crate) and a table with each
//! one's worker, device, attempt and whether it resumed from a checkpoint.
//!
//! Resumes are decided from the store alone. The `checkpoints` table keeps every
//! checkpoint of a key, and the store answers with the newest one; an execution resumed
//! when its key had a checkpoint before it started, i.e. when
//! - the newest checkpoint of its key was written before the execution started (it
//!   resumed from that step), or
//! - an earlier execution of the same key ended `interrupted` (an interrupt checkpoints
//!   before it stops) and the key has checkpoints (newer ones, written by this execution,
//!   hide the step it resumed from).

use super::dag::state_of;
use super::html::{badge, duration, esc, exec_anchor, exec_link, mapped_figure, utc};
use super::model::RunData;
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::store::{ExecStatus, ExecutionRecord};
use histodiff_plot::{Timeline, TimelineBar};
use std::fmt::Write as _;

const WIDTH: u32 = 1100;

/// Figure and table.
pub fn section(data: &RunData, now_ms: i64) -> Result<String, CliError> {
    let order = in_start_order(data);
    if order.is_empty() {
        return Ok("<p class=\"note\">This run has no executions.</p>".into());
    }
    let origin = data.graph.run.started;
    let bars = order
        .iter()
        .map(|e| {
            let (start, end) = span(e, now_ms);
            TimelineBar {
                label: e.instance.clone(),
                start: (start - origin).max(0) as f64 / 1000.0,
                end: (end - origin).max(0) as f64 / 1000.0,
                state: state_of(e.status),
            }
        })
        .collect();
    let timeline = Timeline {
        title: String::new(),
        bars,
    };
    let map = timeline
        .svg(WIDTH)
        .map_err(|e| anyhow::anyhow!("cannot draw the timeline: {e}"))
        .code(STORE)?;
    let links: Vec<(String, String)> = order
        .iter()
        .map(|e| {
            (
                format!("#{}", exec_anchor(e.id)),
                format!("#{} {} ({})", e.id, e.instance, e.status),
            )
        })
        .collect();
    Ok(format!(
        "<div class=\"scroll\" id=\"timeline-figure\">{}</div>\n{}",
        mapped_figure(&map, &links, "timeline"),
        table(data, &order, now_ms)
    ))
}

/// Executions by start time (then id).
fn in_start_order(data: &RunData) -> Vec<&ExecutionRecord> {
    let mut order: Vec<&ExecutionRecord> =
        data.graph.executions.iter().map(|e| &e.record).collect();
    order.sort_by_key(|e| (e.started.unwrap_or(data.graph.run.started), e.id.0));
    order
}

/// Start and end in ms; an unfinished execution ends now, a cache hit where it started.
fn span(e: &ExecutionRecord, now_ms: i64) -> (i64, i64) {
    let start = e.started.unwrap_or(now_ms);
    let end = match (e.status, e.finished) {
        (_, Some(f)) => f,
        (ExecStatus::Cached, None) => start,
        (_, None) => now_ms,
    };
    (start, end.max(start))
}

fn table(data: &RunData, order: &[&ExecutionRecord], now_ms: i64) -> String {
    let mut out = String::from(
        "<table class=\"grid\" id=\"timeline-table\"><thead><tr><th>#</th><th>instance</th><th>state</th>\
         <th>start</th><th>took</th><th>worker</th><th>device</th><th>attempt</th><th>checkpoints</th></tr></thead><tbody>\n",
    );
    for e in order {
        let (start, end) = span(e, now_ms);
        let cached = e.status == ExecStatus::Cached;
        let worker = match (&e.host, e.worker_pid, &e.slurm_job_id) {
            _ if cached => "—".to_string(),
            (Some(h), Some(p), None) => format!("{h} pid {p}"),
            (Some(h), Some(p), Some(j)) => format!("{h} pid {p}, Slurm job {j}"),
            (Some(h), None, _) => h.clone(),
            _ => "not started".into(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"name\">{}</td><td>{}</td><td class=\"nowrap\" title=\"{}\">+{}</td>\
             <td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            exec_link(e.id, &format!("#{}", e.id)),
            super::dag::instance_link(&e.instance),
            badge(state_of(e.status)),
            e.started.map(utc).unwrap_or_default(),
            duration((start - data.graph.run.started).max(0)),
            if cached { "cached".into() } else { duration(end - start) },
            esc(&worker),
            esc(e.device.as_deref().unwrap_or("—")),
            if cached { "—".into() } else { e.attempt.to_string() },
            esc(&resume(data, e))
        );
    }
    out.push_str("</tbody></table>\n<p class=\"note\">start: time since the run started (hover for the time of day); \
                  checkpoints: whether the execution resumed from a checkpoint of its key.</p>");
    out
}

/// Whether `e` resumed from a checkpoint (see the module comment for the rule).
pub fn resume(data: &RunData, e: &ExecutionRecord) -> String {
    if e.status == ExecStatus::Cached {
        return "—".into();
    }
    let Some(newest) = data.checkpoints.get(&e.id) else {
        return "none".into();
    };
    let started = e.started.unwrap_or(i64::MAX);
    if newest.created < started {
        return format!("resumed from step {}", newest.step);
    }
    let interrupted = data
        .earlier(e)
        .into_iter()
        .rev()
        .find(|x| x.stage_key == e.stage_key && x.status == ExecStatus::Interrupted);
    match interrupted {
        Some(x) => format!("resumed after #{} was interrupted", x.id),
        None => format!(
            "fresh start (the key's checkpoints reach step {})",
            newest.step
        ),
    }
}
