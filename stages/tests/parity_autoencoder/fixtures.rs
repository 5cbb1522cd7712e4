//! Fixture access and comparison helpers shared by the parity tests.

use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use histodiff_stages::weights::{load_strict, read_tensors};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub const GENERATOR: &str = "tests/fixtures/gen_autoencoder.py";
/// Forward outputs in f32: max abs error.
pub const FORWARD_TOL: f64 = 1e-4;
/// Gradients: max abs error relative to the largest reference entry of the tensor.
pub const GRAD_REL_TOL: f64 = 1e-3;
/// Weights after one Adam step (lr 1e-3): max abs error.
pub const ADAM_TOL: f64 = 1e-6;

pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("HISTODIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "missing fixture {} — run `python {GENERATOR} --out {}` (scripts/test.sh does)",
        path.display(),
        dir.display()
    );
    path
}

pub fn tensors(name: &str) -> HashMap<String, Tensor> {
    read_tensors(&fixture(name))
        .expect("readable fixture")
        .into_iter()
        .collect()
}

pub fn max_abs(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "shape mismatch");
    (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    let err = max_abs(got, want);
    eprintln!("{what}: max abs error {err:.3e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{what}: max abs error {err:.3e} > {tol:.0e}");
}

pub fn assert_scalar(what: &str, got: f64, want: &Tensor, rel_tol: f64) {
    let want = want.double_value(&[]);
    let err = (got - want).abs() / want.abs().max(1e-12);
    eprintln!(
        "{what}: {got:.6e} vs {want:.6e}, relative error {err:.3e} (tolerance {rel_tol:.0e})"
    );
    assert!(
        err <= rel_tol,
        "{what}: relative error {err:.3e} > {rel_tol:.0e}"
    );
}

pub fn is_io(key: &str) -> bool {
    key.starts_with("io.")
}

pub fn load_ae(file: &str, config: AutoencoderConfig) -> (VarStore, AutoencoderKL) {
    let mut vs = VarStore::new(Device::Cpu);
    let ae = AutoencoderKL::new(&vs.root(), config).expect("valid config");
    load_strict(&mut vs, &fixture(file), |k| {
        is_io(k) || k.starts_with("loss.")
    })
    .expect("strict load");
    (vs, ae)
}
