//! The output directories of the run's `report/table` executions, read from the object
//! store through their manifests: `rows.json` (Table 1, see `table1`) and the figures
//! (every `*.svg` and `*.png`, SVG preferred where a figure has both), embedded in the page
//! as data: URIs.

use super::dag::instance_link;
use super::html::{data_uri, esc, text_data_uri};
use super::model::RunData;
use super::table1::{parse_rows, Row};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::store::{ExecStatus, ExecutionId, Store};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The kind whose output this module reads.
pub const REPORT_KIND: &str = "report/table";

/// A figure file of the report directory.
pub struct Figure {
    pub path: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

/// What one report/table execution left, or why it cannot be shown.
pub struct ReportDir {
    pub instance: String,
    pub execution: ExecutionId,
    pub rows: Vec<Row>,
    pub figures: Vec<Figure>,
    pub problem: Option<String>,
}

/// The report directories of the run's report/table instances (their newest result).
pub fn read_reports(store: &dyn Store, data: &RunData) -> Vec<ReportDir> {
    data.graph
        .latest_by_instance()
        .into_values()
        .filter(|e| e.record.kind == REPORT_KIND)
        .filter(|e| matches!(e.record.status, ExecStatus::Succeeded | ExecStatus::Cached))
        .map(|e| {
            let mut dir = ReportDir {
                instance: e.record.instance.clone(),
                execution: e.record.id,
                rows: Vec::new(),
                figures: Vec::new(),
                problem: None,
            };
            let output = e.outputs.get("report");
            match output {
                None => dir.problem = Some("its `report` output is not recorded".into()),
                Some(hash) => {
                    if let Err(why) = read_dir(store, hash, &mut dir) {
                        dir.problem = Some(why);
                    }
                }
            }
            dir
        })
        .collect()
}

/// Reads `rows.json` and the figures (SVG where a figure has both) from a directory artifact.
fn read_dir(store: &dyn Store, hash: &ArtifactHash, dir: &mut ReportDir) -> Result<(), String> {
    let objects = store.objects();
    let manifest = objects
        .manifest(hash)
        .map_err(|e| format!("cannot read the report directory {}: {e}", hash.short()))?;
    let read = |h: &ArtifactHash, path: &str| {
        objects
            .path_of(h)
            .map_err(|e| e.to_string())
            .and_then(|p| std::fs::read(p).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot read {path} of the report directory: {e}"))
    };
    let mut figures: BTreeMap<String, (String, &'static str, &ArtifactHash)> = BTreeMap::new();
    for entry in &manifest.entries {
        let Some(h) = &entry.hash else { continue };
        if entry.path == "rows.json" {
            dir.rows = parse_rows(&read(h, "rows.json")?)?;
        }
        let (stem, mime) = match entry.path.rsplit_once('.') {
            Some((stem, "svg")) => (stem, "image/svg+xml"),
            Some((stem, "png")) => (stem, "image/png"),
            _ => continue,
        };
        let svg_there = figures.get(stem).is_some_and(|f| f.1 == "image/svg+xml");
        if !svg_there {
            figures.insert(stem.to_string(), (entry.path.clone(), mime, h));
        }
    }
    for (_, (path, mime, h)) in figures {
        let bytes = read(h, &path)?;
        dir.figures.push(Figure { path, mime, bytes });
    }
    Ok(())
}

/// The report stages' figures, SVG preferred.
pub fn figures_section(reports: &[ReportDir]) -> String {
    if reports.is_empty() {
        return "<p class=\"note\">This run has no report/table stage with a result, so there are no report figures.</p>".into();
    }
    let mut out = String::new();
    for r in reports {
        if r.figures.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<h3>{}</h3><div class=\"figures\">",
            instance_link(&r.instance)
        );
        for f in &r.figures {
            let _ = write!(
                out,
                "<figure class=\"figure\"><img alt=\"{0}\" src=\"{1}\"><figcaption>{0}</figcaption></figure>",
                esc(&f.path),
                figure_uri(f)
            );
        }
        out.push_str("</div>\n");
    }
    if out.is_empty() {
        return "<p class=\"note\">The run's report stage wrote no figures.</p>".into();
    }
    out
}

/// An SVG as percent-encoded text (smaller), anything else as base64.
fn figure_uri(f: &Figure) -> String {
    match std::str::from_utf8(&f.bytes) {
        Ok(text) if f.mime == "image/svg+xml" => text_data_uri(f.mime, text),
        _ => data_uri(f.mime, &f.bytes),
    }
}
