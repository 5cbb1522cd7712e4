//! Table 1 as Markdown and CSV: one row per evaluated classifier, its FID when one was
//! computed for the same setting, the paper's numbers for that setting, and the row's
//! lineage (producing instance and artifact hash), so every number can be traced.

use super::paper::{label, lookup};
use super::results::{Evaluation, FidResult};

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

/// Sorts rows the way the paper lists them: variant, baseline first, random, selective, ratio.
pub fn sort_rows(rows: &mut [Row]) {
    let rank = |r: &Row| {
        (
            r.variant != "full",
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

fn fid_text(fid: &Option<FidResult>) -> String {
    match fid {
        Some(FidResult { fid: Some(v), .. }) => format!("{v:.3}"),
        Some(_) => "n/c".into(),
        None => "–".into(),
    }
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

const MEASURED: [&str; 6] = ["setting", "FID", "Acc", "F1", "Sens", "Spec"];
const PAPER: [&str; 5] = [
    "paper FID",
    "paper Acc",
    "paper F1",
    "paper Sens",
    "paper Spec",
];
const TRAILER: [&str; 3] = ["n test", "filled", "lineage"];

fn header(paper: PaperColumns) -> Vec<&'static str> {
    let paper_cols: &[&str] = if paper == PaperColumns::Crc {
        &PAPER
    } else {
        &[]
    };
    [&MEASURED[..], paper_cols, &TRAILER[..]].concat()
}

fn cells(row: &Row, paper: PaperColumns) -> Vec<String> {
    let w = row.evaluation.weighted;
    let mut out = vec![
        row.label(),
        fid_text(&row.fid),
        num(Some(row.evaluation.accuracy)),
        num(Some(w.f1)),
        num(Some(w.recall)),
        num(Some(w.specificity)),
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
    out.extend([
        row.evaluation.n_test.to_string(),
        row.filled
            .map_or_else(|| "–".to_string(), |n| n.to_string()),
        format!("{} @ {}", row.producer, &row.hash[..12.min(row.hash.len())]),
    ]);
    out
}

/// The Markdown report: title, the table, a note on averaging, per-row macro metrics.
pub fn markdown(title: &str, rows: &[Row], paper: PaperColumns) -> String {
    let mut out = format!("# {title}\n\n");
    out += "Measured metrics are support-weighted averages over classes from the global confusion matrix \
            (paper-compatible, SPEC §8.3). ";
    out += match paper {
        PaperColumns::Crc => "Paper numbers are HistoDiffusion's Table 1 / supp. Table 1 on CRC-VAL-HE-7K. ",
        PaperColumns::None => "The paper's numbers are not shown: this pipeline does not declare the paper's data (`paper: crc`). ",
    };
    out += "`filled`: selected images that failed the nearest-centroid filter and were added only to meet the quota \
            (`shortfall: fill`); – where no selection is recorded.\n\n";
    let header = header(paper);
    out += &format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        out += &format!("| {} |\n", cells(row, paper).join(" | "));
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
    out += "\n## Macro averages\n\n| setting | F1 | Sens | Spec | Precision |\n|---|---|---|---|---|\n";
    for row in rows {
        let m = row.evaluation.macro_avg;
        out += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            row.label(),
            m.f1,
            m.recall,
            m.specificity,
            m.precision
        );
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
    for row in rows {
        let fields: Vec<String> = cells(row, paper).iter().map(|c| csv_field(c)).collect();
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
