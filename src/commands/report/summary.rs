//! The short table `run` prints under the report's path: Table 1 (one line per setting)
//! when a report/table stage ran, else the executions of each stage by state.

use super::dag::RunGraph;
use super::report_dir::ReportDir;
use super::table1::settings;
use histodiff_plot::State;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub fn text(graph: &RunGraph, reports: &[ReportDir]) -> String {
    let tables: Vec<String> = reports
        .iter()
        .filter(|r| r.problem.is_none() && !r.rows.is_empty())
        .map(table1)
        .collect();
    if tables.is_empty() {
        per_stage(graph)
    } else {
        tables.concat()
    }
}

fn table1(r: &ReportDir) -> String {
    let mut lines = vec![[
        "setting".to_string(),
        "n".into(),
        "accuracy".into(),
        "F1 (weighted)".into(),
        "FID".into(),
    ]];
    for s in settings(&r.rows) {
        lines.push([
            s.label.to_string(),
            s.rows.len().to_string(),
            s.accuracy(),
            s.f1_weighted(),
            s.fid(),
        ]);
    }
    format!("Table 1 ({}):\n{}", r.instance, columns(&lines))
}

/// Per stage: how many instances ended in each state (their newest execution in the run;
/// "not run" for the pipeline's instances without one).
fn per_stage(graph: &RunGraph) -> String {
    let mut counts: BTreeMap<&str, BTreeMap<State, usize>> = BTreeMap::new();
    for node in &graph.nodes {
        *counts
            .entry(node.stage.as_str())
            .or_default()
            .entry(node.state)
            .or_default() += 1;
    }
    let states: Vec<State> = State::ALL
        .into_iter()
        .filter(|s| counts.values().any(|c| c.contains_key(s)))
        .collect();
    let mut lines = vec![std::iter::once("stage".to_string())
        .chain(states.iter().map(|s| s.label().to_string()))
        .collect::<Vec<_>>()];
    for (stage, by_state) in &counts {
        lines.push(
            std::iter::once(stage.to_string())
                .chain(
                    states
                        .iter()
                        .map(|s| by_state.get(s).copied().unwrap_or(0).to_string()),
                )
                .collect(),
        );
    }
    format!("instances by stage:\n{}", columns(&lines))
}

/// Left-aligned first column, the others right-aligned, two spaces apart, indented.
fn columns<R: AsRef<[String]>>(lines: &[R]) -> String {
    let n = lines.iter().map(|l| l.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            lines
                .iter()
                .filter_map(|l| l.as_ref().get(c))
                .map(|t| t.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        out.push_str("  ");
        for (c, cell) in line.as_ref().iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(out, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{cell}", " ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = columns(&[
            vec!["stage".to_string(), "ran".into()],
            vec!["baseline".into(), "12".into()],
        ]);
        assert_eq!(t, "  stage     ran\n  baseline   12\n");
    }
}
