//! Table 1 and the FID table as charts against the augmentation ratio: one line per
//! generator and selection method, the mean over seeds at each ratio with the seeds'
//! sample standard deviation as an error bar ([`Spread`]). Baselines (real images only)
//! do not depend on the ratio: each is a flat reference line across the ratios.

use super::paper::variant_name;
use super::results::FULL_VARIANT;
use super::spread::Spread;
use super::table::{series_name, Row, Setting};
use histodiff_plot::{LineChart, Series};

/// The x axis of every ratio chart: the ratio as a percentage, as in the table's labels.
const RATIO_LABEL: &str = "synthetic images added (% of the real training images)";

/// A metric drawn against the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Accuracy,
    F1,
    Fid,
}

impl Metric {
    fn value(self, row: &Row) -> Option<f64> {
        match self {
            Metric::Accuracy => Some(row.evaluation.accuracy),
            Metric::F1 => Some(row.evaluation.weighted.f1),
            Metric::Fid => row.fid.as_ref().and_then(|f| f.fid),
        }
    }

    fn axis(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy (test set)",
            Metric::F1 => "F1 (support-weighted, test set)",
            Metric::Fid => "FID against the real images (lower is better)",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Accuracy => "Accuracy against augmentation ratio",
            Metric::F1 => "F1 against augmentation ratio",
            Metric::Fid => "FID of the selected images against augmentation ratio",
        }
    }
}

/// The chart of `metric` over the settings (in table order). FID has no baseline lines (a
/// baseline has no synthetic images to measure).
pub fn ratio_chart(all: &[Setting], metric: Metric) -> LineChart {
    let mut series: Vec<Series> = lines(all)
        .into_iter()
        .filter_map(|(name, settings)| line(name, &settings, metric))
        .collect();
    if metric != Metric::Fid {
        let right = all
            .iter()
            .map(|s| s.runs[0].ratio * 100.0)
            .fold(0.0, f64::max);
        series.extend(all.iter().filter_map(|s| baseline(s, metric, right)));
    }
    LineChart {
        title: metric.title().into(),
        x_label: RATIO_LABEL.into(),
        y_label: metric.axis().into(),
        series,
        x_log: false,
    }
}

/// Whether any setting has a measured FID (else there is no FID chart to draw).
pub fn any_fid(all: &[Setting]) -> bool {
    all.iter()
        .flat_map(|s| &s.runs)
        .any(|r| Metric::Fid.value(r).is_some())
}

/// The settings with synthetic images grouped into lines by variant and method, in table
/// order, each named like the FID table's rows ("StyleGAN2 selective").
fn lines<'s, 'r>(all: &'s [Setting<'r>]) -> Vec<(String, Vec<&'s Setting<'r>>)> {
    let mut out: Vec<(String, Vec<&Setting>)> = Vec::new();
    for s in all.iter().filter(|s| s.runs[0].method != "none") {
        let r = s.runs[0];
        let selection = if r.method == "centroid" {
            "selective"
        } else {
            &r.method
        };
        let name = format!("{} {selection}", series_name(&r.variant));
        match out.last_mut() {
            Some((n, list)) if *n == name => list.push(s),
            _ => out.push((name, vec![s])),
        }
    }
    out
}

/// The mean and spread of `metric` over a setting's runs that have it.
fn spread(setting: &Setting, metric: Metric) -> Option<Spread> {
    let values: Vec<f64> = setting
        .runs
        .iter()
        .filter_map(|r| metric.value(r))
        .collect();
    Spread::of(&values)
}

/// One line: the mean at each ratio, with error bars when any point has several seeds.
fn line(name: String, settings: &[&Setting], metric: Metric) -> Option<Series> {
    let points: Vec<(f64, Spread)> = settings
        .iter()
        .filter_map(|s| Some((s.runs[0].ratio * 100.0, spread(s, metric)?)))
        .collect();
    if points.is_empty() {
        return None;
    }
    let error = points
        .iter()
        .any(|(_, s)| s.std.is_some())
        .then(|| points.iter().map(|(_, s)| s.std.unwrap_or(0.0)).collect());
    Some(Series {
        name,
        points: points.iter().map(|(x, s)| (*x, s.mean)).collect(),
        error,
    })
}

