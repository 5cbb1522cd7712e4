//! `report/table` on evaluation and FID files: rows named from matrix coordinates,
//! paper numbers alongside, FID joined by coordinates, lineage, CSV, and the labelled
//! figures (PNG and SVG): sample grids, Fig. 3, loss curves, metrics against the ratio.

mod common;
mod figure_checks;

use common::{run_stage, temp_dir};
use figure_checks::{assert_svg_says, embedded_tiles, png, svg_texts};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::InputArtifact;
use histodiff_stages::artifact::ImageSetWriter;
use histodiff_stages::kinds::evaluate::evaluate;
use histodiff_stages::kinds::report_table::ReportTable;
use histodiff_stages::report::results::{write, Evaluation, FidResult, Predictions};
use serde_json::json;

/// The evaluation `histodiffusion/evaluate` writes for predictions whose confusion matrix
/// is `rows` (rows = truth).
fn evaluation_of(classes: &[&str], rows: Vec<Vec<u64>>) -> Evaluation {
    let (mut truth, mut predicted) = (Vec::new(), Vec::new());
    for (t, row) in rows.iter().enumerate() {
        for (p, &n) in row.iter().enumerate() {
            truth.extend(std::iter::repeat_n(t as i64, n as usize));
            predicted.extend(std::iter::repeat_n(p as i64, n as usize));
        }
    }
    let predictions = Predictions {
        format: "histodiff/predictions".into(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        truth,
        predicted,
        sources: Vec::new(),
        train_real: None,
        train_synthetic: None,
    };
    evaluate(&predictions).unwrap()
}

#[test]
fn metrics_from_a_confusion_matrix() {
    // 2 classes: truth 0 → 8 right, 2 wrong; truth 1 → 5 right, 0 wrong.
    let e = evaluation_of(&["A", "B"], vec![vec![8, 2], vec![0, 5]]);
    assert_eq!(e.confusion, vec![vec![8, 2], vec![0, 5]]);
    assert!((e.accuracy - 13.0 / 15.0).abs() < 1e-12);
    // Weighted sensitivity equals accuracy (SPEC §8.3).
    assert!((e.weighted.recall - e.accuracy).abs() < 1e-12);
    assert!((e.macro_avg.recall - (0.8 + 1.0) / 2.0).abs() < 1e-12);
    // Specificity of A = TN/(TN+FP) = 5/5; of B = 8/10.
    assert!((e.macro_avg.specificity - 0.9).abs() < 1e-12);
    let f1_b = 2.0 * (5.0 / 7.0) * 1.0 / (5.0 / 7.0 + 1.0);
    assert!((e.macro_avg.f1 - (2.0 * 0.8 / 1.8 + f1_b) / 2.0).abs() < 1e-12);
}

#[test]
fn report_rows_join_fid_and_paper_numbers() {
    let tmp = temp_dir("report");
    let dir = tmp.path();
    let eval = |name: &str, right: u64| {
        let path = dir.join(format!("{name}.json"));
        write(
            &path,
            &evaluation_of(&["A", "B"], vec![vec![right, 10 - right], vec![1, 9]]),
        )
        .unwrap();
        path
    };
    let fid_path = dir.join("fid.json");
    write(
        &fid_path,
        &FidResult {
            format: "histodiff/fid".into(),
            fid: Some(12.5),
            status: "computed".into(),
            n_real: 5,
            n_synthetic: 5,
        },
    )
    .unwrap();
    let nofid = dir.join("nofid.json");
    write(
        &nofid,
        &FidResult::not_computed("no Inception weights given"),
    )
    .unwrap();

    let samples = dir.join("samples");
    let mut w = ImageSetWriter::create(&samples, vec!["A".into(), "B".into()], 8, 10).unwrap();
    for k in 0..4 {
        w.push_chw(&[k as u8 * 60; 3 * 64], Some(k % 2), format!("s{k}"))
            .unwrap();
    }
    w.finish().unwrap();

    let base = eval("base", 7);
    let sel = eval("sel", 9);
    // Inputs with matrix coordinates, as the engine binds a gathered `evaluate[*]`.
    let art = |path: &std::path::Path, producer: &str, coords: serde_json::Value| InputArtifact {
        hash: ArtifactHash("ab".repeat(32)),
        path: path.to_path_buf(),
        producer: producer.into(),
        coords: serde_json::from_value(coords).unwrap(),
    };
    let ran = common::run_stage_with(
        &ReportTable,
        dir,
        "report2",
        json!({"grid_per_class": 8, "paper": "crc"}),
        vec![
            (
                "results",
                vec![
                    art(
                        &sel,
                        "evaluate[method=centroid,ratio=2.0]",
                        json!({"method": "centroid", "ratio": 2.0}),
                    ),
                    art(&base, "baseline", json!({})),
                ],
            ),
            (
                "fid",
                vec![
                    art(
                        &fid_path,
                        "fid[method=centroid,ratio=2.0]",
                        json!({"method": "centroid", "ratio": 2.0}),
                    ),
                    art(
                        &nofid,
                        "fid[method=random,ratio=0.5]",
                        json!({"method": "random", "ratio": 0.5}),
                    ),
                ],
            ),
            (
                "samples",
                vec![art(
                    &samples,
                    "select[method=centroid,ratio=2.0]",
                    json!({}),
                )],
            ),
        ],
    );
    ran.result.as_ref().unwrap();
    let md = std::fs::read_to_string(ran.out("report").join("table.md")).unwrap();
    let lines: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| baseline") || l.starts_with("| selective"))
        .collect();
    assert!(lines[0].starts_with("| baseline | – | 0.800"), "{md}");
    assert!(
        lines[0].contains("| 0.855 |"),
        "paper baseline accuracy alongside: {md}"
    );
    assert!(
        lines[1].starts_with("| selective 200 % | 12.500 | 0.900"),
        "{md}"
    );
    assert!(
        lines[1].contains("0.919") && lines[1].contains("4.583"),
        "{md}"
    );
    assert!(
        lines[1].contains("evaluate[method=centroid,ratio=2.0] @ abababababab"),
        "{md}"
    );
    let csv = std::fs::read_to_string(ran.out("report").join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(
        csv.lines()
            .nth(2)
            .unwrap()
            .starts_with("full,centroid,2,selective 200 %,12.500"),
        "{csv}"
    );
    // The sample grid: rows named by class, 8 columns of 8 px images 2 px apart.
    let grid = |ext: &str| {
        ran.out("report")
            .join(format!("grid-select_method_centroid_ratio_2.0_.{ext}"))
    };
    let tiles = embedded_tiles(&grid("svg"));
    assert_eq!(tiles.dimensions(), (2 + 8 * 10, 2 + 2 * 10));
    assert_eq!(
        tiles.get_pixel(2 + 10 + 3, 2 + 10 + 3).0,
        [180; 3],
        "B's second image (k = 3)"
    );
    assert_svg_says(
        &grid("svg"),
        &["Samples of select[method=centroid,ratio=2.0]", "A", "B"],
    );
    let picture = png(&grid("png"));
    assert!(picture.width() > tiles.width() && picture.height() > tiles.height());
    assert!(
        md.contains("![Samples of select[method=centroid,ratio=2.0]](grid-select_method_centroid_ratio_2.0_.png)"),
        "{md}"
    );
    // Accuracy, F1 and (one FID measured) FID against the ratio.
    let out = ran.out("report");
    for (stem, axis) in [
        ("table1-accuracy", "accuracy (test set)"),
        ("table1-f1", "F1 (support-weighted, test set)"),
        ("fid", "FID against the real images (lower is better)"),
    ] {
        assert_eq!(
            png(&out.join(format!("{stem}.png"))).dimensions(),
            (800, 450)
        );
        let legend: &[&str] = if stem == "fid" {
            &["HistoDiffusion selective"]
        } else {
            &["HistoDiffusion selective", "baseline (real images only)"]
        };
        assert_svg_says(&out.join(format!("{stem}.svg")), &[axis]);
        assert_svg_says(&out.join(format!("{stem}.svg")), legend);
        assert!(md.contains(&format!("]({stem}.png)")), "{stem}:\n{md}");
    }
}

#[test]
fn a_result_of_the_wrong_kind_is_named() {
    let tmp = temp_dir("report");
    let dir = tmp.path();
    let fid = dir.join("fid.json");
    write(&fid, &FidResult::not_computed("x")).unwrap();
    let ran = run_stage(
        &ReportTable,
        dir,
        "r",
        json!({}),
        &[("results", vec![fid.clone()])],
        dir,
    );
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.contains("fid.json") && err.contains("histodiff/evaluation"),
        "{err}"
    );
}

#[test]
fn evaluate_turns_predictions_into_global_metrics() {
    use histodiff_stages::kinds::evaluate::Evaluate;
    use histodiff_stages::report::results::{read, Predictions};
    let tmp = temp_dir("evaluate");
    let dir = tmp.path();
    let p = Predictions {
        format: "histodiff/predictions".into(),
        classes: vec!["A".into(), "B".into(), "C".into()],
        truth: vec![0, 0, 0, 1, 1, 2],
        predicted: vec![0, 0, 1, 1, 1, 0],
        sources: vec![],
        train_real: Some(30),
        train_synthetic: Some(60),
    };
    let path = dir.join("predictions.json");
    write(&path, &p).unwrap();
    let ran = run_stage(
        &Evaluate,
        dir,
        "eval",
        json!({}),
        &[("predictions", vec![path.clone()])],
        dir,
    );
    ran.result.as_ref().unwrap();
    let e: Evaluation = read(&ran.out("evaluation"), "histodiff/evaluation").unwrap();
    assert_eq!(
        e.confusion,
        vec![vec![2, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
    );
    assert!((e.accuracy - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!((e.train_real, e.train_synthetic), (Some(30), Some(60)));
    assert!(ran.events.iter().any(|ev| matches!(ev, histodiff_engine::protocol::Event::Metric { name, .. } if name == "accuracy")));

    let bad = Predictions {
        predicted: vec![0, 0, 1, 1, 1, 7],
        ..p
    };
    write(&path, &bad).unwrap();
    let ran = run_stage(
        &Evaluate,
        dir,
        "bad",
        json!({}),
        &[("predictions", vec![path])],
        dir,
    );
    let err = ran.result.unwrap_err().to_string();
    assert!(
        err.contains("predictions.json") && err.contains("label 7 at position 5"),
        "{err}"
    );
}

#[test]
fn loss_curves_are_plotted_with_a_legend() {
    let tmp = temp_dir("curves");
    let dir = tmp.path();
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (d, scale) in [(&a, 1.0), (&b, 2.0)] {
        std::fs::create_dir_all(d).unwrap();
        let lines: String = (1..=20)
            .map(|s| format!("{s},{}\n", scale / s as f64))
            .collect();
        std::fs::write(d.join("history.csv"), format!("step,loss\n{lines}")).unwrap();
    }
    let eval = dir.join("e.json");
    write(&eval, &evaluation_of(&["A"], vec![vec![3]])).unwrap();
    let art = |p: &std::path::Path, producer: &str| InputArtifact {
        hash: ArtifactHash("cd".repeat(32)),
        path: p.to_path_buf(),
        producer: producer.into(),
        coords: Default::default(),
    };
    let ran = common::run_stage_with(
        &ReportTable,
        dir,
        "report",
        json!({}),
        vec![
            ("results", vec![art(&eval, "base")]),
            ("models", vec![art(&a, "baseline"), art(&b, "augmented")]),
        ],
    );
    ran.result.as_ref().unwrap();
    let md = std::fs::read_to_string(ran.out("report").join("table.md")).unwrap();
    assert!(
        md.contains("| baseline | 20 | 0.0500 |")
            && md.contains("| augmented | 20 | 0.1000 |")
            && md.contains("![Training loss](loss.png)"),
        "{md}"
    );
    let loss = ran.out("report").join("loss.png");
    let picture = png(&loss);
    assert_eq!(picture.dimensions(), (800, 450));
    // Both lines are drawn, in the first two series colours.
    assert!(
        picture.pixels().any(|p| p.0 == [31, 119, 180])
            && picture.pixels().any(|p| p.0 == [255, 127, 14])
    );
    assert_svg_says(
        &loss.with_extension("svg"),
        &[
            "Training loss",
            "optimiser step",
            "training loss (cross-entropy)",
            "baseline",
            "augmented",
            "20",
        ],
    );
    let csv = std::fs::read_to_string(ran.out("report").join("curves.csv")).unwrap();
    assert_eq!(csv.lines().count(), 41);

    std::fs::write(a.join("history.csv"), "step,loss\n1,x\n").unwrap();
    let bad = common::run_stage_with(
        &ReportTable,
        dir,
        "bad",
        json!({}),
        vec![
            ("results", vec![art(&eval, "base")]),
            ("models", vec![art(&a, "baseline")]),
        ],
    );
    let err = bad.result.unwrap_err().to_string();
    assert!(
        err.contains("history.csv") && err.contains("line 2"),
        "{err}"
    );
}

/// Rows of the ablations carry their variant from evaluate's `variant` parameter, and
/// the report prints report/paper.rs's label and numbers for exactly that setting.
#[test]
fn report_rows_carry_the_paper_numbers_of_their_variant() {
    use histodiff_stages::kinds::evaluate::Evaluate;
    use histodiff_stages::report::paper::{label, lookup};
    let tmp = temp_dir("report-variants");
    let dir = tmp.path();
    let predictions = dir.join("predictions.json");
    write(
        &predictions,
        &Predictions {
            format: "histodiff/predictions".into(),
            classes: vec!["A".into(), "B".into()],
            truth: vec![0, 0, 1, 1],
            predicted: vec![0, 1, 1, 1],
            sources: vec![],
            train_real: None,
            train_synthetic: None,
        },
    )
    .unwrap();
    // (variant, method, ratio) of a full row, a no-finetune row and a no-pretrain row.
    let settings = [
        ("full", "centroid", 2.0),
        ("no-finetune", "centroid", 3.0),
        ("no-pretrain", "random", 0.5),
    ];
    let mut results = Vec::new();
    for (k, (variant, method, ratio)) in settings.iter().enumerate() {
        let ran = run_stage(
            &Evaluate,
            dir,
            &format!("evaluate-{k}"),
            json!({ "variant": variant }),
            &[("predictions", vec![predictions.clone()])],
            dir,
        );
        ran.result.as_ref().unwrap();
        results.push(InputArtifact {
            hash: ArtifactHash("12".repeat(32)),
            path: ran.out("evaluation"),
            producer: format!("evaluate-{k}"),
            coords: serde_json::from_value(json!({"method": method, "ratio": ratio})).unwrap(),
        });
    }
    let ran = common::run_stage_with(
        &ReportTable,
        dir,
        "report",
        json!({"paper": "crc"}),
        vec![("results", results)],
    );
    ran.result.as_ref().unwrap();
    let csv = std::fs::read_to_string(ran.out("report").join("table.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (variant, method, ratio) in settings {
        let paper = lookup(variant, method, ratio).unwrap();
        assert_eq!(paper.setting.variant, variant);
        let row: Vec<&str> = csv
            .lines()
            .find(|l| l.starts_with(&format!("{variant},{method},{ratio},")))
            .unwrap_or_else(|| panic!("no {variant} {method} {ratio} row: {csv}"))
            .split(',')
            .collect();
        assert_eq!(
            row[column("setting")],
            label(variant, method, ratio),
            "{csv}"
        );
        for (name, value) in [
            ("paper FID", paper.fid.unwrap()),
            ("paper Acc", paper.accuracy),
            ("paper F1", paper.f1),
            ("paper Sens", paper.sensitivity),
            ("paper Spec", paper.specificity),
        ] {
            assert_eq!(
                row[column(name)],
                format!("{value:.3}"),
                "{variant} {name}: {csv}"
            );
        }
        assert_eq!(row[column("filled")], "–", "no selection recorded: {csv}");
    }
    // The labels a reader sees, and supp. Table 1's numbers rather than the main table's.
    assert!(
        csv.contains(",no-finetune: selective 300 %,") && csv.contains(",21.682,"),
        "{csv}"
    );
    assert!(
        csv.contains(",no-pretrain: random 50 %,") && csv.contains(",5.687,"),
        "{csv}"
    );
}

/// On data other than the paper's (`paper: none`, the default) the report prints no
/// paper column: a number beside it would invite a comparison that means nothing.
#[test]
fn paper_numbers_only_where_the_data_is_the_papers() {
    let tmp = temp_dir("report-no-paper");
    let dir = tmp.path();
    let path = dir.join("eval.json");
    write(
        &path,
        &evaluation_of(&["A", "B"], vec![vec![7, 3], vec![1, 9]]),
    )
    .unwrap();
    let result = InputArtifact {
        hash: ArtifactHash("cd".repeat(32)),
        path,
        producer: "baseline".into(),
        coords: Default::default(),
    };
    let ran = common::run_stage_with(
        &ReportTable,
        dir,
        "report",
        json!({}),
        vec![("results", vec![result])],
    );
    ran.result.as_ref().unwrap();
    let out = ran.out("report");
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    let csv = std::fs::read_to_string(out.join("table.csv")).unwrap();
    assert!(
        !md.contains("paper Acc") && !csv.contains("paper Acc"),
        "{md}\n{csv}"
    );
    assert!(md.contains("| baseline | – | 0.800"), "{md}");
    assert!(md.contains("does not declare the paper's data"), "{md}");
}

/// Runs over a `seed` axis gather into one line per setting: mean ± sample std with n,
/// and a Δ against the baseline that is marked † when smaller than the spread.
#[test]
fn seeds_gather_into_mean_and_spread_per_setting() {
    let tmp = temp_dir("report-seeds");
    let dir = tmp.path();
    // Accuracy out of 20 test images per run.
    let runs = [
        ("baseline", json!({}), [14, 16, 18]), // 0.70, 0.80, 0.90
        (
            "evaluate[method=random,ratio=0.5]",
            json!({"method": "random", "ratio": 0.5}),
            [15, 17, 19], // 0.75 … 0.95: +0.05, inside the spread
        ),
        (
            "evaluate[method=centroid,ratio=2.0]",
            json!({"method": "centroid", "ratio": 2.0}),
            [20, 20, 20], // 1.0 each: +0.2, outside it
        ),
    ];
    let mut results = Vec::new();
    for (producer, coords, right) in runs {
        for (seed, r) in right.into_iter().enumerate() {
            let path = dir.join(format!("{producer}-{seed}.json"));
            write(
                &path,
                &evaluation_of(
                    &["A", "B"],
                    vec![vec![r / 2, 10 - r / 2], vec![10 - (r - r / 2), r - r / 2]],
                ),
            )
            .unwrap();
            let mut coords = coords.as_object().cloned().unwrap();
            coords.insert("seed".into(), json!(seed));
            results.push(InputArtifact {
                hash: ArtifactHash(format!("{seed:02}").repeat(32)),
                path,
                producer: format!("{producer}[seed={seed}]"),
                coords: serde_json::from_value(serde_json::Value::Object(coords)).unwrap(),
            });
        }
    }
    let ran = common::run_stage_with(
        &ReportTable,
        dir,
        "report",
        json!({}),
        vec![("results", results)],
    );
    ran.result.as_ref().unwrap();
    let md = std::fs::read_to_string(ran.out("report").join("table.md")).unwrap();
    let line = |label: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no {label} line:\n{md}"))
            .to_string()
    };
    // numpy: np.std([0.7, 0.8, 0.9], ddof=1) = 0.1
    assert!(line("baseline").contains("| 0.800 ± 0.100 |"), "{md}");
    assert!(line("baseline").contains("| 3 |"), "n = 3:\n{md}");
    assert!(line("random 50 %").contains("| +0.050 † |"), "{md}");
    assert!(
        line("selective 200 %").contains("| 1.000 ± 0.000 |"),
        "{md}"
    );
    assert!(line("selective 200 %").contains("| +0.200 |"), "{md}");
    let csv = std::fs::read_to_string(ran.out("report").join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "one line per setting:\n{csv}");
}

// ---- Two generators: HistoDiffusion and the class-conditional StyleGAN2 of Table 1 ----

use histodiff_engine::plan::{InputBinding, Plan};
use histodiff_stages::report::results::SelectionSummary;
use serde_json::Value;
use std::collections::BTreeMap;

/// Table 1's two systems as one pipeline, as the paper pipelines wire them: each
/// generator's pool goes through its own select (a `generator` matrix axis), classifier
/// training over two seeds, evaluate and FID, into one report. `pool` and `gan_pool` are
/// stand-ins (subsets of the real set): only the plan's instances and coordinates are
/// used here, nothing runs but the report.
const TWO_GENERATORS: &str = r#"
version: 1
name: two-generators
settings: { store: .histodiff, device: cpu, jobs: 1 }
stages:
  demo: { uses: data/demo, with: { per_class: 20, image_size: 16, seed: 0 } }
  crc: { uses: data/image-folder, inputs: { folder: demo }, with: { image_size: 16 } }
  fewshot: { uses: data/subset, inputs: { images: crc }, with: { fraction: 0.2, seed: 0 } }
  crc_test: { uses: data/subset, inputs: { images: crc }, with: { fraction: 0.2, seed: 0, complement: true } }
  pool: { uses: data/subset, inputs: { images: crc }, with: { fraction: 0.5, seed: 1 } }
  gan_pool: { uses: data/subset, inputs: { images: crc }, with: { fraction: 0.5, seed: 2 } }
  baseline:
    uses: histodiffusion/train-classifier
    inputs: { train: [fewshot], test: crc_test }
    matrix: { seed: [0, 1] }
    with: { preset: tiny, seed: ${matrix.seed} }
  baseline_eval: { uses: histodiffusion/evaluate, inputs: { predictions: baseline.predictions } }
  select:
    uses: histodiffusion/select
    inputs: { pool: pool, real: fewshot, features: baseline.model }
    matrix: { generator: [histodiffusion], method: [centroid], ratio: [0.5, 2.0] }
    with: { method: ${matrix.method}, ratio: ${matrix.ratio} }
  select_random:
    uses: histodiffusion/select
    inputs: { pool: pool, real: fewshot }
    matrix: { generator: [histodiffusion], method: [random], ratio: [0.5] }
    with: { method: ${matrix.method}, ratio: ${matrix.ratio} }
  select_gan:
    uses: histodiffusion/select
    inputs: { pool: gan_pool, real: fewshot, features: baseline.model }
    matrix: { generator: [stylegan2], method: [centroid], ratio: [0.5, 2.0] }
    with: { method: ${matrix.method}, ratio: ${matrix.ratio} }
  augmented:
    uses: histodiffusion/train-classifier
    inputs: { train: [fewshot, select], test: crc_test }
    matrix: { seed: [0, 1] }
    with: { preset: tiny, seed: ${matrix.seed} }
  augmented_random:
    uses: histodiffusion/train-classifier
    inputs: { train: [fewshot, select_random], test: crc_test }
    matrix: { seed: [0, 1] }
    with: { preset: tiny, seed: ${matrix.seed} }
  augmented_gan:
    uses: histodiffusion/train-classifier
    inputs: { train: [fewshot, select_gan], test: crc_test }
    matrix: { seed: [0, 1] }
    with: { preset: tiny, seed: ${matrix.seed} }
  evaluate: { uses: histodiffusion/evaluate, inputs: { predictions: augmented.predictions, selection: select.selection } }
  evaluate_random: { uses: histodiffusion/evaluate, inputs: { predictions: augmented_random.predictions, selection: select_random.selection } }
  evaluate_gan:
    uses: histodiffusion/evaluate
    inputs: { predictions: augmented_gan.predictions, selection: select_gan.selection }
    with: { variant: stylegan2 }
  fid: { uses: histodiffusion/fid, inputs: { synthetic: select, real: fewshot } }
  fid_random: { uses: histodiffusion/fid, inputs: { synthetic: select_random, real: fewshot } }
  fid_gan: { uses: histodiffusion/fid, inputs: { synthetic: select_gan, real: fewshot } }
  report:
    uses: report/table
    inputs:
      results: ["baseline_eval[*]", "evaluate_random[*]", "evaluate[*]", "evaluate_gan[*]"]
      fid: ["fid_gan[*]", "fid_random[*]", "fid[*]"]
      pools: [fewshot, pool, gan_pool]
    with: { paper: crc, pool_labels: [Real, HistoDiffusion, StyleGAN2], fig3_per_class: 3 }
"#;

fn plan_of(dir: &std::path::Path, text: &str) -> Plan {
    let mut registry = histodiff_engine::registry::Registry::with_builtins();
    for kind in histodiff_stages::kinds::all() {
        registry.insert(kind.spec());
    }
    let path = dir.join("two-generators.yaml");
    std::fs::write(&path, text).unwrap();
    histodiff_engine::spec::load(
        &path,
        &registry,
        &histodiff_engine::spec::SettingsOverrides::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn coords_of(plan: &Plan, instance: usize) -> BTreeMap<String, Value> {
    plan.instances[instance]
        .coords
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The FID a test writes for an FID instance: it encodes the generator, ratio and seed
/// of the instance, so a row that joined the wrong FID shows it.
fn fid_code(coords: &BTreeMap<String, Value>) -> f64 {
    let gan = coords.get("generator") == Some(&json!("stylegan2"));
    let ratio = coords.get("ratio").and_then(Value::as_f64).unwrap_or(0.0);
    let random = coords.get("method") == Some(&json!("random"));
    let seed = coords.get("seed").and_then(Value::as_f64).unwrap_or(0.0);
    (if gan { 100.0 } else { 0.0 }) + (if random { 50.0 } else { 0.0 }) + 10.0 * ratio + seed
}

/// Two classes, A right `right` of 10, B right 9 of 10.
fn two_class_evaluation(right: u64) -> Evaluation {
    evaluation_of(&["A", "B"], vec![vec![right, 10 - right], vec![1, 9]])
}

/// A labeled image set of `per_class` images per class, class `c` of set `k` filled
/// with the value `(40·k + 100·c) mod 256`, so a figure pixel shows which set and class it is.
fn uniform_set(dir: &std::path::Path, classes: &[&str], size: usize, per_class: usize, k: u8) {
    let mut w = ImageSetWriter::create(
        dir,
        classes.iter().map(|c| c.to_string()).collect(),
        size,
        4,
    )
    .unwrap();
    for c in 0..classes.len() {
        for i in 0..per_class {
            let value = ((40 * k as u32 + 100 * c as u32) % 256) as u8;
            w.push_chw(
                &vec![value; 3 * size * size],
                Some(c as i64),
                format!("{k}-{c}-{i}"),
            )
            .unwrap();
        }
    }
    w.finish().unwrap();
}

/// Binds report instance `report` of `plan` the way the engine does (producer name and
/// coordinates of each upstream) for its `results`, `fid` and `pools` slots, writing a
/// stand-in artifact for each: evaluations whose variant is the evaluate instance's and
/// whose selection is its coordinates', FIDs from `fid`, small image sets for the pools.
fn bind_report(
    plan: &Plan,
    report: usize,
    dir: &std::path::Path,
    fid: impl Fn(&BTreeMap<String, Value>) -> FidResult,
) -> Vec<(&'static str, Vec<InputArtifact>)> {
    let report = &plan.instances[report];
    let mut bound = Vec::new();
    for slot in ["results", "fid", "pools"] {
        let ups = match report.inputs.get(slot) {
            Some(InputBinding::Many(ups)) => ups.clone(),
            Some(InputBinding::One(u)) => vec![u.clone()],
            None => continue,
        };
        let mut arts = Vec::new();
        for (k, u) in ups.iter().enumerate() {
            let producer = &plan.instances[u.instance];
            let coords = coords_of(plan, u.instance);
            let path = dir.join(format!("{}-{slot}-{k}", report.name));
            match slot {
                "results" => {
                    let mut e = two_class_evaluation(5 + k as u64 % 5);
                    e.variant = producer.params["variant"].as_str().unwrap().into();
                    e.selection = coords.get("method").map(|m| SelectionSummary {
                        format: "histodiff/selection".into(),
                        method: m.as_str().unwrap().into(),
                        ratio: coords["ratio"].as_f64().unwrap(),
                        classes: vec!["A".into(), "B".into()],
                        pool: vec![10, 10],
                        quotas: vec![2, 2],
                        filled: vec![0, 0],
                        filled_total: 0,
                        count: 4,
                    });
                    write(&path, &e).unwrap();
                }
                "fid" => write(&path, &fid(&coords)).unwrap(),
                _ => uniform_set(&path, &["A", "B"], 8, 4, k as u8),
            }
            arts.push(InputArtifact {
                hash: ArtifactHash(format!("{k:02}").repeat(32)),
                path,
                producer: producer.name.clone(),
                coords,
            });
        }
        bound.push((slot, arts));
    }
    bound
}

fn computed(fid: f64) -> FidResult {
    FidResult {
        format: "histodiff/fid".into(),
        fid: Some(fid),
        status: "computed".into(),
        n_real: 20,
        n_synthetic: 20,
    }
}

/// What a report run of a plan gives a test to look at.
struct Report {
    rows: Vec<Value>,
    md: String,
    csv: String,
    out: std::path::PathBuf,
    /// The bound evaluations and FIDs.
    bound: Vec<(&'static str, Vec<InputArtifact>)>,
}

/// Runs report instance `report` of `plan` (its own parameters) on stand-in inputs.
fn run_report(plan: &Plan, report: usize, dir: &std::path::Path) -> Result<Report, String> {
    let bound = bind_report(plan, report, dir, |c| computed(fid_code(c)));
    let instance = &plan.instances[report];
    let params = Value::Object(instance.params.clone());
    let ran = common::run_stage_with(&ReportTable, dir, &instance.name, params, bound.clone());
    ran.result.as_ref().map_err(|e| e.to_string())?;
    let out = ran.out("report");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    Ok(Report {
        rows: serde_json::from_str(&read("rows.json")).unwrap(),
        md: read("table.md"),
        csv: read("table.csv"),
        out,
        bound,
    })
}

/// The report of a two-generator pipeline `text` (the instance `report`).
fn report_of(text: &str, name: &str) -> (Report, tempfile::TempDir) {
    let tmp = temp_dir(name);
    let plan = plan_of(tmp.path(), text);
    let report = plan
        .instances
        .iter()
        .position(|i| i.stage == "report")
        .unwrap();
    let r = run_report(&plan, report, tmp.path()).unwrap();
    (r, tmp)
}

/// Every row joined its own FID, worked out independently of the report's code: the
/// most specific FID all of whose coordinates the evaluation has with the same values
/// (`generator` also when it is the one the row's variant implies: `stylegan2` for
/// variant `stylegan2`, `histodiffusion` for the others); a baseline (no selection) none.
fn assert_each_row_has_its_own_fid(r: &Report) {
    let arts = |slot: &str| {
        r.bound
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or(&[][..], |(_, a)| a.as_slice())
    };
    let results: BTreeMap<&str, &InputArtifact> = arts("results")
        .iter()
        .map(|a| (a.producer.as_str(), a))
        .collect();
    for row in &r.rows {
        let producer = row["producer"].as_str().unwrap();
        let eval = &results[producer].coords;
        if row["evaluation"]["selection"].is_null() {
            assert!(
                row["fid"].is_null(),
                "the baseline {producer} has no FID: {row}"
            );
            continue;
        }
        let implied = if row["variant"] == "stylegan2" {
            "stylegan2"
        } else {
            "histodiffusion"
        };
        let fits = |f: &BTreeMap<String, Value>| {
            f.iter().all(|(k, v)| match eval.get(k) {
                Some(w) => w == v,
                None => k == "generator" && *v == json!(implied),
            })
        };
        let mut candidates: Vec<&InputArtifact> =
            arts("fid").iter().filter(|f| fits(&f.coords)).collect();
        candidates.sort_by_key(|f| std::cmp::Reverse(f.coords.len()));
        let expected = candidates.first().map(|f| f.producer.as_str());
        if let [a, b, ..] = candidates.as_slice() {
            assert!(
                a.coords.len() > b.coords.len(),
                "{producer}: ambiguous in the test itself"
            );
        }
        assert_eq!(row["fid_producer"].as_str(), expected, "{producer}");
        if let Some(f) = candidates.first() {
            assert_eq!(
                row["fid"]["fid"].as_f64(),
                Some(fid_code(&f.coords)),
                "{producer}"
            );
        }
    }
}

/// With a `generator` axis on both branches every evaluation joins its own FID, rows are
/// labelled per generator with the paper's numbers for that system, and Δ Acc of the
/// StyleGAN2 rows is against the (shared, real-only) baseline.
#[test]
fn two_generators_join_their_own_fids_and_paper_rows() {
    let (r, _tmp) = report_of(TWO_GENERATORS, "two-generators");
    let (rows, md, csv, out) = (&r.rows, &r.md, &r.csv, &r.out);
    // 2 baseline + 2 random + 4 selective + 4 StyleGAN2 evaluations.
    assert_eq!(rows.len(), 12, "{md}");
    assert_each_row_has_its_own_fid(&r);
    let line = |label: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no {label} line:\n{md}"))
            .to_string()
    };
    // StyleGAN2 selective 200 %: FIDs 120 and 121 (seeds 0, 1); paper 7.550, Acc 0.895.
    let gan = line("StyleGAN2: selective 200 %");
    assert!(
        gan.starts_with("| StyleGAN2: selective 200 % | 120.500 ± 0.707 |"),
        "{md}"
    );
    assert!(
        gan.contains("| 7.550 | 0.895 | 0.888 | 0.895 | 0.983 |"),
        "{md}"
    );
    assert!(
        !gan.contains("| – |"),
        "Δ Acc against the full baseline:\n{md}"
    );
    let gan50 = line("StyleGAN2: selective 50 %");
    assert!(
        gan50.contains("| 5.088 | 0.868 | 0.861 | 0.867 | 0.978 |"),
        "{md}"
    );
    let diff = line("selective 200 %");
    assert!(
        diff.starts_with("| selective 200 % | 20.500 ± 0.707 |"),
        "{md}"
    );
    assert!(
        diff.contains("| 4.583 | 0.919 | 0.916 | 0.919 | 0.992 |"),
        "{md}"
    );
    assert!(
        line("random 50 %").starts_with("| random 50 % | 55.000 ± 0.000 |"),
        "{md}"
    );
    assert!(line("baseline").starts_with("| baseline | – |"), "{md}");
    // The paper's order: baseline, StyleGAN2, HistoDiffusion.
    let order: Vec<usize> = [
        "| baseline |",
        "| StyleGAN2: selective 50 %",
        "| random 50 %",
        "| selective 50 %",
    ]
    .iter()
    .map(|l| md.find(l).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{md}");
    assert!(
        csv.lines()
            .any(|l| l
                .starts_with("stylegan2,centroid,2,StyleGAN2: selective 200 %,120.500 ± 0.707,")),
        "{csv}"
    );
    // FID against ratio, per generator, measured and the paper's.
    let section = &md[md
        .find("## FID against ratio")
        .expect("FID against ratio section")..];
    for expected in [
        "| generator | selection | 50 % | 200 % |",
        "| StyleGAN2 | selective | 105.500 ± 0.707 | 120.500 ± 0.707 |",
        "| StyleGAN2 (paper) | selective | 5.088 | 7.550 |",
        "| HistoDiffusion | random | 55.000 ± 0.000 | – |",
        "| HistoDiffusion (paper) | random | 4.921 | – |",
        "| HistoDiffusion | selective | 5.500 ± 0.707 | 20.500 ± 0.707 |",
        "| HistoDiffusion (paper) | selective | 4.544 | 4.583 |",
    ] {
        assert!(section.contains(expected), "{expected}:\n{section}");
    }
    // Fig. 3: three blocks of 3 rows of 8 px images, 2 classes, each named in the figure.
    let tiles = embedded_tiles(&out.join("fig3.svg"));
    assert_eq!(tiles.dimensions(), (2 + 2 * 10, 2 + 3 * 30 + 2 * 8));
    assert_svg_says(
        &out.join("fig3.svg"),
        &["Real", "HistoDiffusion", "StyleGAN2", "A", "B"],
    );
    png(&out.join("fig3.png"));
    for expected in [
        "![Fig. 3](fig3.png)",
        "| Real | fewshot | 3 |",
        "| HistoDiffusion | pool | 3 |",
        "| StyleGAN2 | gan_pool | 3 |",
        "Columns, left to right: A, B.",
    ] {
        assert!(md.contains(expected), "{expected}:\n{md}");
    }
}

/// A pipeline whose HistoDiffusion branch has no `generator` axis (as today's) and whose
/// StyleGAN2 branch has one: the FIDs still join their own rows. Listed first, the
/// StyleGAN2 FIDs agree with the HistoDiffusion rows on every shared axis (method, ratio,
/// seed), so only the generator tells them apart.
#[test]
fn fids_join_by_generator_when_only_one_branch_has_the_axis() {
    let text = TWO_GENERATORS.replace("generator: [histodiffusion], ", "");
    assert_ne!(text, TWO_GENERATORS);
    let (r, _tmp) = report_of(&text, "one-axis");
    assert_each_row_has_its_own_fid(&r);
    let md = &r.md;
    assert!(md.contains("| selective 200 % | 20.500 ± 0.707 |"), "{md}");
    assert!(
        md.contains("| StyleGAN2: selective 200 % | 120.500 ± 0.707 |"),
        "{md}"
    );
}

/// The error of the report stage of pipeline `text`, run on stand-in inputs whose FIDs
/// encode their coordinates.
fn report_error(text: &str, dir: &str) -> String {
    let tmp = temp_dir(dir);
    let plan = plan_of(tmp.path(), text);
    let report = plan
        .instances
        .iter()
        .position(|i| i.stage == "report")
        .unwrap();
    let bound = bind_report(&plan, report, tmp.path(), |c| computed(fid_code(c)));
    let ran = common::run_stage_with(&ReportTable, tmp.path(), "report", json!({}), bound);
    ran.result.unwrap_err().to_string()
}

/// Without a `generator` axis anywhere the FIDs of the two branches cannot be told apart:
/// the report refuses, naming the candidates, instead of joining the first.
#[test]
fn fids_that_cannot_be_told_apart_are_refused() {
    let text = TWO_GENERATORS
        .replace("generator: [histodiffusion], ", "")
        .replace("generator: [stylegan2], ", "");
    let err = report_error(&text, "no-axis");
    assert!(
        err.contains("matches 2 FID results")
            && err.contains("`fid_gan[method=centroid,ratio=0.5,seed=0]`")
            && err.contains("`fid[method=centroid,ratio=0.5,seed=0]`")
            && err.contains("`generator` matrix axis"),
        "{err}"
    );
}

/// A StyleGAN2 evaluation that forgot `variant: stylegan2` would be labelled and compared
/// with the paper as HistoDiffusion: refused, naming the instance.
#[test]
fn a_generator_coordinate_must_agree_with_the_variant() {
    let text = TWO_GENERATORS.replace("with: { variant: stylegan2 }", "with: { variant: full }");
    let err = report_error(&text, "variant-mismatch");
    assert!(
        err.contains("evaluate_gan[")
            && err.contains("generator=stylegan2")
            && err.contains("variant `full`"),
        "{err}"
    );
}

/// Without Inception weights every FID is "not computed": FID against ratio says so, and
/// still lists the paper's FIDs when `paper: crc`; with `paper: none` it has no table.
#[test]
fn fid_against_ratio_says_when_no_fid_was_measured() {
    let tmp = temp_dir("no-fid");
    let plan = plan_of(tmp.path(), TWO_GENERATORS);
    for (name, paper) in [("crc", "crc"), ("none", "none")] {
        let report = plan
            .instances
            .iter()
            .position(|i| i.stage == "report")
            .unwrap();
        let bound = bind_report(&plan, report, tmp.path(), |_| {
            FidResult::not_computed("no Inception weights given")
        });
        let ran = common::run_stage_with(
            &ReportTable,
            tmp.path(),
            &format!("report-{name}"),
            json!({ "paper": paper }),
            bound,
        );
        ran.result.as_ref().unwrap();
        let md = std::fs::read_to_string(ran.out("report").join("table.md")).unwrap();
        let section = &md[md.find("## FID against ratio").unwrap()..];
        let section = &section[..section.find("\n## ").map_or(section.len(), |e| e + 1)];
        assert!(
            section.contains("No FID was measured (not computed: no Inception weights given)"),
            "{section}"
        );
        assert!(!section.contains("| StyleGAN2 | selective"), "{section}");
        assert_eq!(
            section.contains("| StyleGAN2 (paper) | selective | 5.088 | 7.550 |"),
            paper == "crc",
            "{section}"
        );
    }
}

/// fig3.png: blocks in the order given, columns by class *name* (a set listing its classes
/// in another order still lands in the right columns), other image sizes resized, a short
/// class drawn as far as it goes, and labels that do not match the sets refused.
#[test]
fn fig3_draws_pools_side_by_side_by_class() {
    let tmp = temp_dir("fig3");
    let dir = tmp.path();
    let (real, pool, gan) = (dir.join("real"), dir.join("pool"), dir.join("gan"));
    uniform_set(&real, &["A", "B", "C"], 8, 2, 0);
    uniform_set(&pool, &["A", "B", "C"], 8, 5, 1);
    uniform_set(&gan, &["C", "A", "B"], 16, 5, 2);
    let art = |p: &std::path::Path, producer: &str| InputArtifact {
        hash: ArtifactHash("ef".repeat(32)),
        path: p.to_path_buf(),
        producer: producer.into(),
        coords: Default::default(),
    };
    let eval = dir.join("e.json");
    write(&eval, &two_class_evaluation(7)).unwrap();
    let run = |name: &str, labels: Value, pools: Vec<InputArtifact>| {
        common::run_stage_with(
            &ReportTable,
            dir,
            name,
            json!({ "pool_labels": labels, "fig3_per_class": 3 }),
            vec![("results", vec![art(&eval, "baseline")]), ("pools", pools)],
        )
    };
    let ran = run(
        "ok",
        json!(["Real", "HistoDiffusion", "StyleGAN2"]),
        vec![
            art(&real, "fewshot"),
            art(&pool, "pool"),
            art(&gan, "gan_pool"),
        ],
    );
    ran.result.as_ref().unwrap();
    let out = ran.out("report");
    // The tiles (the SVG embeds them unscaled): pad 2 + 3 classes × 10;
    // 2 + 3 blocks × 3 rows × 10 + 2 gaps × 8.
    let fig = embedded_tiles(&out.join("fig3.svg"));
    assert_eq!(
        (fig.width(), fig.height()),
        (2 + 3 * 10, 2 + 3 * 30 + 2 * 8)
    );
    let block_top = |k: u32| 2 + k * (30 + 8);
    let at = |k: u32, row: u32, class: u32| {
        fig.get_pixel(2 + class * 10 + 3, block_top(k) + row * 10 + 3)
            .0
    };
    // Blocks named on the left, classes on top, top to bottom and left to right.
    let texts = svg_texts(&out.join("fig3.svg"));
    let position = |t: &str| {
        texts
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("{t}: {texts:?}"))
    };
    assert!(
        position("Real") < position("HistoDiffusion")
            && position("HistoDiffusion") < position("StyleGAN2")
    );
    assert!(position("A") < position("B") && position("B") < position("C"));
    // The PNG has the same tiles, scaled up: every tile grey is in it.
    let picture = png(&out.join("fig3.png"));
    for grey in [100, 240, 80, 24] {
        assert!(picture.pixels().any(|p| p.0 == [grey; 3]), "grey {grey}");
    }
    assert_eq!(at(0, 1, 1), [100; 3], "real B");
    assert_eq!(
        at(0, 2, 1),
        [255; 3],
        "real has 2 of B: the third cell is empty"
    );
    assert_eq!(at(1, 2, 2), [240; 3], "pool C (40 + 200)");
    // gan lists C, A, B: its label 0 (C, value 80) belongs in column 2, B (280 mod 256) in 1.
    assert_eq!(at(2, 0, 2), [80; 3], "StyleGAN2 C, resized from 16 px");
    assert_eq!(at(2, 2, 1), [24; 3], "StyleGAN2 B");
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(md.contains("| Real | fewshot | 2/2/2 |"), "{md}");
    assert!(md.contains("| StyleGAN2 | gan_pool | 3 |"), "{md}");
    assert!(md.contains("Columns, left to right: A, B, C."), "{md}");

    let bad = run(
        "bad",
        json!(["Real", "HistoDiffusion"]),
        vec![
            art(&real, "fewshot"),
            art(&pool, "pool"),
            art(&gan, "gan_pool"),
        ],
    );
    let err = bad.result.unwrap_err().to_string();
    assert!(
        err.contains("`pool_labels` has 2 labels") && err.contains("has 3 image sets"),
        "{err}"
    );
    let other = dir.join("other");
    uniform_set(&other, &["A", "D", "C"], 8, 1, 3);
    let bad = run(
        "bad-classes",
        json!(["Real", "Other"]),
        vec![art(&real, "fewshot"), art(&other, "other")],
    );
    let err = bad.result.unwrap_err().to_string();
    assert!(err.contains("other") && err.contains("\"D\""), "{err}");
}

/// The shipped pipelines (examples/ and pipelines/, whatever they hold when the test
/// runs): each report joins every row to exactly the FID of its own setting and
/// generator, and none is ambiguous. Nothing runs but the reports, on stand-in inputs.
#[test]
fn shipped_pipelines_join_each_row_to_its_own_fid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("examples/quickstart.yaml")];
    let mut shipped: Vec<_> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    shipped.sort();
    files.extend(shipped);
    let mut registry = histodiff_engine::registry::Registry::with_builtins();
    for kind in histodiff_stages::kinds::all() {
        registry.insert(kind.spec());
    }
    let mut reports = 0;
    for file in files {
        let plan = histodiff_engine::spec::load(
            &file,
            &registry,
            &histodiff_engine::spec::SettingsOverrides::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let tmp = temp_dir("shipped");
        for (k, instance) in plan.instances.iter().enumerate() {
            if instance.kind != "report/table" {
                continue;
            }
            let r = run_report(&plan, k, tmp.path())
                .unwrap_or_else(|e| panic!("{} {}: {e}", file.display(), instance.name));
            assert_each_row_has_its_own_fid(&r);
            let joined = r.rows.iter().filter(|row| !row["fid"].is_null()).count();
            let synthetic = r
                .rows
                .iter()
                .filter(|row| !row["evaluation"]["selection"].is_null())
                .count();
            if r.bound.iter().any(|(s, a)| *s == "fid" && !a.is_empty()) {
                assert_eq!(
                    joined,
                    synthetic,
                    "{}: every synthetic row has an FID",
                    file.display()
                );
            }
            reports += 1;
        }
    }
    assert!(
        reports >= 4,
        "quickstart, two paper pipelines and two ablations: {reports}"
    );
}
