//! One section per stage instance, in DAG order: its state and, for each of its executions
//! in the run, when and where it ran, what it read (each input linked to the execution
//! that wrote it) and wrote, its final metrics, its error, why it ran, and its parameters
//! and key. These sections are what every lineage link of the page points at. A run of
//! more than [`DETAIL_LIMIT`] instances (a large sweep) gets a compact table instead, with
//! full sections for what actually executed, so its page stays a few megabytes.

use super::dag::{inputs_of, state_of, RunGraph};
use super::html::{
    abbreviated, badge, duration, esc, exec_anchor, exec_link, instance_anchor, utc,
};
use super::model::{PlanSource, RunData};
use super::{params, timeline, why};
use crate::commands::run_graph::ExecutionView;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::store::{ExecStatus, ExecutionRecord};
use std::collections::HashSet;
use std::fmt::Write as _;

/// Up to this many instances, every instance gets its full section; a larger run lists
/// its instances in a compact table (one row each) and gives full sections only to the
/// executions that did not come from the cache, at most this many.
pub const DETAIL_LIMIT: usize = 500;

pub fn section(data: &RunData, graph: &RunGraph) -> String {
    if graph.nodes.len() <= DETAIL_LIMIT {
        let order = graph.layers.iter().flatten();
        return order.map(|&n| article(data, graph, n)).collect();
    }
    let executed: Vec<usize> = graph
        .layers
        .iter()
        .flatten()
        .copied()
        .filter(|&n| {
            data.graph
                .executions_of(&graph.nodes[n].instance)
                .any(|e| e.record.status != ExecStatus::Cached)
        })
        .collect();
    let mut out = format!(
        "<p class=\"note\">{} instances: too many to describe each in full. Every instance has a row below; \
         the {} that executed in this run (not from the cache) also have a full section{}.</p>\n",
        graph.nodes.len(),
        executed.len(),
        if executed.len() > DETAIL_LIMIT { format!(", of which the first {DETAIL_LIMIT} are shown") } else { String::new() }
    );
    let detailed: HashSet<usize> = executed.iter().take(DETAIL_LIMIT).copied().collect();
    out.push_str(&compact_table(data, graph, &detailed));
    for &n in executed.iter().take(DETAIL_LIMIT) {
        out.push_str(&article(data, graph, n));
    }
    out
}

/// One row per instance, grouped by stage (each stage row is the target of the stage
/// DAG's boxes). An instance with a full section links to it; the others carry its id.
fn compact_table(data: &RunData, graph: &RunGraph, detailed: &HashSet<usize>) -> String {
    let mut by_stage: Vec<(&str, Vec<usize>)> = Vec::new();
    for &n in graph.layers.iter().flatten() {
        let stage = graph.nodes[n].stage.as_str();
        match by_stage.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, nodes)) => nodes.push(n),
            None => by_stage.push((stage, vec![n])),
        }
    }
    let mut out = String::from(
        "<table class=\"grid compact\" id=\"instance-table\"><thead><tr><th>instance</th><th>state</th>\
         <th>execution</th><th>stage key</th></tr></thead><tbody>\n",
    );
    for (stage, nodes) in by_stage {
        let _ = writeln!(
            out,
            "<tr class=\"stage-row\" id=\"{}\"><th colspan=\"4\">{} ({} instances)</th></tr>",
            esc(&stage_anchor(stage)),
            esc(stage),
            nodes.len()
        );
        for n in nodes {
            out.push_str(&compact_row(data, graph, n, detailed.contains(&n)));
        }
    }
    out.push_str("</tbody></table>\n");
    out
}

fn compact_row(data: &RunData, graph: &RunGraph, n: usize, detailed: bool) -> String {
    let node = &graph.nodes[n];
    let last = data.graph.executions_of(&node.instance).last();
    let (id, name) = if detailed {
        (String::new(), super::dag::instance_link(&node.instance))
    } else {
        (
            format!(" id=\"{}\"", esc(&instance_anchor(&node.instance))),
            esc(&node.instance),
        )
    };
    let (execution, key) = match last {
        Some(view) => {
            let e = &view.record;
            let cached = match e.cached_from {
                Some(src) if e.status == ExecStatus::Cached => format!(" (reused #{src})"),
                _ => String::new(),
            };
            let target = if detailed || !data.graph.is_anchor(view) {
                String::new()
            } else {
                format!(" id=\"{}\"", exec_anchor(e.id))
            };
            (
                format!("<span{target}>#{}{cached}</span>", e.id),
                abbreviated(&e.stage_key.0, e.stage_key.short()),
            )
        }
        None => ("—".into(), "—".into()),
    };
    format!(
        "<tr{id}><td>{name}</td><td>{}</td><td>{execution}</td><td>{key}</td></tr>\n",
        badge(node.state)
    )
}

/// The id of a stage's row in the compact table.
pub fn stage_anchor(stage: &str) -> String {
    instance_anchor(stage).replacen("instance-", "stage-", 1)
}

