//! `report/table`: gathers evaluation results (and FIDs, and sample sets) of a sweep into
//! a Table 1 style report directory: `table.md`, `table.csv`, `rows.json` (every row with
//! its lineage and full metrics), `grid-<instance>.png` sample grids and `fig3.png` (the
//! `pools` side by side by class, Fig. 3). Each row is named by its evaluation: the model
//! `variant` (evaluate's parameter; `stylegan2` for the StyleGAN2 rows) and the method and
//! ratio of the selection it was trained on (evaluate's `selection` input; the
//! producer's matrix coordinates when it has none). An FID joins the row whose
//! coordinates it shares, of the same generator ([`fid_of`]).

use super::schema::{int, invalid, list, param, slot, string_list, usize_param};
use crate::artifact::ImageSet;
use crate::report::curves::{bounds, read_history, write_loss_plot, PALETTE};
use crate::report::grid::{write_class_grid, write_pool_figure};
use crate::report::paper::{generator_of_variant, STYLEGAN2};
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
            version: 4,
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
                param(
                    "pool_labels",
                    list(ParamType::String),
                    Some(Value::Null),
                    "a label for each set of `pools`, in order (e.g. [Real, HistoDiffusion, StyleGAN2]); default: the producing instances' names",
                ),
                param(
                    "fig3_per_class",
                    int(Some(1), Some(16)),
                    Some(4.into()),
                    "images per class of each pool in fig3.png",
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
                slot(
                    "pools",
                    false,
                    true,
                    "labeled image sets drawn side by side by class into fig3.png (Fig. 3), e.g. [fewshot, pool, gan_pool]",
                ),
            ],
            outputs: vec!["report".into()],
            resumable: false,
            doc: "Table 1 style report: Markdown, CSV, FID against ratio, sample grids, Fig. 3, loss curves, lineage of each row".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let out = ctx.output_path("report");
        std::fs::create_dir_all(&out)
            .map_err(|e| StageError::Invalid(format!("{}: {e}", out.display())))?;
        let fids: Vec<(&InputArtifact, FidResult)> = ctx
            .inputs("fid")
            .iter()
            .map(|a| {
                Ok((
                    a,
                    read::<FidResult>(&artifact_file(a, "fid.json"), FID_FORMAT)
                        .map_err(invalid)?,
                ))
            })
            .collect::<Result<_, StageError>>()?;
        let mut rows = Vec::new();
        for a in ctx.inputs("results") {
            let evaluation: Evaluation =
                read(&artifact_file(a, "evaluation.json"), EVALUATION_FORMAT).map_err(invalid)?;
            let mut row = row_of(a, evaluation);
            let generator = row_generator(a, &row.variant)?;
            if let Some((producer, fid)) = fid_of(a, &row, &generator, &fids)? {
                row.fid = Some(fid.clone());
                row.fid_producer = Some(producer.to_string());
            }
            rows.push(row);
        }
        sort_rows(&mut rows);
        let title = ctx.param_str("title")?.to_string();
        let paper = paper_columns(ctx)?;
        write(&out.join("table.csv"), &csv(&rows, paper))?;
        let lineage: Vec<Value> = rows.iter().map(|r| serde_json::json!({
            "setting": r.label(), "variant": r.variant, "filled": r.filled, "producer": r.producer, "artifact": r.hash, "evaluation": r.evaluation, "fid": r.fid, "fid_producer": r.fid_producer,
        })).collect();
        write(
            &out.join("rows.json"),
            &serde_json::to_string_pretty(&lineage).expect("json"),
        )?;
        let curves = loss_curves(ctx, &out)?;
        let fig3 = pool_figure(ctx, &out)?;
        let md = markdown(&title, &rows, paper) + &fig3 + &curves;
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

