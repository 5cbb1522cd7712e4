//! Shared helpers of the `parity_official_*` tests: the committed fixtures made with the
//! authors' code by tests/fixtures/official/gen_official.py, and the weight rule they use.
//!
//! The fixtures store no model weights: every weight is `hashed_tensor(name, shape, k)`, an
//! exact int64 hash of the element index and k (1 + the rank of the name among the file's
//! `check.<name>` keys), so libtorch computes the same bits here as in the generator. Each
//! regenerated tensor is compared with its `check.<name>` checksum before use.

#![allow(dead_code)]

use histodiff_stages::weights::{load_tensors_strict, read_tensors};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

pub const GENERATOR: &str = "tests/fixtures/official/gen_official.py";

pub fn fixture_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/official")
        .join(name);
    assert!(
        path.exists(),
        "missing committed fixture {} (made by {GENERATOR})",
        path.display()
    );
    path
}

/// Every tensor of a committed fixture, sorted by key.
pub fn read_fixture(name: &str) -> BTreeMap<String, Tensor> {
    read_tensors(&fixture_path(name))
        .expect("readable fixture")
        .into_iter()
        .collect()
}

const M31: i64 = 1 << 31;
const A_LCG: i64 = 1_103_515_245;

/// gen_official.py `hashed_uniform`: n values in [0, 1), exact integer arithmetic (every
/// intermediate stays below 2^63).
fn hashed_uniform(n: i64, k: i64) -> Tensor {
    let mut x = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    x = x
        .g_mul_scalar(A_LCG)
        .g_add_scalar(12345 + k * 7919)
        .remainder(M31);
    x = (&x * &x).g_add_scalar(k).remainder(M31);
    x = x.g_mul_scalar(A_LCG).g_add_scalar(12345).remainder(M31);
    x = (&x * &x).g_add_scalar(3 * k + 1).remainder(M31);
    x = x.g_mul_scalar(A_LCG).g_add_scalar(12345).remainder(M31);
    x.to_kind(Kind::Double) / (M31 as f64)
}

/// gen_official.py `hashed_tensor`: conv/linear weights U(±√(6/fan_in)), 1-D weights
/// 1 ± 0.1, biases ± 0.1.
pub fn hashed_tensor(name: &str, shape: &[i64], k: i64) -> Tensor {
    let n: i64 = shape.iter().product();
    let u = hashed_uniform(n, k) * 2.0 - 1.0;
    let v = if shape.len() >= 2 {
        let fan_in: i64 = shape[1..].iter().product();
        u * (6.0 / fan_in as f64).sqrt()
    } else if name.ends_with("weight") {
        u * 0.1 + 1.0
    } else {
        u * 0.1
    };
    v.to_kind(Kind::Float).reshape(shape)
}

/// [Σt, Σt², Σ t·((i mod 7) − 3)] in f64, as gen_official.py `checksum`.
pub fn checksum(t: &Tensor) -> Tensor {
    let t = t.detach().to_kind(Kind::Double).flatten(0, -1);
    let ramp = Tensor::arange(t.numel() as i64, (Kind::Int64, Device::Cpu))
        .remainder(7)
        .g_add_scalar(-3)
        .to_kind(Kind::Double);
    Tensor::stack(
        &[
            t.sum(Kind::Double),
            t.square().sum(Kind::Double),
            (&t * ramp).sum(Kind::Double),
        ],
        0,
    )
}

/// Largest |a − b| of two checksums relative to max(1, |b|) per entry.
pub fn checksum_error(got: &Tensor, want: &Tensor) -> f64 {
    let scale = want.abs().clamp_min(1.0);
    ((got - want).abs() / scale).max().double_value(&[])
}