/// The full section of one instance: its executions in the run, or its planned parameters.
fn article(data: &RunData, graph: &RunGraph, n: usize) -> String {
    let node = &graph.nodes[n];
    let mut out = format!(
        "<article class=\"instance\" id=\"{}\"><h3>{} {}</h3>\n",
        esc(&instance_anchor(&node.instance)),
        esc(&node.instance),
        badge(node.state)
    );
    let mut runs = data.graph.executions_of(&node.instance).peekable();
    if runs.peek().is_none() {
        out.push_str("<p class=\"note\">Not executed in this run (an upstream failed or the run stopped first).</p>");
        out.push_str(&planned_params(data, &node.instance));
    }
    for e in runs {
        out.push_str(&execution(data, graph, e));
    }
    out.push_str("</article>\n");
    out
}

fn planned_params(data: &RunData, instance: &str) -> String {
    match &data.plan {
        PlanSource::Loaded(plan) => plan
            .instances
            .iter()
            .find(|i| i.name == instance)
            .map(|i| params::planned(&i.params))
            .unwrap_or_default(),
        PlanSource::Unavailable(_) => String::new(),
    }
}

fn execution(data: &RunData, graph: &RunGraph, view: &ExecutionView) -> String {
    let e = &view.record;
    let anchor = if data.graph.is_anchor(view) {
        format!(" id=\"{}\"", exec_anchor(e.id))
    } else {
        String::new()
    };
    let mut out = format!(
        "<div class=\"exec\"{anchor}><h4>execution #{} {} <span class=\"kind\">{} v{}</span></h4>\n<table class=\"kv\">",
        e.id,
        badge(state_of(e.status)),
        esc(&e.kind),
        e.kind_version
    );
    for (name, value) in facts(data, e) {
        let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    out.push_str("</table>\n");
    out.push_str(&edges(graph, view));
    out.push_str(&final_metrics(data, e));
    if let Some(error) = &e.error {
        let _ = write!(out, "<pre class=\"error\">{}</pre>", esc(error));
    }
    let _ = write!(
        out,
        "<div class=\"whybox\"><b>Why it ran:</b> {}</div>",
        why::explain(data, e)
    );
    out.push_str(&params::block(view));
    out.push_str("</div>\n");
    out
}

/// (label, HTML value) rows: timing, worker, attempt, checkpoints, cache source.
fn facts(data: &RunData, e: &ExecutionRecord) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(s) = e.started {
        rows.push(("started", utc(s)));
    }
    if let (Some(f), Some(d)) = (e.finished, e.duration) {
        rows.push(("finished", format!("{} (took {})", utc(f), duration(d))));
    }
    if e.status == ExecStatus::Cached {
        if let Some(src) = e.cached_from {
            let in_run = data.graph.execution(src).is_some();
            let text = format!("#{src}");
            let link = if in_run {
                exec_link(src, &text)
            } else {
                esc(&text)
            };
            rows.push(("reused", format!("the result of execution {link}")));
        }
        return rows;
    }
    let worker = [
        e.host.clone(),
        e.worker_pid.map(|p| format!("pid {p}")),
        e.slurm_job_id.as_ref().map(|j| format!("Slurm job {j}")),
    ];
    let worker: Vec<String> = worker.into_iter().flatten().collect();
    if !worker.is_empty() {
        rows.push(("worker", esc(&worker.join(", "))));
    }
    if let Some(d) = &e.device {
        rows.push(("device", esc(d)));
    }
    rows.push(("attempt", e.attempt.to_string()));
    rows.push(("checkpoints", esc(&timeline::resume(data, e))));
    rows
}

/// Inputs (with links to their producers) and outputs.
fn edges(graph: &RunGraph, view: &ExecutionView) -> String {
    let mut out = String::new();
    let inputs = inputs_of(view);
    if !inputs.is_empty() {
        out.push_str("<div class=\"io\"><b>read</b><ul>");
        for (slot, hash) in &inputs {
            let from = graph
                .producer_of(hash, &view.record)
                .and_then(|n| n.execution.map(|id| (id, &n.instance)))
                .map(|(id, name)| {
                    format!(
                        " ← {}",
                        exec_link(id, name).replace("<a ", "<a class=\"input\" ")
                    )
                })
                .unwrap_or_default();
            out.push_str(&edge_item(slot, hash, &from));
        }
        out.push_str("</ul></div>");
    }
    if !view.outputs.is_empty() {
        out.push_str("<div class=\"io\"><b>wrote</b><ul>");
        for (name, hash) in &view.outputs {
            out.push_str(&edge_item(name, hash, ""));
        }
        out.push_str("</ul></div>");
    }
    out
}

/// One artifact an execution read or wrote, under its slot or output name; `from` (HTML)
/// follows it.
fn edge_item(label: &str, hash: &ArtifactHash, from: &str) -> String {
    format!(
        "<li><code>{}</code> {}{from}</li>",
        esc(label),
        abbreviated(&hash.0, hash.short())
    )
}

/// Metrics recorded without a step (final values), as one line.
fn final_metrics(data: &RunData, e: &ExecutionRecord) -> String {
    let finals: Vec<String> = data
        .metrics
        .get(&e.id)
        .into_iter()
        .flatten()
        .filter(|(_, step, _)| step.is_none())
        .map(|(name, _, v)| format!("<code>{}</code> {}", esc(name), format_value(*v)))
        .collect();
    if finals.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"finals\"><b>final metrics</b> {}</p>",
        finals.join(" · ")
    )
}

/// Integers as such, tiny and huge values in scientific notation, others to 4 decimals.
fn format_value(v: f64) -> String {
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        format!("{v:.0}")
    } else if !(1e-3..1e7).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}