/// Draws the `pools` side by side into `fig3.png` (the paper's Fig. 3) and returns its
/// Markdown legend; empty without pools. The crate renders no text, so the pool labels and
/// class names are in the legend: each pool's block is marked by a coloured stripe.
fn pool_figure(ctx: &mut StageContext, out: &std::path::Path) -> Result<String, StageError> {
    let pools = ctx.inputs("pools").to_vec();
    let labels = string_list(ctx, "pool_labels")?;
    if pools.is_empty() {
        return match labels {
            Some(l) if !l.is_empty() => Err(StageError::Invalid(format!(
                "parameter `pool_labels` names {} pools but the `pools` slot is empty",
                l.len()
            ))),
            _ => Ok(String::new()),
        };
    }
    let labels = match labels {
        Some(l) if l.len() != pools.len() => {
            return Err(StageError::Invalid(format!(
                "parameter `pool_labels` has {} labels but the `pools` slot has {} image sets; give one label per set, in order",
                l.len(),
                pools.len()
            )))
        }
        Some(l) => l,
        None => pools.iter().map(|a| a.producer.clone()).collect(),
    };
    let sets = pools
        .iter()
        .map(|a| {
            Ok((
                a.producer.clone(),
                ImageSet::open(&a.path).map_err(invalid)?,
            ))
        })
        .collect::<Result<Vec<_>, StageError>>()?;
    let per_class = usize_param(ctx, "fig3_per_class")?;
    let colours: Vec<[u8; 3]> = PALETTE.iter().map(|p| p.1).collect();
    let fig = write_pool_figure(&sets, per_class, 2, &colours, &out.join("fig3.png"))
        .map_err(StageError::Invalid)?;
    let mut md = String::from(
        "\n## Samples side by side (fig3.png)\n\n![Fig. 3](fig3.png)\n\n\
         The figure has no text (the crate renders none): from top to bottom one block of rows per \
         image set, marked by the coloured stripe on its left; one column per class.\n\n\
         | stripe | block | image set | images per class |\n|---|---|---|---|\n",
    );
    for (k, (label, a)) in labels.iter().zip(&pools).enumerate() {
        let drawn = &fig.drawn[k];
        let counts = if drawn.iter().all(|&n| n == per_class) {
            per_class.to_string()
        } else {
            drawn
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("/")
        };
        md += &format!(
            "| {} | {label} | {} | {counts} |\n",
            PALETTE[k % PALETTE.len()].0,
            a.producer
        );
    }
    md += &format!("\nColumns, left to right: {}.\n", fig.classes.join(", "));
    ctx.log(format!(
        "fig3.png: {} pools × {} classes, {}×{} px",
        pools.len(),
        fig.classes.len(),
        fig.width,
        fig.height
    ));
    Ok(md)
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

/// The FID of an evaluation's row, with the instance that produced it. An FID joins a row
/// when
/// - the row used synthetic images (a baseline has no FID);
/// - both instances agree on every matrix axis they both have and share at least one
///   ([`shares_coords`]), so `seed`, `method`, `ratio` and `generator` must match where
///   both carry them;
/// - its generator is the row's: the row's is its `generator` coordinate or, without one,
///   the generator of its variant (`stylegan2` for variant `stylegan2`, else
///   `histodiffusion`); an FID with a `generator` coordinate joins only rows of that
///   generator, and one without (a pipeline with no `generator` axis) any row.
///
/// Where several FIDs qualify, those whose `generator` coordinate names the row's
/// generator win over those without one; if that still leaves more than one, the join is
/// ambiguous and is refused, naming them (give each branch's select a `generator` axis).
fn fid_of<'a>(
    a: &InputArtifact,
    row: &Row,
    generator: &str,
    fids: &'a [(&'a InputArtifact, FidResult)],
) -> Result<Option<(&'a str, &'a FidResult)>, StageError> {
    if row.method == "none" {
        return Ok(None);
    }
    let candidates: Vec<(bool, &InputArtifact, &FidResult)> = fids
        .iter()
        .filter(|(f, _)| shares_coords(&f.coords, &a.coords))
        .filter_map(|(f, r)| match coord_text(&f.coords, "generator") {
            Some(g) if g == generator => Some((true, *f, r)),
            Some(_) => None,
            None => Some((false, *f, r)),
        })
        .collect();
    let explicit = candidates.iter().any(|c| c.0);
    let best: Vec<_> = candidates.iter().filter(|c| c.0 == explicit).collect();
    match best.as_slice() {
        [] => Ok(None),
        [(_, f, r)] => Ok(Some((f.producer.as_str(), r))),
        many => Err(StageError::Invalid(format!(
            "evaluation `{}` ({generator}) matches {} FID results by matrix coordinates ({}); \
             give each generator's select stage a `generator` matrix axis (e.g. generator: [stylegan2]) \
             so that each FID joins one row",
            a.producer,
            many.len(),
            many.iter()
                .map(|c| format!("`{}`", c.1.producer))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The generator of an evaluation: its `generator` coordinate, else its variant's. A
/// `stylegan2` coordinate on a non-`stylegan2` variant (or the reverse) is refused: the
/// row would be labelled and compared with the paper as the other generator.
fn row_generator(a: &InputArtifact, variant: &str) -> Result<String, StageError> {
    match coord_text(&a.coords, "generator") {
        Some(g) if (g == STYLEGAN2) != (variant == STYLEGAN2) => Err(StageError::Invalid(format!(
            "evaluation `{}` has matrix coordinate generator={g} but variant `{variant}`; \
             StyleGAN2's evaluate stages need `variant: stylegan2`, and only theirs",
            a.producer
        ))),
        Some(g) => Ok(g),
        None => Ok(generator_of_variant(variant).to_string()),
    }
}

/// A coordinate as text (a string's value without quotes).
fn coord_text(coords: &BTreeMap<String, Value>, axis: &str) -> Option<String> {
    coords.get(axis).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
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
fn row_of(a: &InputArtifact, evaluation: Evaluation) -> Row {
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
        fid: None,
        fid_producer: None,
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
