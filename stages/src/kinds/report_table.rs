//! `report/table`: gathers evaluation results (and FIDs, and sample sets) of a sweep into
//! a Table 1 style report directory: `table.md`, `table.csv`, `rows.json` (every row with
//! its lineage and full metrics) and `grid-<instance>.png` sample grids. Each row is
//! named by its evaluation: the model `variant` (evaluate's parameter) and the method and
//! ratio of the selection it was trained on (evaluate's `selection` input; the
//! producer's matrix coordinates when it has none). An FID joins the row whose
//! coordinates it shares.

use super::schema::{int, invalid, param, slot, usize_param};
use crate::artifact::ImageSet;
use crate::report::curves::{bounds, read_history, write_loss_plot, PALETTE};
use crate::report::grid::write_class_grid;
use crate::report::results::{read, Evaluation, FidResult, EVALUATION_FORMAT, FID_FORMAT};
use crate::report::table::{csv, markdown, sort_rows, PaperColumns, Row};
use histodiff_engine::protocol::InputArtifact;
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use std::collections::BTreeMap;

pub struct ReportTable;

impl Stage for ReportTable {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "report/table".into(),
            version: 3,
            params: vec![
                param(
                    "title",
                    ParamType::String,
                    Some("HistoDiffusion: synthetic augmentation results".into()),
                    "report heading",
                ),
                param(
                    "paper",
                    ParamType::Enum {
                        values: vec!["none".into(), "crc".into()],
                    },
                    Some("none".into()),
                    "the paper data set this pipeline's data is (`crc`: NCT-CRC-HE-100K → CRC-VAL-HE-7K); only then are the paper's numbers printed beside the measured ones",
                ),
                param(
                    "grid_per_class",
                    int(Some(1), Some(64)),
                    Some(8.into()),
                    "images per class in each sample grid",
                ),
            ],
            inputs: vec![
                slot(
                    "results",
                    true,
                    true,
                    "evaluation results (histodiffusion/evaluate), e.g. evaluate[*]",
                ),
                slot(
                    "fid",
                    false,
                    true,
                    "FID results (histodiffusion/fid), joined to results by matrix coordinates",
                ),
                slot(
                    "samples",
                    false,
                    true,
                    "labeled image sets to draw as sample grids",
                ),
                slot(
                    "models",
                    false,
                    true,
                    "trained models whose `history.csv` loss curves to plot (train-classifier's `model`)",
                ),
            ],
            outputs: vec!["report".into()],
            resumable: false,
            doc: "Table 1 style report: Markdown, CSV, sample grids, loss curves, lineage of each row".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let out = ctx.output_path("report");
        std::fs::create_dir_all(&out)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", out.display())))?;
        let fids: Vec<(BTreeMap<String, Value>, FidResult)> = ctx
            .inputs("fid")
            .iter()
            .map(|a| {
                Ok((
                    a.coords.clone(),
                    read::<FidResult>(&artifact_file(a, "fid.json"), FID_FORMAT)
                        .map_err(invalid)?,
                ))
            })
            .collect::<Result<_, StageError>>()?;
        let mut rows = Vec::new();
        for a in ctx.inputs("results") {
            let evaluation: Evaluation =
                read(&artifact_file(a, "evaluation.json"), EVALUATION_FORMAT).map_err(invalid)?;
            let fid = fids
                .iter()
                .find(|(c, _)| shares_coords(c, &a.coords))
                .map(|(_, f)| f.clone());
            rows.push(row_of(a, evaluation, fid));
        }
        sort_rows(&mut rows);
        let title = ctx.param_str("title")?.to_string();
        let paper = paper_columns(ctx)?;
        write(&out.join("table.csv"), &csv(&rows, paper))?;
        let lineage: Vec<Value> = rows.iter().map(|r| serde_json::json!({
            "setting": r.label(), "variant": r.variant, "filled": r.filled, "producer": r.producer, "artifact": r.hash, "evaluation": r.evaluation, "fid": r.fid,
        })).collect();
        write(
            &out.join("rows.json"),
            &serde_json::to_string_pretty(&lineage).expect("json"),
        )?;
        let curves = loss_curves(ctx, &out)?;
        let md = markdown(&title, &rows, paper) + &curves;
        write(&out.join("table.md"), &md)?;
        let per_class = usize_param(ctx, "grid_per_class")?;
        for a in ctx.inputs("samples").to_vec() {
            let set = ImageSet::open(&a.path).map_err(invalid)?;
            let name = format!("grid-{}.png", file_safe(&a.producer));
            write_class_grid(&set, per_class, 2, &out.join(&name)).map_err(invalid)?;
            ctx.log(format!("sample grid {name} from {}", a.producer));
        }
        ctx.log(format!("report with {} rows written", rows.len()));
        Ok(())
    }
}

