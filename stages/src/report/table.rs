//! Table 1 as Markdown and CSV: one line per setting (variant, method, ratio) with the
//! mean ± spread of its runs over seeds, its FID when one was computed for the same
//! setting, the paper's numbers for that setting, and each run's lineage (producing
//! instance and artifact hash), so every number can be traced.

use super::paper::{label, lookup, variant_name, STYLEGAN2};
use super::results::{Evaluation, FidResult, FULL_VARIANT};
use super::spread::{within_spread, Spread};

/// One measured row.
#[derive(Debug, Clone)]
pub struct Row {
    pub variant: String,
    pub method: String,
    pub ratio: f64,
    /// Selected images the nearest-centroid filter rejected, taken by `shortfall: fill`;
    /// None for a row without a recorded selection (the baseline).
    pub filled: Option<u64>,
    pub evaluation: Evaluation,
    pub fid: Option<FidResult>,
    /// Instance that produced the joined FID, e.g. `fid_gan[generator=stylegan2,…]`.
    pub fid_producer: Option<String>,
    /// Instance that produced the evaluation, e.g. `evaluate[method=centroid,ratio=2.0]`.
    pub producer: String,
    /// Content hash of the evaluation artifact.
    pub hash: String,
}

impl Row {
    pub fn label(&self) -> String {
        label(&self.variant, &self.method, self.ratio)
    }
}

/// Sorts rows the way the paper lists them: the (real-only) baseline, StyleGAN2, then
/// HistoDiffusion (`full`), then the ablations by name; within each, baseline first,
/// random, selective, by ratio.
pub fn sort_rows(rows: &mut [Row]) {
    let rank = |r: &Row| {
        let group = match (r.variant.as_str(), r.method.as_str()) {
            (FULL_VARIANT, "none") => 0,
            (STYLEGAN2, _) => 1,
            (FULL_VARIANT, _) => 2,
            _ => 3,
        };
        (
            group,
            r.variant.clone(),
            r.method != "none",
            r.method != "random",
        )
    };
    rows.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.ratio.total_cmp(&b.ratio)));
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

/// The runs of one setting (variant, method, ratio): one row per seed, in sorted order.
pub struct Setting<'a> {
    pub runs: Vec<&'a Row>,
}

impl Setting<'_> {
    fn first(&self) -> &Row {
        self.runs[0]
    }

    fn spread(&self, metric: impl Fn(&Row) -> Option<f64>) -> Option<Spread> {
        let values: Vec<f64> = self.runs.iter().filter_map(|r| metric(r)).collect();
        Spread::of(&values)
    }

    fn accuracy(&self) -> Option<Spread> {
        self.spread(|r| Some(r.evaluation.accuracy))
    }

    /// FID over the runs that computed one; `n/c` or `–` when none did.
    fn fid_text(&self) -> String {
        match self.spread(|r| r.fid.as_ref().and_then(|f| f.fid)) {
            Some(s) => s.text(),
            None if self.runs.iter().any(|r| r.fid.is_some()) => "n/c".into(),
            None => "–".into(),
        }
    }

    /// `filled` of every run: one number when they agree, else each run's, `/`-separated.
    fn filled_text(&self) -> String {
        let mut values: Vec<String> = self
            .runs
            .iter()
            .map(|r| r.filled.map_or_else(|| "–".to_string(), |n| n.to_string()))
            .collect();
        values.dedup();
        values.join("/")
    }
}

/// Whether two rows are runs of one setting (same variant, method and ratio).
fn same_setting(a: &Row, b: &Row) -> bool {
    a.variant == b.variant && a.method == b.method && (a.ratio - b.ratio).abs() < 1e-9
}

/// Groups sorted rows into settings; rows of one setting differ only in their seed.
pub fn settings(rows: &[Row]) -> Vec<Setting<'_>> {
    let mut out: Vec<Setting> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(s) if same_setting(s.first(), row) => s.runs.push(row),
            _ => out.push(Setting { runs: vec![row] }),
        }
    }
    out
}

/// Δ accuracy against the baseline of the same variant (the `full` one, trained on real
/// images only, for a variant without its own, e.g. StyleGAN2), marked `†` when it is
/// smaller than the spread over seeds (it could be seed noise).
fn delta_text(setting: &Setting, all: &[Setting]) -> String {
    let first = setting.first();
    let baseline_of = |variant: &str| {
        all.iter()
            .find(|s| s.first().method == "none" && s.first().variant == variant)
    };
    let baseline = baseline_of(&first.variant).or_else(|| baseline_of(FULL_VARIANT));
    let (Some(base), Some(acc)) = (baseline, setting.accuracy()) else {
        return "–".into();
    };
    let Some(base_acc) = base.accuracy() else {
        return "–".into();
    };
    if first.method == "none" {
        return "–".into();
    }
    let mark = if within_spread(&acc, &base_acc) {
        " †"
    } else {
        ""
    };
    format!("{:+.3}{mark}", acc.mean - base_acc.mean)
}

