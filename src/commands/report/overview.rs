//! The DAG and the timeline of a large run (more than `instances::DETAIL_LIMIT`
//! instances), one box and one bar per *stage*: a drawing with a box per instance of a
//! 10,000-member sweep would be tens of megabytes and unreadable. Each stage's box is
//! coloured by its most telling state (failed, interrupted, running, ran, cached, not run,
//! in that order), labelled with its counts, and links to the stage's rows in the
//! instance table.

use super::dag::{state_of, RunGraph};
use super::html::{badge, duration, esc, mapped_figure, utc};
use super::instances::stage_anchor;
use super::model::RunData;
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::graph::{topological_layers, DiGraph};
use histodiff_plot::{Dag, DagNode, State, Timeline, TimelineBar};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One stage of the run: its instances by state and the span of its executions.
struct StageRow {
    stage: String,
    by_state: BTreeMap<State, usize>,
    /// Milliseconds since the epoch.
    first_start: Option<i64>,
    last_end: Option<i64>,
    /// Sum of the executions' durations (ms), cache hits excluded.
    busy: i64,
}

impl StageRow {
    /// Failed beats interrupted beats running beats ran beats cached beats not run.
    fn state(&self) -> State {
        let rank = [
            State::Failed,
            State::Interrupted,
            State::Running,
            State::Ran,
            State::Cached,
        ];
        rank.into_iter()
            .find(|s| self.by_state.contains_key(s))
            .unwrap_or(State::NotRun)
    }

    fn counts(&self) -> String {
        let parts: Vec<String> = self
            .by_state
            .iter()
            .map(|(s, n)| format!("{n} {}", s.label()))
            .collect();
        parts.join(", ")
    }
}

/// Stages in DAG order (by their first instance's layer).
fn stage_rows(data: &RunData, graph: &RunGraph) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = Vec::new();
    for &n in graph.layers.iter().flatten() {
        let node = &graph.nodes[n];
        let i = match rows.iter().position(|r| r.stage == node.stage) {
            Some(i) => i,
            None => {
                rows.push(StageRow {
                    stage: node.stage.clone(),
                    by_state: BTreeMap::new(),
                    first_start: None,
                    last_end: None,
                    busy: 0,
                });
                rows.len() - 1
            }
        };
        *rows[i].by_state.entry(node.state).or_default() += 1;
        for e in data.graph.executions_of(&node.instance).map(|e| &e.record) {
            let row = &mut rows[i];
            row.first_start = min_some(row.first_start, e.started);
            row.last_end = e
                .finished
                .or(e.started)
                .map(|f| row.last_end.map_or(f, |l| l.max(f)));
            if state_of(e.status) != State::Cached {
                row.busy += e.duration.unwrap_or(0);
            }
        }
    }
    rows
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The stage DAG.
pub fn dag_section(data: &RunData, graph: &RunGraph) -> Result<String, CliError> {
    let rows = stage_rows(data, graph);
    let index: BTreeMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.stage.as_str(), i))
        .collect();
    let edges: BTreeSet<(usize, usize)> = graph
        .edges
        .iter()
        .map(|&(a, b)| {
            (
                index[graph.nodes[a].stage.as_str()],
                index[graph.nodes[b].stage.as_str()],
            )
        })
        .filter(|(a, b)| a != b)
        .collect();
    let mut g = DiGraph::<(), ()>::new();
    let ids: Vec<_> = rows.iter().map(|_| g.add_node(())).collect();
    for &(a, b) in &edges {
        g.add_edge(ids[a], ids[b], ());
    }
    let layers = topological_layers(&g)
        .map_err(|c| anyhow::anyhow!("the run's stages are not acyclic: {c}"))
        .code(STORE)?;
    let dag = Dag {
        title: String::new(),
        nodes: rows
            .iter()
            .map(|r| DagNode {
                title: r.stage.clone(),
                detail: r.counts(),
                state: r.state(),
            })
            .collect(),
        edges: edges.into_iter().collect(),
        layers: layers
            .into_iter()
            .map(|l| l.into_iter().map(|n| n.index()).collect())
            .collect(),
    };
    let map = dag
        .svg()
        .map_err(|e| anyhow::anyhow!("cannot draw the DAG: {e}"))
        .code(STORE)?;
    let links: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                format!("#{}", stage_anchor(&r.stage)),
                format!("{}: {}", r.stage, r.counts()),
            )
        })
        .collect();
    Ok(format!(
        "<p class=\"note\">{} instances in {} stages: one box per stage, coloured by its most telling state. \
         Click a box for the stage's instances.</p>\n<div class=\"scroll\" id=\"dag-figure\">{}</div>",
        graph.nodes.len(),
        rows.len(),
        mapped_figure(&map, &links, "dag")
    ))
}

/// One bar per stage, from its first execution's start to its last one's end.
pub fn timeline_section(data: &RunData, graph: &RunGraph) -> Result<String, CliError> {
    let rows: Vec<StageRow> = stage_rows(data, graph)
        .into_iter()
        .filter(|r| r.first_start.is_some())
        .collect();
    let origin = data.graph.run.started;
    let secs = |ms: i64| (ms - origin).max(0) as f64 / 1000.0;
    let timeline = Timeline {
        title: String::new(),
        bars: rows
            .iter()
            .map(|r| {
                let start = r.first_start.unwrap_or(origin);
                TimelineBar {
                    label: r.stage.clone(),
                    start: secs(start),
                    end: secs(r.last_end.unwrap_or(start).max(start)),
                    state: r.state(),
                }
            })
            .collect(),
    };
    let map = timeline
        .svg(1100)
        .map_err(|e| anyhow::anyhow!("cannot draw the timeline: {e}"))
        .code(STORE)?;
    let links: Vec<(String, String)> = rows
        .iter()
        .map(|r| (format!("#{}", stage_anchor(&r.stage)), r.stage.clone()))
        .collect();
    let mut table = String::from(
        "<table class=\"grid\" id=\"timeline-table\"><thead><tr><th>stage</th><th>state</th><th>instances</th>\
         <th>first start</th><th>last end</th><th>busy (sum of executions)</th></tr></thead><tbody>\n",
    );
    for r in &rows {
        let _ = writeln!(
            table,
            "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&stage_anchor(&r.stage)),
            esc(&r.stage),
            badge(r.state()),
            esc(&r.counts()),
            r.first_start.map(utc).unwrap_or_default(),
            r.last_end.map(utc).unwrap_or_default(),
            duration(r.busy)
        );
    }
    table.push_str("</tbody></table>");
    Ok(format!(
        "<p class=\"note\">One bar per stage ({} executions: too many for a bar each); \
         every execution is in the instance table below.</p>\n<div class=\"scroll\" id=\"timeline-figure\">{}</div>\n{table}",
        data.graph.executions.len(),
        mapped_figure(&map, &links, "timeline")
    ))
}