/// A baseline setting as a flat line from ratio 0 to `right` (%), its spread drawn at 0.
fn baseline(setting: &Setting, metric: Metric, right: f64) -> Option<Series> {
    let r = setting.runs[0];
    if r.method != "none" {
        return None;
    }
    let s = spread(setting, metric)?;
    let mut points = vec![(0.0, s.mean)];
    if right > 0.0 {
        points.push((right, s.mean));
    }
    let error = s.std.map(|std| {
        let mut e = vec![std];
        e.resize(points.len(), 0.0);
        e
    });
    Some(Series {
        name: if r.variant == FULL_VARIANT {
            "baseline (real images only)".into()
        } else {
            format!("{} baseline (real images only)", variant_name(&r.variant))
        },
        points,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::classification::Averages;
    use crate::report::results::{Evaluation, FidResult};
    use crate::report::table::{settings, sort_rows};

    /// A row of `variant`, `method`, `ratio` with accuracy `acc`, F1 `acc − 0.1` and FID `fid`.
    fn row(variant: &str, method: &str, ratio: f64, acc: f64, fid: Option<f64>) -> Row {
        let averages = Averages {
            precision: acc,
            recall: acc,
            specificity: acc,
            f1: acc - 0.1,
        };
        Row {
            variant: variant.into(),
            method: method.into(),
            ratio,
            filled: None,
            evaluation: Evaluation {
                format: "histodiff/evaluation".into(),
                classes: vec!["A".into()],
                confusion: vec![vec![1]],
                n_test: 1,
                accuracy: acc,
                weighted: averages,
                macro_avg: averages,
                train_real: None,
                train_synthetic: None,
                variant: variant.into(),
                selection: None,
            },
            fid: fid.map(|f| FidResult {
                format: "histodiff/fid".into(),
                fid: Some(f),
                status: "computed".into(),
                n_real: 1,
                n_synthetic: 1,
            }),
            fid_producer: None,
            producer: "p".into(),
            hash: "h".into(),
        }
    }

    /// Rows in table order ([`sort_rows`]), two seeds for the baseline and 50 %.
    fn rows() -> Vec<Row> {
        let mut rows = vec![
            row("full", "none", 0.0, 0.8, None),
            row("full", "none", 0.0, 0.9, None),
            row("full", "centroid", 0.5, 0.85, Some(5.0)),
            row("full", "centroid", 0.5, 0.87, Some(7.0)),
            row("full", "centroid", 2.0, 0.9, Some(9.0)),
            row("stylegan2", "centroid", 2.0, 0.88, None),
        ];
        sort_rows(&mut rows);
        rows
    }

    fn close(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(p, q)| (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9)
    }

    #[test]
    fn one_line_per_generator_and_method_with_the_seed_spread() {
        let rows = rows();
        let chart = ratio_chart(&settings(&rows), Metric::Accuracy);
        let names: Vec<&str> = chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "StyleGAN2 selective",
                "HistoDiffusion selective",
                "baseline (real images only)"
            ]
        );
        assert_eq!(chart.series[0].error, None, "one seed: no error bar");
        let selective = &chart.series[1];
        assert!(
            close(&selective.points, &[(50.0, 0.86), (200.0, 0.9)]),
            "{selective:?}"
        );
        let error = selective.error.as_ref().expect("two seeds at 50 %");
        assert!((error[0] - 0.014_142_135_623_730_963).abs() < 1e-12 && error[1] == 0.0);
        // The baseline is flat across the ratios, its spread at 0 %.
        let baseline = &chart.series[2];
        assert!(
            close(&baseline.points, &[(0.0, 0.85), (200.0, 0.85)]),
            "{baseline:?}"
        );
        assert!((baseline.error.as_ref().unwrap()[0] - 0.070_710_678_118_654_76).abs() < 1e-12);
        let f1 = ratio_chart(&settings(&rows), Metric::F1);
        assert!((f1.series[1].points[1].1 - 0.8).abs() < 1e-12);
        assert_eq!(f1.y_label, "F1 (support-weighted, test set)");
    }

    #[test]
    fn fid_lines_leave_out_baselines_and_settings_without_fid() {
        let rows = rows();
        let all = settings(&rows);
        assert!(any_fid(&all));
        let chart = ratio_chart(&all, Metric::Fid);
        assert_eq!(
            chart.series.len(),
            1,
            "StyleGAN2 has no FID, baselines none at all"
        );
        assert!(close(&chart.series[0].points, &[(50.0, 6.0), (200.0, 9.0)]));
        let no_fid: Vec<Row> = rows.into_iter().filter(|r| r.fid.is_none()).collect();
        assert!(!any_fid(&settings(&no_fid)));
    }
}