/// Whether the table prints the paper's numbers beside the measured ones. They compare
/// only on the paper's own data: on other data a column of them would invite a comparison
/// that means nothing, so they are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperColumns {
    /// The pipeline's data is NCT-CRC-HE-100K → CRC-VAL-HE-7K, as in the paper.
    Crc,
    None,
}

const MEASURED: [&str; 7] = ["setting", "FID", "Acc", "F1", "Sens", "Spec", "Δ Acc"];
const PAPER: [&str; 5] = [
    "paper FID",
    "paper Acc",
    "paper F1",
    "paper Sens",
    "paper Spec",
];
const TRAILER: [&str; 4] = ["n", "n test", "filled", "lineage"];

fn header(paper: PaperColumns) -> Vec<&'static str> {
    let paper_cols: &[&str] = if paper == PaperColumns::Crc {
        &PAPER
    } else {
        &[]
    };
    [&MEASURED[..], paper_cols, &TRAILER[..]].concat()
}

fn cells(setting: &Setting, all: &[Setting], paper: PaperColumns) -> Vec<String> {
    let row = setting.first();
    let text = |s: Option<Spread>| s.map_or_else(|| "–".to_string(), |s| s.text());
    let mut out = vec![
        row.label(),
        setting.fid_text(),
        text(setting.accuracy()),
        text(setting.spread(|r| Some(r.evaluation.weighted.f1))),
        text(setting.spread(|r| Some(r.evaluation.weighted.recall))),
        text(setting.spread(|r| Some(r.evaluation.weighted.specificity))),
        delta_text(setting, all),
    ];
    if paper == PaperColumns::Crc {
        let p = lookup(&row.variant, &row.method, row.ratio);
        out.extend([
            num(p.and_then(|p| p.fid)),
            num(p.map(|p| p.accuracy)),
            num(p.map(|p| p.f1)),
            num(p.map(|p| p.sensitivity)),
            num(p.map(|p| p.specificity)),
        ]);
    }
    let lineage: Vec<String> = setting
        .runs
        .iter()
        .map(|r| format!("{} @ {}", r.producer, &r.hash[..12.min(r.hash.len())]))
        .collect();
    out.extend([
        setting.runs.len().to_string(),
        row.evaluation.n_test.to_string(),
        setting.filled_text(),
        lineage.join("; "),
    ]);
    out
}

/// The Markdown report: title, the table, a note on averaging, per-row macro metrics.
pub fn markdown(title: &str, rows: &[Row], paper: PaperColumns) -> String {
    let mut out = format!("# {title}\n\n");
    out += "Measured metrics are support-weighted averages over classes from the global confusion matrix \
            (paper-compatible, SPEC §8.3). ";
    out += match paper {
        PaperColumns::Crc => "Paper numbers are the paper's Table 1 (HistoDiffusion and StyleGAN2) / supp. Table 1 on CRC-VAL-HE-7K. ",
        PaperColumns::None => "The paper's numbers are not shown: this pipeline does not declare the paper's data (`paper: crc`). ",
    };
    out += "`filled`: selected images that failed the nearest-centroid filter and were added only to meet the quota \
            (`shortfall: fill`); – where no selection is recorded. \
            With several runs of a setting (`n`, one per seed) each metric is mean ± sample standard deviation; \
            `Δ Acc` is against the baseline of the same variant (the real-only baseline of `full` for a variant \
            without its own, e.g. StyleGAN2), marked † when it is smaller than the larger \
            of the two spreads (it could be seed noise).\n\n";
    let header = header(paper);
    out += &format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    let all = settings(rows);
    for setting in &all {
        out += &format!("| {} |\n", cells(setting, &all, paper).join(" | "));
    }
    let mut notes: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.fid.as_ref())
        .filter(|f| f.fid.is_none())
        .map(|f| f.status.as_str())
        .collect();
    notes.dedup();
    for note in notes {
        out += &format!("\nFID n/c = {note}\n");
    }
    if rows.iter().any(|r| r.filled.unwrap_or(0) > 0) {
        out +=
            "\nRows with filled > 0 are not purely selective augmentation: sample a larger pool \
                (`per_class` of `histodiffusion/sample`) and run again.\n";
    }
    out += &fid_against_ratio(&all, paper);
    out += "\n## Macro averages\n\n| setting | F1 | Sens | Spec | Precision |\n|---|---|---|---|---|\n";
    for setting in &all {
        let text = |metric: fn(&Row) -> f64| {
            setting
                .spread(|r| Some(metric(r)))
                .map_or_else(|| "–".to_string(), |s| s.text())
        };
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            setting.first().label(),
            text(|r| r.evaluation.macro_avg.f1),
            text(|r| r.evaluation.macro_avg.recall),
            text(|r| r.evaluation.macro_avg.specificity),
            text(|r| r.evaluation.macro_avg.precision),
        );
    }
    out
}