/// Error of a gradient against its reference checksum, each entry relative to its natural
/// scale: √(n·Σg²) for Σg and Σg·ramp (Cauchy–Schwarz bounds, so a near-cancelling sum is not
/// over-weighted), Σg² for Σg². Roughly the relative error of the tensor as a whole.
/// `floor_rms` bounds the scale from below (as a per-element RMS): some gradients are
/// analytically zero and hold only rounding noise (e.g. conv biases that feed a GroupNorm
/// with one channel per group), so they are measured against a fraction of the model's
/// largest gradient RMS instead of their own.
pub fn gradient_checksum_error(grad: &Tensor, want: &Tensor, floor_rms: f64) -> f64 {
    let got = checksum(grad);
    let n = grad.numel() as f64;
    let sq = want
        .double_value(&[1])
        .max(n * floor_rms * floor_rms)
        .max(1e-30);
    let l1 = (n * sq).sqrt();
    let scales = [l1, sq, 3.0 * l1];
    (0..3)
        .map(|i| (got.double_value(&[i]) - want.double_value(&[i])).abs() / scales[i as usize])
        .fold(0.0, f64::max)
}

/// Largest per-element RMS √(Σg²/n) over the reference checksums `prefix<name>` of the
/// variables of `vs`.
pub fn largest_gradient_rms(vs: &VarStore, io: &HashMap<String, Tensor>, prefix: &str) -> f64 {
    vs.variables()
        .iter()
        .map(|(name, var)| {
            let sq = io[&format!("{prefix}{name}")].double_value(&[1]);
            (sq / var.numel() as f64).sqrt()
        })
        .fold(0.0, f64::max)
}

/// Regenerates the hashed weights of every `check.<name>` in `file` (shapes from `vs`),
/// verifies each against its checksum (relative 1e-9: only the f64 summation order can
/// differ), and strictly loads them together with the file's stored non-`io.` tensors.
pub fn load_hashed_strict(vs: &mut VarStore, file: &str, fixture: &BTreeMap<String, Tensor>) {
    let vars = vs.variables();
    let mut tensors = Vec::new();
    let checks: Vec<&String> = fixture.keys().filter(|k| k.starts_with("check.")).collect();
    assert!(!checks.is_empty(), "{file}: no check.* tensors");
    for (rank, key) in checks.iter().enumerate() {
        let name = &key["check.".len()..];
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("{file}: the model has no variable {name}"));
        let value = hashed_tensor(name, &var.size(), rank as i64 + 1);
        let err = checksum_error(&checksum(&value), &fixture[*key]);
        assert!(
            err <= 1e-9,
            "{file}: regenerated {name} differs from the generator's (checksum error {err:.3e})"
        );
        tensors.push((name.to_string(), value));
    }
    for (key, value) in fixture {
        if !key.starts_with("check.") && !key.starts_with("io.") {
            tensors.push((key.clone(), value.shallow_clone()));
        }
    }
    load_tensors_strict(vs, file, tensors).expect("strict load of the official weights");
}

pub fn max_abs(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "shape mismatch");
    (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Max abs error ≤ `tol`, printed with the reference's magnitude.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    let err = max_abs(got, want);
    let scale = want.abs().max().double_value(&[]);
    eprintln!(
        "{what}: max abs error {err:.3e} (tolerance {tol:.0e}, reference max |·| {scale:.3})"
    );
    assert!(err <= tol, "{what}: max abs error {err:.3e} > {tol:.0e}");
}

/// |got − want| / max(|want|, 1e-12) ≤ `rel_tol` for a scalar.
pub fn assert_scalar(what: &str, got: f64, want: &Tensor, rel_tol: f64) {
    let want = want.double_value(&[0]);
    let err = (got - want).abs() / want.abs().max(1e-12);
    eprintln!("{what}: {got:.7e} vs official {want:.7e}, relative error {err:.3e} (tolerance {rel_tol:.0e})");
    assert!(
        err <= rel_tol,
        "{what}: relative error {err:.3e} > {rel_tol:.0e}"
    );
}

/// The fixture's `io.` tensors by name.
pub fn io(fixture: &BTreeMap<String, Tensor>) -> HashMap<String, Tensor> {
    fixture
        .iter()
        .filter(|(k, _)| k.starts_with("io."))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect()
}
