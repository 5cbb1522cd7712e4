//! Table 1, from the `rows.json` of each report/table directory of the run
//! (`report_dir`), which holds every row with its full metrics and lineage: one line per
//! setting (mean ± sample standard deviation over its seeds), each run of it linked to the
//! section of the execution that evaluated it and to that execution's inputs.

use super::dag::{instance_link, RunGraph};
use super::html::{esc, exec_anchor, exec_link, instance_anchor};
use super::model::RunData;
use super::report_dir::ReportDir;
use histodiff_engine::store::ExecutionId;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// One row of `rows.json`: one evaluation (one seed of a setting).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub setting: String,
    pub producer: String,
    pub accuracy: Option<f64>,
    pub f1_weighted: Option<f64>,
    pub f1_macro: Option<f64>,
    pub fid: Option<f64>,
    /// Why there is no FID value (`not computed: …`), when the row has an FID entry.
    pub fid_status: Option<String>,
    pub fid_producer: Option<String>,
    pub filled: Option<u64>,
}

/// The runs of one setting, in file order.
pub struct Setting<'a> {
    pub label: &'a str,
    pub rows: Vec<&'a Row>,
}

impl Setting<'_> {
    pub fn accuracy(&self) -> String {
        spread(self.rows.iter().filter_map(|r| r.accuracy))
    }
    pub fn f1_weighted(&self) -> String {
        spread(self.rows.iter().filter_map(|r| r.f1_weighted))
    }
    pub fn f1_macro(&self) -> String {
        spread(self.rows.iter().filter_map(|r| r.f1_macro))
    }
    /// The FID over the runs that computed one; `n/c` when an FID stage ran but computed
    /// none (e.g. no Inception weights), `–` when none ran.
    pub fn fid(&self) -> String {
        let text = spread(self.rows.iter().filter_map(|r| r.fid));
        match text.as_str() {
            "–" if self.rows.iter().any(|r| r.fid_status.is_some()) => "n/c".into(),
            _ => text,
        }
    }
    fn filled(&self) -> String {
        let mut v: Vec<String> = self
            .rows
            .iter()
            .map(|r| r.filled.map_or("–".into(), |n| n.to_string()))
            .collect();
        v.dedup();
        v.join("/")
    }
}

/// Consecutive rows with the same setting label (the stage writes them sorted).
pub fn settings(rows: &[Row]) -> Vec<Setting<'_>> {
    let mut out: Vec<Setting> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(s) if s.label == row.setting => s.rows.push(row),
            _ => out.push(Setting {
                label: &row.setting,
                rows: vec![row],
            }),
        }
    }
    out
}

/// `0.812 ± 0.013` (sample standard deviation), `0.812` for one value, `–` for none.
pub fn spread(values: impl Iterator<Item = f64>) -> String {
    let v: Vec<f64> = values.collect();
    let n = v.len();
    if n == 0 {
        return "–".into();
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return format!("{mean:.3}");
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    format!("{mean:.3} ± {:.3}", var.sqrt())
}

/// The rows of `rows.json`; fields a row lacks stay empty.
pub fn parse_rows(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let rows: Vec<Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("rows.json is not a JSON list: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let text = |v: &Value| v.as_str().map(str::to_string);
            let eval = &r["evaluation"];
            Row {
                setting: text(&r["setting"]).unwrap_or_else(|| "?".into()),
                producer: text(&r["producer"]).unwrap_or_default(),
                accuracy: eval["accuracy"].as_f64(),
                f1_weighted: eval["weighted"]["f1"].as_f64(),
                f1_macro: eval["macro_avg"]["f1"].as_f64(),
                fid: r["fid"]["fid"].as_f64(),
                fid_status: text(&r["fid"]["status"]),
                fid_producer: text(&r["fid_producer"]),
                filled: r["filled"].as_u64(),
            }
        })
        .collect())
}

/// Table 1 of every report directory.
pub fn section(reports: &[ReportDir], data: &RunData, graph: &RunGraph) -> String {
    if reports.is_empty() {
        return "<p class=\"note\">This run has no report/table stage with a result, so there is no Table 1.</p>".into();
    }
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "<h3>from {} (execution {})</h3>",
            instance_link(&r.instance),
            exec_link(r.execution, &format!("#{}", r.execution))
        );
        if let Some(problem) = &r.problem {
            let _ = write!(out, "<p class=\"problem\">{}</p>", esc(problem));
            continue;
        }
        out.push_str(&table(&r.rows, data, graph));
    }
    out
}

