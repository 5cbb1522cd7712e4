//! `histodiffusion/select` as a kind: quotas are checked against the pool before any
//! feature is extracted, and what `shortfall: fill` let in travels from select's
//! `selection` output through `histodiffusion/evaluate` into the report's `filled` column.

mod common;

use common::{run_stage, run_stage_with, temp_dir, Ran};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::InputArtifact;
use histodiff_stages::artifact::classifier::{save, ClassifierConfig};
use histodiff_stages::artifact::{ImageSet, ImageSetWriter};
use histodiff_stages::kinds::evaluate::Evaluate;
use histodiff_stages::kinds::report_table::ReportTable;
use histodiff_stages::kinds::select::Select;
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::report::results::{read, write, Evaluation, Predictions, SelectionSummary};
use serde_json::json;
use std::path::{Path, PathBuf};

const CLASSES: [&str; 2] = ["ADI", "TUM"];
const SIZE: usize = 8;

/// A labeled image set of uniform images: one `(grey level, label)` per image.
fn image_set(dir: &Path, images: &[(u8, i64)]) -> PathBuf {
    let classes = CLASSES.iter().map(|c| c.to_string()).collect();
    let mut w = ImageSetWriter::create(dir, classes, SIZE, 4).unwrap();
    for (k, &(grey, label)) in images.iter().enumerate() {
        w.push_chw(&[grey; 3 * SIZE * SIZE], Some(label), format!("img{k}.png"))
            .unwrap();
    }
    w.finish().unwrap();
    dir.to_path_buf()
}

/// A `train-classifier` model artifact with random weights: its features differ between
/// two different uniform images, which is all the centroid rule needs here.
fn random_classifier(dir: &Path) -> PathBuf {
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let config = VitConfig::tiny(CLASSES.len() as i64);
    let _model = VisionTransformer::new(&vs.root(), config.clone()).unwrap();
    let classes = CLASSES.iter().map(|c| c.to_string()).collect();
    save(
        dir,
        &ClassifierConfig::from_vit("vit_tiny", classes, &config),
        &vs,
    )
    .unwrap();
    dir.to_path_buf()
}

fn select(dir: &Path, name: &str, params: serde_json::Value, inputs: &[(&str, PathBuf)]) -> Ran {
    let inputs: Vec<(&str, Vec<PathBuf>)> =
        inputs.iter().map(|(s, p)| (*s, vec![p.clone()])).collect();
    run_stage(&Select, dir, name, params, &inputs, dir)
}

#[test]
fn a_pool_too_small_for_the_quotas_fails_before_any_feature_is_extracted() {
    let tmp = temp_dir("select-quota");
    let dir = tmp.path();
    // 2 ADI and 3 TUM real images; the pool has 4 of each: ratio 1.0 fits, 2.0 does not.
    let real = image_set(
        &dir.join("real"),
        &[(10, 0), (10, 0), (200, 1), (200, 1), (200, 1)],
    );
    let pool = image_set(
        &dir.join("pool"),
        &[
            (10, 0),
            (10, 0),
            (10, 0),
            (10, 0),
            (200, 1),
            (200, 1),
            (200, 1),
            (200, 1),
        ],
    );
    // No classifier exists: reaching feature extraction would fail on `classifier.json`.
    let missing_model = dir.join("no-such-model");
    let ran = select(
        dir,
        "too-small",
        json!({"method": "centroid", "ratio": 2.0, "shortfall": "fill"}),
        &[
            ("pool", pool.clone()),
            ("real", real.clone()),
            ("features", missing_model),
        ],
    );
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.contains("ratio 2.0 needs 6 TUM images but the pool has 4")
            && err.contains("set the pool's per_class (stage `test`) to at least 6")
            && err.contains("nearest-centroid filter"),
        "{err}"
    );
    assert!(
        !err.contains("classifier.json"),
        "the check ran after feature extraction: {err}"
    );
    assert!(!err.contains("ADI"), "ADI's quota (4) fits the pool: {err}");

    let random = select(
        dir,
        "too-small-random",
        json!({"method": "random", "ratio": 2.0}),
        &[("pool", pool), ("real", real)],
    );
    let err = random.result.unwrap_err().to_string();
    assert!(
        err.contains("6 TUM images") && !err.contains("nearest-centroid"),
        "{err}"
    );
}

