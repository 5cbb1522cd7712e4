//! FID Inception-v3 parity against pytorch-fid (fixture: tests/fixtures/gen_inception.py):
//! pool3 features on the same random weights, strict loading of pytorch-fid's key names.

use histodiff_stages::models::inception::{
    is_unused_key, FidInceptionV3, InceptionConfig, FID_FEATURES,
};
use histodiff_stages::weights::{load_tensors_strict, read_tensors, WeightsError};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_inception.py";

fn fixture(file: &str) -> PathBuf {
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
    path
}

fn state_dict() -> (Vec<(String, Tensor)>, Tensor, Tensor) {
    let all = read_tensors(&fixture("fid_inception.safetensors")).unwrap();
    let find = |key: &str| {
        all.iter()
            .find(|(k, _)| k == key)
            .map(|(_, t)| t.shallow_clone())
            .unwrap()
    };
    let (x, pool3) = (find("io.x"), find("io.pool3"));
    let state = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("io.") && !is_unused_key(k))
        .collect();
    (state, x, pool3)
}

#[test]
fn pool3_matches_pytorch_fid() {
    let (state, x, expected) = state_dict();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    load_tensors_strict(&mut vs, "fid_inception.safetensors", state).unwrap();
    let features = model.pool3(&x).unwrap();
    assert_eq!(features.size(), vec![2, FID_FEATURES]);
    let err = (&features - &expected).abs().max().double_value(&[]);
    let scale = expected.abs().max().double_value(&[]);
    eprintln!("FID Inception pool3 vs pytorch-fid: max abs err {err:.3e} (features up to {scale:.2}; tol 1e-4)");
    assert!(err <= 1e-4, "pool3 max abs error {err} > 1e-4");
    // Streaming statistics over two one-image batches equal those of the pool3 matrix.
    let stats = model.feature_stats(x.split(1, 0)).unwrap();
    let direct = histodiff_stages::metrics::fid::FeatureStats::from_features(&features).unwrap();
    let e_mu = (&stats.mu - &direct.mu).abs().max().double_value(&[]);
    let e_sigma = (&stats.sigma - &direct.sigma).abs().max().double_value(&[]);
    assert!(
        e_mu <= 1e-9 && e_sigma <= 1e-9,
        "feature_stats differs: mu {e_mu}, sigma {e_sigma}"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    assert!(model
        .pool3(&Tensor::zeros([2, 1, 64, 64], tch::kind::FLOAT_CPU))
        .is_err());
    assert!(model
        .pool3(&Tensor::zeros([3, 64, 64], tch::kind::FLOAT_CPU))
        .is_err());
    let raw = FidInceptionV3::new(
        &(&vs.root() / "raw"),
        InceptionConfig {
            resize_input: false,
            normalize_input: true,
        },
    );
    assert!(raw
        .pool3(&Tensor::zeros([1, 3, 64, 64], tch::kind::FLOAT_CPU))
        .is_err());
}

#[test]
fn loading_is_strict() {
    let (mut state, _, _) = state_dict();
    let removed = state.remove(10).0;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    match load_tensors_strict(&mut vs, "partial", state) {
        Err(WeightsError::Keys { missing, .. }) => assert!(missing.contains(&removed), "{missing}"),
        other => panic!("expected a missing-key error, got {other:?}"),
    }
}