fn table(rows: &[Row], data: &RunData, graph: &RunGraph) -> String {
    let mut out = String::from(
        "<table class=\"grid table1\"><thead><tr><th>setting</th><th>n</th><th>accuracy</th>\
         <th>F1 (weighted)</th><th>F1 (macro)</th><th>FID</th><th>filled</th><th>lineage of each run</th></tr></thead><tbody>\n",
    );
    for s in settings(rows) {
        let varying = varying_coordinates(&s);
        let lineage: Vec<String> = s
            .rows
            .iter()
            .map(|r| lineage(r, &varying, data, graph))
            .collect();
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(s.label),
            s.rows.len(),
            s.accuracy(),
            s.f1_weighted(),
            s.f1_macro(),
            s.fid(),
            s.filled(),
            lineage.join("")
        );
    }
    out.push_str("</tbody></table>\n<p class=\"note\">mean ± sample standard deviation over the runs (seeds) of each setting; \
                  n/c: FID not computed. Lineage: per run, the stage that evaluated it ← the stages it read · the FID's stage; \
                  each name links to that instance's section (hover for its full name).</p>");
    out
}

/// The matrix coordinates that tell a setting's runs apart (usually `seed`).
fn varying_coordinates(s: &Setting<'_>) -> BTreeSet<String> {
    let coords: Vec<BTreeMap<String, String>> =
        s.rows.iter().map(|r| coordinates_of(&r.producer)).collect();
    let keys: BTreeSet<&String> = coords.iter().flat_map(|c| c.keys()).collect();
    keys.into_iter()
        .filter(|k| coords.iter().any(|c| c.get(*k) != coords[0].get(*k)))
        .cloned()
        .collect()
}

/// `{a: 1, b: 2}` from `stage[a=1,b=2]`.
fn coordinates_of(instance: &str) -> BTreeMap<String, String> {
    let inner = instance
        .split_once('[')
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .unwrap_or("");
    inner
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `seed=0: evaluate ← augmented, select · FID fid`: each name a link to its instance
/// (the evaluation's to its execution), the full instance name in its tooltip.
fn lineage(row: &Row, varying: &BTreeSet<String>, data: &RunData, graph: &RunGraph) -> String {
    let coords = coordinates_of(&row.producer);
    let label: Vec<String> = varying
        .iter()
        .filter_map(|k| coords.get(k).map(|v| format!("{k}={v}")))
        .collect();
    let mut out = String::from("<div class=\"lineage\">");
    if !label.is_empty() {
        let _ = write!(
            out,
            "<span class=\"run\">{}:</span> ",
            esc(&label.join(", "))
        );
    }
    match graph.node(&row.producer).and_then(|n| n.execution) {
        Some(id) => {
            let _ = write!(
                out,
                "<a class=\"producer\" href=\"#{}\" title=\"{}\">{}</a>",
                exec_anchor(id),
                esc(&row.producer),
                esc(stage_of(&row.producer))
            );
            let upstream = upstream_of(id, data, graph);
            if !upstream.is_empty() {
                let _ = write!(out, " ← {}", upstream.join(", "));
            }
        }
        None => out.push_str(&esc(&row.producer)),
    }
    if let Some(fid) = &row.fid_producer {
        let _ = write!(out, " · FID {}", short_link(fid));
    }
    out.push_str("</div>");
    out
}

/// The stage part of an instance name.
fn stage_of(instance: &str) -> &str {
    instance
        .split_once('[')
        .map_or(instance, |(stage, _)| stage)
}

/// A link to an instance's section showing its stage, the full name in the tooltip.
fn short_link(instance: &str) -> String {
    format!(
        "<a href=\"#{}\" title=\"{}\">{}</a>",
        esc(&instance_anchor(instance)),
        esc(instance),
        esc(stage_of(instance))
    )
}

/// Links to the instances whose artifacts execution `id` read.
fn upstream_of(id: ExecutionId, data: &RunData, graph: &RunGraph) -> Vec<String> {
    let Some(e) = data.graph.execution(id) else {
        return Vec::new();
    };
    let mut names: Vec<&str> = e
        .inputs
        .iter()
        .filter_map(|i| graph.producer_of(&i.artifact, &e.record))
        .map(|n| n.instance.as_str())
        .collect();
    names.dedup();
    names.into_iter().map(short_link).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_grouped_by_setting() {
        let json = br#"[
          {"setting":"baseline","producer":"ev[seed=0]","evaluation":{"accuracy":0.5,"weighted":{"f1":0.4},"macro_avg":{"f1":0.3}},"fid":null,"fid_producer":null,"filled":null},
          {"setting":"baseline","producer":"ev[seed=1]","evaluation":{"accuracy":0.7,"weighted":{"f1":0.6},"macro_avg":{"f1":0.5}},"fid":null,"fid_producer":null,"filled":null},
          {"setting":"selective 50 %","producer":"ev[r=0.5]","evaluation":{"accuracy":0.8},"fid":{"fid":null,"status":"not computed: no weights"},"fid_producer":"fid[r=0.5]","filled":3}
        ]"#;
        let rows = parse_rows(json).unwrap();
        let s = settings(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].accuracy(), "0.600 ± 0.141");
        assert_eq!(s[0].fid(), "–");
        assert_eq!(s[1].fid(), "n/c");
        assert_eq!(s[1].filled(), "3");
        assert_eq!(s[1].f1_weighted(), "–");
        assert!(parse_rows(b"{}").is_err());
    }
}
