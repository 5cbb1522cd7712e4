//! Every training stage's curves: for each execution with stepped metrics (rows of
//! `metrics` with a step), one labelled chart per group of metrics that share a scale —
//! losses, accuracies, throughput, learning rate — one line per metric name. A cache hit
//! shows the curves of the execution it reused.

use super::html::{esc, exec_link};
use super::model::{Metric, RunData};
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::store::ExecStatus;
use histodiff_plot::{LineChart, Series};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 340;
/// A series is thinned to about this many points (a long pre-training logs far more than
/// a chart can show).
const MAX_POINTS: usize = 1000;

/// (step, value) points of one metric.
type Points = Vec<(f64, f64)>;

/// Metric name → its points.
type SeriesByName<'a> = BTreeMap<&'a str, Points>;

/// Metrics that share an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Loss,
    /// Adaptive loss weights (the autoencoder's `d_weight`): not losses, other scale.
    Weight,
    Accuracy,
    Throughput,
    LearningRate,
}

impl Group {
    fn of(name: &str) -> Group {
        let leaf = name.rsplit('/').next().unwrap_or(name);
        if name.ends_with("_per_s") {
            Group::Throughput
        } else if leaf == "lr" || leaf.starts_with("learning_rate") {
            Group::LearningRate
        } else if leaf.contains("acc") || leaf == "f1" {
            Group::Accuracy
        } else if leaf.contains("weight") {
            Group::Weight
        } else {
            Group::Loss
        }
    }

    /// Chart title and y axis label (with its unit).
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Group::Loss => ("Losses", "loss"),
            Group::Weight => ("Loss weights", "weight"),
            Group::Accuracy => ("Accuracy", "accuracy (fraction correct)"),
            Group::Throughput => ("Throughput", "images per second"),
            Group::LearningRate => ("Learning rate", "learning rate"),
        }
    }
}

/// One block per execution with stepped metrics, in run order.
pub fn section(data: &RunData) -> Result<String, CliError> {
    let mut out = String::new();
    let mut charts = 0;
    // A cache hit shares its source's id and curves: one block per id.
    let anchors = data
        .graph
        .executions
        .iter()
        .filter(|v| data.graph.is_anchor(v));
    for e in anchors.map(|e| &e.record) {
        let groups = grouped(
            data.metrics
                .get(&e.id)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        if groups.is_empty() {
            continue;
        }
        let source = match (e.status, e.cached_from) {
            (ExecStatus::Cached, Some(src)) => format!(" — cached: the curves of execution #{src}"),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<div class=\"curves\" id=\"curves-{}\"><h3>{} {}{}</h3>",
            e.id,
            super::dag::instance_link(&e.instance),
            exec_link(e.id, &format!("#{}", e.id)),
            esc(&source)
        );
        let (html, drawn) = charts_of(groups)?;
        out.push_str(&html);
        out.push_str("</div>\n");
        charts += drawn;
    }
    if charts == 0 {
        return Ok(
            "<p class=\"note\">No execution of this run recorded stepped metrics.</p>".into(),
        );
    }
    Ok(out)
}

/// One chart per group (or per band of sizes, [`by_magnitude`]); a group whose metrics have one point each (a rate measured once,
/// at the end) is listed in a line instead. Returns the HTML and the number of charts.
fn charts_of(groups: BTreeMap<Group, SeriesByName<'_>>) -> Result<(String, usize), CliError> {
    let mut out = String::from("<div class=\"charts\">");
    let mut single = Vec::new();
    let mut drawn = 0;
    for (group, series) in groups {
        if series.values().all(|points| points.len() < 2) {
            for (name, points) in series {
                if let Some(&(step, v)) = points.first() {
                    single.push(format!("<code>{}</code> {v:.4} at step {step}", esc(name)));
                }
            }
            continue;
        }
        let bands = by_magnitude(series);
        let split = bands.len() > 1;
        for band in bands {
            out.push_str(&chart(group, band, split)?);
            drawn += 1;
        }
    }
    out.push_str("</div>");
    if !single.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">Measured once: {}.</p>",
            single.join(" · ")
        );
    }
    Ok((out, drawn))
}

/// Stepped metrics by group, then by name: (step, value) points in step order.
fn grouped(metrics: &[Metric]) -> BTreeMap<Group, SeriesByName<'_>> {
    let mut groups: BTreeMap<Group, SeriesByName<'_>> = BTreeMap::new();
    for (name, step, value) in metrics {
        if let Some(step) = step {
            groups
                .entry(Group::of(name))
                .or_default()
                .entry(name.as_str())
                .or_default()
                .push((*step as f64, *value));
        }
    }
    for series in groups.values_mut().flat_map(|g| g.values_mut()) {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        *series = thin(std::mem::take(series));
    }
    groups
}

