//! `report/table`: gathers evaluation results (and FIDs, and sample sets) of a sweep into
//! a Table 1 style report directory: `table.md`, `table.csv`, `rows.json` (every row with
//! its lineage and full metrics), and labelled figures, each as PNG and SVG: the metrics
//! against the augmentation ratio (`table1-accuracy`, `table1-f1`, `fid`), sample grids
//! with class names (`grid-<instance>`), `fig3` (the `pools` side by side by class, Fig. 3)
//! and the training loss of the bound models (`loss`). Each row is named by its evaluation: the model
//! `variant` (evaluate's parameter; `stylegan2` for the StyleGAN2 rows) and the method and
//! ratio of the selection it was trained on (evaluate's `selection` input; the
//! producer's matrix coordinates when it has none). An FID joins the row whose
//! coordinates it shares, of the same generator ([`fid_of`]).

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, optional, range};
use crate::artifact::ImageSet;
use crate::report::curves::{loss_chart, read_history};
use crate::report::figures::{any_fid, ratio_chart, Metric};
use crate::report::grid::{write_class_grid, write_pool_figure, Pool};
use crate::report::paper::{generator_of_variant, STYLEGAN2};
use crate::report::results::{read, Evaluation, FidResult, EVALUATION_FORMAT, FID_FORMAT};
use crate::report::table::{csv, markdown, settings, sort_rows, PaperColumns, Row};
use histodiff_engine::protocol::InputArtifact;
use histodiff_engine::stage::{StageContext, StageError};
use histodiff_plot::LineChart;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

choice!(PaperColumns { "none" => None, "crc" => Crc });

