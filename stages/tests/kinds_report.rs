//! `report/table` on evaluation and FID files: rows named from matrix coordinates,
//! paper numbers alongside, FID joined by coordinates, lineage, CSV, sample grids.

mod common;

use common::{run_stage, temp_dir};
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
    let grid = image::open(
        ran.out("report")
            .join("grid-select_method_centroid_ratio_2.0_.png"),
    )
    .unwrap();
    assert_eq!((grid.width(), grid.height()), (2 + 8 * 10, 2 + 2 * 10));
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
        md.contains("| blue | baseline | 20 | 0.0500 |")
            && md.contains("| orange | augmented | 20 | 0.1000 |"),
        "{md}"
    );
    let png = image::open(ran.out("report").join("loss.png"))
        .unwrap()
        .to_rgb8();
    assert!(
        png.pixels().any(|p| p.0 == [31, 119, 180]) && png.pixels().any(|p| p.0 == [255, 127, 14])
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