#[test]
fn images_filled_past_the_filter_are_counted_from_select_to_the_report() {
    let tmp = temp_dir("select-filled");
    let dir = tmp.path();
    // Real ADI images are all grey 40 and TUM all grey 200, so each centroid is the
    // feature of that one image. One pool image generated as ADI looks exactly like TUM:
    // the filter rejects it, and at ratio 1.0 `fill` must take it to meet ADI's quota of 3.
    let (adi, tum) = (40, 200);
    let real = image_set(
        &dir.join("real"),
        &[(adi, 0), (adi, 0), (adi, 0), (tum, 1), (tum, 1), (tum, 1)],
    );
    let pool = image_set(
        &dir.join("pool"),
        &[(adi, 0), (tum, 0), (adi, 0), (tum, 1), (tum, 1), (tum, 1)],
    );
    let model = random_classifier(&dir.join("model"));
    let ran = select(
        dir,
        "select",
        json!({"method": "centroid", "ratio": 1.0, "shortfall": "fill"}),
        &[("pool", pool), ("real", real), ("features", model)],
    );
    ran.result.as_ref().unwrap();
    assert_eq!(
        ImageSet::open(&ran.out("images"))
            .unwrap()
            .manifest()
            .class_counts(),
        vec![3, 3]
    );
    let summary: SelectionSummary = read(&ran.out("selection"), "histodiff/selection").unwrap();
    assert_eq!((summary.method.as_str(), summary.ratio), ("centroid", 1.0));
    assert_eq!((summary.pool, summary.quotas), (vec![3, 3], vec![3, 3]));
    assert_eq!(
        (summary.filled, summary.filled_total, summary.count),
        (vec![1, 0], 1, 6)
    );

    // A classifier trained on the 6 selected images, evaluated with its selection.
    let predictions = dir.join("predictions.json");
    write(
        &predictions,
        &Predictions {
            format: "histodiff/predictions".into(),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            truth: vec![0, 0, 1, 1],
            predicted: vec![0, 1, 1, 1],
            sources: vec![],
            train_real: Some(6),
            train_synthetic: Some(6),
        },
    )
    .unwrap();
    let eval = run_stage(
        &Evaluate,
        dir,
        "evaluate",
        json!({}),
        &[
            ("predictions", vec![predictions.clone()]),
            ("selection", vec![ran.out("selection")]),
        ],
        dir,
    );
    eval.result.as_ref().unwrap();
    let evaluation: Evaluation = read(&eval.out("evaluation"), "histodiff/evaluation").unwrap();
    assert_eq!(
        evaluation.selection.as_ref().map(|s| s.filled_total),
        Some(1)
    );

    let art = |path: PathBuf, producer: &str| InputArtifact {
        hash: ArtifactHash("ef".repeat(32)),
        path,
        producer: producer.into(),
        coords: Default::default(),
    };
    // No matrix coordinates: the row's method and ratio come from the recorded selection.
    let report = run_stage_with(
        &ReportTable,
        dir,
        "report",
        json!({}),
        vec![("results", vec![art(eval.out("evaluation"), "evaluate")])],
    );
    report.result.as_ref().unwrap();
    let md = std::fs::read_to_string(report.out("report").join("table.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.starts_with("| selective 100 %"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains("| 4 | 1 | evaluate @ efefefefefef |"), "{md}");
    assert!(md.contains("Rows with filled > 0"), "{md}");
}

#[test]
fn evaluate_refuses_a_selection_of_another_classifier() {
    let tmp = temp_dir("evaluate-wiring");
    let dir = tmp.path();
    let selection = dir.join("selection.json");
    write(
        &selection,
        &SelectionSummary {
            format: "histodiff/selection".into(),
            method: "centroid".into(),
            ratio: 2.0,
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            pool: vec![10, 10],
            quotas: vec![4, 6],
            filled: vec![0, 0],
            filled_total: 0,
            count: 10,
        },
    )
    .unwrap();
    let predictions = dir.join("predictions.json");
    write(
        &predictions,
        &Predictions {
            format: "histodiff/predictions".into(),
            classes: CLASSES.iter().map(|c| c.to_string()).collect(),
            truth: vec![0, 1],
            predicted: vec![0, 1],
            sources: vec![],
            train_real: Some(5),
            train_synthetic: Some(5),
        },
    )
    .unwrap();
    let ran = run_stage(
        &Evaluate,
        dir,
        "evaluate",
        json!({}),
        &[
            ("predictions", vec![predictions]),
            ("selection", vec![selection]),
        ],
        dir,
    );
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.contains("`selection`")
            && err.contains("chose 10 images")
            && err.contains("trained on 5 synthetic"),
        "{err}"
    );
}
