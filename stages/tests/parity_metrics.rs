//! Metrics parity (fixture: tests/fixtures/gen_metrics.py): accuracy, macro / weighted
//! precision, recall, F1 and specificity against scikit-learn (specificity as
//! imbalanced-learn computes it), and the Fréchet distance against pytorch-fid (scipy sqrtm).

use histodiff_stages::metrics::classification::ConfusionMatrix;
use histodiff_stages::metrics::fid::{frechet_distance, FeatureStats, DEFAULT_EPS};
use histodiff_stages::weights::read_tensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

const GENERATOR: &str = "tests/fixtures/gen_metrics.py";

fn fixtures(file: &str) -> BTreeMap<String, Tensor> {
    let dir = std::env::var_os("HISTODIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let path = dir.join(file);
    assert!(
        path.exists(),
        "fixture {} is missing: run `python {GENERATOR} --out {}`",
        path.display(),
        dir.display()
    );
    read_tensors(&path).unwrap().into_iter().collect()
}

fn labels(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

#[test]
fn classification_metrics_match_sklearn() {
    let f = fixtures("metrics.safetensors");
    let mut worst = 0.0f64;
    for i in 0.. {
        let Some(truth) = f.get(&format!("cls.{i}.truth")) else {
            break;
        };
        let m =
            ConfusionMatrix::from_labels(&labels(truth), &labels(&f[&format!("cls.{i}.pred")]), 9)
                .unwrap();
        let expected_confusion: Vec<i64> = labels(&f[&format!("cls.{i}.confusion")].flatten(0, 1));
        let ours: Vec<i64> = m.rows().concat().into_iter().map(|c| c as i64).collect();
        assert_eq!(
            ours, expected_confusion,
            "set {i}: confusion matrix differs from sklearn"
        );
        let r = m.report();
        let ours = [
            r.accuracy,
            r.macro_avg.precision,
            r.macro_avg.recall,
            r.macro_avg.f1,
            r.macro_avg.specificity,
            r.weighted_avg.precision,
            r.weighted_avg.recall,
            r.weighted_avg.f1,
            r.weighted_avg.specificity,
        ];
        let expected = Vec::<f64>::try_from(&f[&format!("cls.{i}.expected")]).unwrap();
        for (j, (a, b)) in ours.iter().zip(&expected).enumerate() {
            let err = (a - b).abs();
            worst = worst.max(err);
            assert!(err <= 1e-12, "set {i}, metric {j}: {a} vs sklearn {b}");
        }
    }
    eprintln!("classification metrics vs sklearn: max abs err {worst:.3e} (tol 1e-12)");
}

fn stats(f: &BTreeMap<String, Tensor>, case: &str, i: u8) -> FeatureStats {
    let (mu, sigma) = (
        &f[&format!("{case}.mu{i}")],
        &f[&format!("{case}.sigma{i}")],
    );
    FeatureStats {
        mu: mu.shallow_clone(),
        sigma: sigma.shallow_clone(),
        count: 0,
    }
}

#[test]
fn frechet_distance_matches_pytorch_fid() {
    let f = fixtures("fid.safetensors");
    for (case, tol) in [("regular", 1e-9), ("singular", 1e-6)] {
        let expected = f[&format!("{case}.fid")].double_value(&[0]);
        let from_stats =
            frechet_distance(&stats(&f, case, 1), &stats(&f, case, 2), DEFAULT_EPS).unwrap();
        let a = FeatureStats::from_features(&f[&format!("{case}.x1")]).unwrap();
        let b = FeatureStats::from_features(&f[&format!("{case}.x2")]).unwrap();
        let from_features = frechet_distance(&a, &b, DEFAULT_EPS).unwrap();
        let rel = |x: f64| (x - expected).abs() / expected.abs();
        eprintln!(
            "FID {case} vs pytorch-fid ({expected:.9}): rel err {:.3e} from μ/Σ, {:.3e} from features (tol {tol:.0e})",
            rel(from_stats),
            rel(from_features)
        );
        assert!(rel(from_stats) <= tol, "{case}: {from_stats} vs {expected}");
        assert!(
            rel(from_features) <= tol,
            "{case} from features: {from_features} vs {expected}"
        );
    }
}