/// Splits series whose typical sizes differ by more than a factor of 100 (the autoencoder's
/// KL term in the thousands beside a reconstruction loss below one) into separate charts,
/// so that no line is flattened against the axis. Within a chart, series keep name order.
fn by_magnitude(series: SeriesByName<'_>) -> Vec<SeriesByName<'_>> {
    let typical = |points: &[(f64, f64)]| {
        let mut v: Vec<f64> = points
            .iter()
            .map(|p| p.1.abs())
            .filter(|v| v.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut sized: Vec<(f64, &str, Points)> = series
        .into_iter()
        .map(|(n, p)| (typical(&p), n, p))
        .collect();
    sized.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bands: Vec<(f64, SeriesByName<'_>)> = Vec::new();
    let mut zeros = Vec::new();
    for (size, name, points) in sized {
        match bands.last_mut() {
            _ if size == 0.0 => zeros.push((name, points)),
            Some((first, band)) if size <= *first * 100.0 => {
                band.insert(name, points);
            }
            _ => bands.push((size, BTreeMap::from([(name, points)]))),
        }
    }
    // A series that stays at zero (a loss term not switched on yet) shares the first chart.
    match bands.first_mut() {
        Some((_, band)) => band.extend(zeros),
        None => bands.push((0.0, zeros.into_iter().collect())),
    }
    bands
        .into_iter()
        .map(|(_, band)| band)
        .filter(|b| !b.is_empty())
        .collect()
}

/// Every k-th point (and the last), so at most about [`MAX_POINTS`] remain.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let stride = points.len().div_ceil(MAX_POINTS);
    let last = points[points.len() - 1];
    let mut kept: Vec<(f64, f64)> = points.into_iter().step_by(stride).collect();
    if kept.last() != Some(&last) {
        kept.push(last);
    }
    kept
}

/// One chart; `split`: the group is drawn in several charts, so the title names the
/// metrics of this one.
fn chart(group: Group, series: SeriesByName<'_>, split: bool) -> Result<String, CliError> {
    let (title, y_label) = group.labels();
    let names: Vec<&str> = series.keys().copied().collect();
    let title = match split {
        true => format!("{title}: {}", names.join(", ")),
        false => title.to_string(),
    };
    let chart = LineChart {
        title: title.clone(),
        x_label: "training step".into(),
        y_label: y_label.into(),
        series: series
            .into_iter()
            .map(|(name, points)| Series {
                name: name.to_string(),
                points,
                error: None,
            })
            .collect(),
        x_log: false,
    };
    let svg = chart
        .svg(WIDTH, HEIGHT)
        .map_err(|e| anyhow::anyhow!("cannot draw the {title} chart: {e}"))
        .code(STORE)?;
    Ok(format!("<figure class=\"chart\">{svg}</figure>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_grouped_by_what_they_measure() {
        assert_eq!(Group::of("loss"), Group::Loss);
        assert_eq!(Group::of("rec"), Group::Loss);
        assert_eq!(Group::of("accuracy"), Group::Accuracy);
        assert_eq!(Group::of("val/acc"), Group::Accuracy);
        assert_eq!(Group::of("train/images_per_s"), Group::Throughput);
        assert_eq!(Group::of("lr"), Group::LearningRate);
        assert_eq!(Group::of("d_weight"), Group::Weight);
    }

    #[test]
    fn series_of_very_different_sizes_get_charts_of_their_own() {
        let line = |v: f64| vec![(0.0, v), (1.0, v * 1.1)];
        let series = BTreeMap::from([
            ("kl", line(5000.0)),
            ("rec", line(0.2)),
            ("loss", line(0.9)),
            ("g_loss", line(0.0)),
        ]);
        let bands: Vec<Vec<&str>> = by_magnitude(series)
            .iter()
            .map(|b| b.keys().copied().collect())
            .collect();
        assert_eq!(bands, vec![vec!["g_loss", "loss", "rec"], vec!["kl"]]);
    }

    #[test]
    fn final_values_are_not_curves_and_long_series_are_thinned() {
        let mut m: Vec<Metric> = (0..5000)
            .map(|s| ("loss".to_string(), Some(s), 1.0))
            .collect();
        m.push(("accuracy".into(), None, 0.9));
        let g = grouped(&m);
        assert_eq!(g.len(), 1, "the final accuracy draws no chart");
        let loss = &g[&Group::Loss]["loss"];
        assert!(loss.len() <= MAX_POINTS + 1);
        assert_eq!(loss.last().unwrap().0, 4999.0, "the last step is kept");
    }
}