/// The `paper` parameter: which paper data set, if any, the rows may be compared with.
fn paper_columns(ctx: &StageContext) -> Result<PaperColumns, StageError> {
    match ctx.param_str("paper")? {
        "crc" => Ok(PaperColumns::Crc),
        "none" => Ok(PaperColumns::None),
        other => Err(StageError::Invalid(format!(
            "parameter `paper` must be `none` or `crc`, got `{other}`"
        ))),
    }
}

/// Plots the `history.csv` of every bound model into `loss.png` and `curves.csv`; returns
/// the Markdown legend (colours and axis ranges), empty without models.
fn loss_curves(ctx: &mut StageContext, out: &std::path::Path) -> Result<String, StageError> {
    let mut series = Vec::new();
    for a in ctx.inputs("models") {
        let path = artifact_file(a, "history.csv");
        series.push((
            a.producer.clone(),
            read_history(&path).map_err(StageError::Invalid)?,
        ));
    }
    if series.is_empty() {
        return Ok(String::new());
    }
    write_loss_plot(&series, 800, 450, &out.join("loss.png")).map_err(StageError::Invalid)?;
    let mut csv = String::from("series,step,loss\n");
    let mut md = String::from("\n## Training loss (loss.png)\n\n| colour | model | steps | final loss |\n|---|---|---|---|\n");
    for (k, (name, points)) in series.iter().enumerate() {
        points
            .iter()
            .for_each(|(x, y)| csv += &format!("{name},{x},{y}\n"));
        let last = points.last().map_or("–".into(), |p| format!("{:.4}", p.1));
        md += &format!(
            "| {} | {name} | {} | {last} |\n",
            PALETTE[k % PALETTE.len()].0,
            points.len()
        );
    }
    let ((x0, x1), (y0, y1)) = bounds(&series);
    md += &format!("\nx: step {x0} to {x1}; y: loss {y0:.4} to {y1:.4}.\n");
    write(&out.join("curves.csv"), &csv)?;
    Ok(md)
}

/// A result artifact is either the JSON file itself or a directory holding `name`.
fn artifact_file(a: &InputArtifact, name: &str) -> std::path::PathBuf {
    if a.path.is_dir() {
        a.path.join(name)
    } else {
        a.path.clone()
    }
}

/// True when the instances agree on every axis they both have and share at least one
/// (or neither has any), so a baseline never picks up a sweep member's FID.
fn shares_coords(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> bool {
    let shared = a.keys().filter(|k| b.contains_key(*k)).count();
    let agree = a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v));
    agree && (shared > 0 || (a.is_empty() && b.is_empty()))
}

/// The row of one evaluation. Method and ratio come from the selection the evaluation
/// records (what select actually did); without one, from the matrix coordinates, where a
/// missing method means the baseline.
fn row_of(a: &InputArtifact, evaluation: Evaluation, fid: Option<FidResult>) -> Row {
    let (method, ratio) = match &evaluation.selection {
        Some(s) => (s.method.clone(), s.ratio),
        None => method_from_coords(&a.coords),
    };
    Row {
        variant: evaluation.variant.clone(),
        method,
        ratio,
        filled: evaluation.selection.as_ref().map(|s| s.filled_total),
        evaluation,
        fid,
        producer: a.producer.clone(),
        hash: a.hash.0.clone(),
    }
}

fn method_from_coords(coords: &BTreeMap<String, Value>) -> (String, f64) {
    let ratio = coords.get("ratio").and_then(Value::as_f64).unwrap_or(0.0);
    let method = match coords.get("method").and_then(Value::as_str) {
        Some("selective") => "centroid",
        Some(m) => m,
        None if ratio > 0.0 => "centroid",
        None => "none",
    };
    (method.to_string(), ratio)
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write(path: &std::path::Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))
}