/// How a series of rows is named in "FID against ratio": its generator, and the variant
/// for an ablation.
pub fn series_name(variant: &str) -> String {
    match variant {
        FULL_VARIANT => "HistoDiffusion".into(),
        STYLEGAN2 => variant_name(variant).into(),
        other => format!("HistoDiffusion {other}"),
    }
}

/// "FID against ratio": per series (variant and selection method) the FID at each ratio,
/// measured and, with `paper: crc`, the paper's, so the trend can be read off (the paper:
/// StyleGAN2's FID worsens quickly past 100 %, HistoDiffusion's holds to 300 %). Without
/// any computed FID it says so instead of printing a column of n/c. Empty without rows
/// of synthetic data.
fn fid_against_ratio(all: &[Setting], paper: PaperColumns) -> String {
    let synthetic: Vec<&Setting> = all.iter().filter(|s| s.first().method != "none").collect();
    if synthetic.is_empty() {
        return String::new();
    }
    let mut ratios: Vec<f64> = synthetic.iter().map(|s| s.first().ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    // Series in table order: (variant, method) and its settings.
    let mut series: Vec<(&str, &str, Vec<&Setting>)> = Vec::new();
    for s in &synthetic {
        let r = s.first();
        match series.last_mut() {
            Some((v, m, list)) if *v == r.variant && *m == r.method => list.push(s),
            _ => series.push((&r.variant, &r.method, vec![s])),
        }
    }
    let measured = synthetic.iter().any(|s| {
        s.runs
            .iter()
            .any(|r| r.fid.as_ref().is_some_and(|f| f.fid.is_some()))
    });
    let mut out = String::from("\n## FID against ratio\n\n");
    if measured {
        out += "FID of each generator's selected images against the real images, by augmentation ratio \
                (mean ± std over runs; n/c: not computed; –: no FID for that setting)";
    } else {
        let reason = synthetic
            .iter()
            .flat_map(|s| &s.runs)
            .find_map(|r| r.fid.as_ref())
            .map_or("no FID results were given to the report".to_string(), |f| {
                f.status.clone()
            });
        out += &format!(
            "No FID was measured ({reason}), so the measured FID against ratio cannot be shown"
        );
    }
    out += match paper {
        PaperColumns::Crc => "; `(paper)` lines are the paper's FIDs for the same settings.\n\n",
        PaperColumns::None => ".\n\n",
    };
    if !measured && paper == PaperColumns::None {
        return out;
    }
    let percent: Vec<String> = ratios
        .iter()
        .map(|r| format!("{} %", (r * 100.0).round()))
        .collect();
    out += &format!(
        "| generator | selection | {} |\n|---|---|{}\n",
        percent.join(" | "),
        "---|".repeat(ratios.len())
    );
    for (variant, method, list) in &series {
        let selection = if *method == "centroid" {
            "selective"
        } else {
            method
        };
        let at = |ratio: f64| list.iter().find(|s| (s.first().ratio - ratio).abs() < 1e-9);
        if measured {
            let cells: Vec<String> = ratios
                .iter()
                .map(|&r| at(r).map_or("–".into(), |s| s.fid_text()))
                .collect();
            out += &format!(
                "| {} | {selection} | {} |\n",
                series_name(variant),
                cells.join(" | ")
            );
        }
        if paper == PaperColumns::Crc {
            let cells: Vec<String> = ratios
                .iter()
                .map(|&r| num(lookup(variant, method, r).and_then(|p| p.fid)))
                .collect();
            out += &format!(
                "| {} (paper) | {selection} | {} |\n",
                series_name(variant),
                cells.join(" | ")
            );
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The same table as CSV (with variant, method and ratio as their own columns).
pub fn csv(rows: &[Row], paper: PaperColumns) -> String {
    let header: Vec<String> = header(paper).into_iter().map(csv_field).collect();
    let mut out = format!("variant,method,ratio,{}\n", header.join(","));
    let all = settings(rows);
    for setting in &all {
        let row = setting.first();
        let fields: Vec<String> = cells(setting, &all, paper)
            .iter()
            .map(|c| csv_field(c))
            .collect();
        out += &format!(
            "{},{},{},{}\n",
            csv_field(&row.variant),
            csv_field(&row.method),
            row.ratio,
            fields.join(",")
        );
    }
    out
}