kind! {
    /// Table 1 style report: Markdown, CSV, lineage of each row, and labelled PNG/SVG
    /// figures: accuracy, F1 and FID against ratio, sample grids with class names, Fig. 3,
    /// loss curves
    ReportTable("report/table", version: 5) -> [report] {
        /// report heading
        title: String = default("HistoDiffusion: synthetic augmentation results"),
        /// the paper data set this pipeline's data is (`crc`: NCT-CRC-HE-100K →
        /// CRC-VAL-HE-7K); only then are the paper's numbers printed beside the measured ones
        paper: PaperColumns = default(PaperColumns::None),
        /// images per class in each sample grid
        grid_per_class: usize = range(1..=64).default(8),
        /// a label for each set of `pools`, in order (e.g. [Real, HistoDiffusion, StyleGAN2]);
        /// default: the producing instances' names
        pool_labels: Option<Vec<String>> = optional(),
        /// images per class of each pool in fig3 (Fig. 3)
        fig3_per_class: usize = range(1..=16).default(4),
    }
    inputs {
        /// evaluation results (histodiffusion/evaluate), e.g. evaluate[*]
        results: Many,
        /// FID results (histodiffusion/fid), joined to results by matrix coordinates
        fid: Any,
        /// labeled image sets to draw as sample grids
        samples: Any,
        /// trained models whose `history.csv` loss curves to plot (train-classifier's
        /// `model`)
        models: Any,
        /// labeled image sets drawn side by side by class into fig3.png/.svg (Fig. 3), e.g.
        /// [fewshot, pool, gan_pool]
        pools: Any,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let out = ctx.output_path("report");
    std::fs::create_dir_all(&out)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", out.display())))?;
    let fids: Vec<(&InputArtifact, FidResult)> = ctx
        .inputs("fid")
        .iter()
        .map(|a| {
            Ok((
                a,
                read::<FidResult>(&artifact_file(a, "fid.json"), FID_FORMAT).map_err(invalid)?,
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
    let (title, paper) = (p.title, p.paper);
    write(&out.join("table.csv"), &csv(&rows, paper))?;
    let lineage: Vec<Value> = rows.iter().map(|r| serde_json::json!({
        "setting": r.label(), "variant": r.variant, "filled": r.filled, "producer": r.producer, "artifact": r.hash, "evaluation": r.evaluation, "fid": r.fid, "fid_producer": r.fid_producer,
    })).collect();
    write(
        &out.join("rows.json"),
        &serde_json::to_string_pretty(&lineage).expect("json"),
    )?;
    let charts = ratio_figures(&rows, &out)?;
    let fig3 = pool_figure(ctx, (p.pool_labels, p.fig3_per_class), &out)?;
    let grids = sample_grids(ctx, p.grid_per_class, &out)?;
    let curves = loss_curves(ctx, &out)?;
    let md = markdown(&title, &rows, paper) + &charts + &fig3 + &grids + &curves;
    write(&out.join("table.md"), &md)?;
    ctx.log(format!("report with {} rows written", rows.len()));
    Ok(())
}

/// The figures of Table 1 against the ratio (`table1-accuracy`, `table1-f1` and, where an
/// FID was measured, `fid`) and their Markdown section.
fn ratio_figures(rows: &[Row], out: &Path) -> Result<String, StageError> {
    let all = settings(rows);
    let mut md = String::from(
        "\n## Figures against the augmentation ratio\n\n\
         One line per generator and selection method: the mean over seeds at each ratio, with \
         the seeds' sample standard deviation as error bars where a setting has several runs; \
         each baseline (real images only) is a flat line. Each figure is also written as SVG.\n\n",
    );
    let mut figures = vec![
        ("table1-accuracy", Metric::Accuracy),
        ("table1-f1", Metric::F1),
    ];
    if any_fid(&all) {
        figures.push(("fid", Metric::Fid));
    }
    for (stem, metric) in figures {
        let chart = ratio_chart(&all, metric);
        write_chart(&chart, &out.join(stem))?;
        md += &format!("![{}]({stem}.png)\n\n", chart.title);
    }
    Ok(md)
}

/// Writes a chart as `<stem>.png` and `<stem>.svg`: 800×450 px, or 1000×600 with more
/// than ten lines (their legend rows and names need the room).
fn write_chart(chart: &LineChart, stem: &Path) -> Result<(), StageError> {
    let (width, height) = if chart.series.len() > 10 {
        (1000, 600)
    } else {
        (800, 450)
    };
    chart
        .write(stem, width, height)
        .map_err(|e| StageError::Invalid(format!("figure {}: {e}", stem.display())))
}

/// A labelled sample grid (`grid-<instance>.png`/`.svg`) of every `samples` set, rows
/// named by class; returns their Markdown section, empty without samples.
fn sample_grids(
    ctx: &mut StageContext,
    per_class: usize,
    out: &Path,
) -> Result<String, StageError> {
    let mut md = String::new();
    for a in ctx.inputs("samples").to_vec() {
        let set = ImageSet::open(&a.path).map_err(invalid)?;
        let stem = format!("grid-{}", file_safe(&a.producer));
        let title = format!("Samples of {}", a.producer);
        write_class_grid(&set, per_class, 2, &title, &out.join(&stem))
            .map_err(StageError::Invalid)?;
        md += &format!("![{title}]({stem}.png)\n\n");
        ctx.log(format!("sample grid {stem}.png/.svg from {}", a.producer));
    }
    if md.is_empty() {
        return Ok(md);
    }
    Ok(format!(
        "\n## Sample grids\n\nThe first {per_class} images of each class, one row per class.\n\n{md}"
    ))
}

/// The `pool_labels` parameter checked against the `pools` slot: one label per set, in
/// order; the producers' names without it.
fn pool_labels(
    given: Option<Vec<String>>,
    pools: &[InputArtifact],
) -> Result<Vec<String>, StageError> {
    match given {
        Some(l) if pools.is_empty() && !l.is_empty() => Err(StageError::Invalid(format!(
            "parameter `pool_labels` names {} pools but the `pools` slot is empty",
            l.len()
        ))),
        Some(l) if !pools.is_empty() && l.len() != pools.len() => Err(StageError::Invalid(format!(
            "parameter `pool_labels` has {} labels but the `pools` slot has {} image sets; give one label per set, in order",
            l.len(),
            pools.len()
        ))),
        Some(l) => Ok(l),
        None => Ok(pools.iter().map(|a| a.producer.clone()).collect()),
    }
}

/// Draws the `pools` side by side into `fig3.png`/`.svg` (the paper's Fig. 3), each
/// block labelled with its pool label and each column with its class, and returns its
/// Markdown section; empty without pools.
fn pool_figure(
    ctx: &mut StageContext,
    (labels, per_class): (Option<Vec<String>>, usize),
    out: &Path,
) -> Result<String, StageError> {
    let inputs = ctx.inputs("pools").to_vec();
    let labels = pool_labels(labels, &inputs)?;
    if inputs.is_empty() {
        return Ok(String::new());
    }
    let pools = inputs
        .iter()
        .zip(labels)
        .map(|(a, label)| {
            Ok(Pool {
                name: a.producer.clone(),
                label,
                set: ImageSet::open(&a.path).map_err(invalid)?,
            })
        })
        .collect::<Result<Vec<_>, StageError>>()?;
    let fig =
        write_pool_figure(&pools, per_class, 2, &out.join("fig3")).map_err(StageError::Invalid)?;
    let mut md = String::from(
        "\n## Samples side by side (fig3.png)\n\n![Fig. 3](fig3.png)\n\n\
         From top to bottom one block of rows per image set, named on its left; one column per \
         class, named on top.\n\n| block | image set | images per class |\n|---|---|---|\n",
    );
    for (pool, drawn) in pools.iter().zip(&fig.drawn) {
        let counts = if drawn.iter().all(|&n| n == per_class) {
            per_class.to_string()
        } else {
            let each: Vec<String> = drawn.iter().map(usize::to_string).collect();
            each.join("/")
        };
        md += &format!("| {} | {} | {counts} |\n", pool.label, pool.name);
    }
    md += &format!("\nColumns, left to right: {}.\n", fig.classes.join(", "));
    ctx.log(format!(
        "fig3.png/.svg: {} pools × {} classes, {}×{} px",
        pools.len(),
        fig.classes.len(),
        fig.width,
        fig.height
    ));
    Ok(md)
}

/// Plots the `history.csv` of every bound model into `loss.png`/`.svg` and writes the
/// points to `curves.csv`; returns the Markdown section (the figure and each model's
/// steps and final loss), empty without models.
fn loss_curves(ctx: &mut StageContext, out: &Path) -> Result<String, StageError> {
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
    let chart = loss_chart(&series);
    write_chart(&chart, &out.join("loss"))?;
    let mut csv = String::from("series,step,loss\n");
    let mut md = String::from(
        "\n## Training loss (loss.png)\n\n![Training loss](loss.png)\n\n\
         | model | steps | final loss |\n|---|---|---|\n",
    );
    for (name, points) in &series {
        points
            .iter()
            .for_each(|(x, y)| csv += &format!("{name},{x},{y}\n"));
        let last = points.last().map_or("–".into(), |p| format!("{:.4}", p.1));
        md += &format!("| {name} | {} | {last} |\n", points.len());
    }
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
