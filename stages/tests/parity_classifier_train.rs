//! The downstream classifier's training pieces against PyTorch (fixture:
//! tests/fixtures/gen_classifier_train.py): label-smoothed cross-entropy and its gradient
//! against `F.cross_entropy(label_smoothing=ε)`, and the colour jitter of train::augment
//! against torchvision's `adjust_brightness` / `adjust_contrast` / `adjust_saturation`.

use histodiff_stages::kinds::train_classifier::classification_loss;
use histodiff_stages::train::augment::color_jitter;
use histodiff_stages::weights::read_tensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_classifier_train.py";

fn fixtures() -> BTreeMap<String, Tensor> {
    let dir = std::env::var_os("HISTODIFF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let path = dir.join("classifier_train.safetensors");
    assert!(
        path.exists(),
        "fixture {} is missing: run `python {GENERATOR} --out {}`",
        path.display(),
        dir.display()
    );
    read_tensors(&path).unwrap().into_iter().collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn label_smoothing_matches_torch_cross_entropy() {
    let f = fixtures();
    let eps = Vec::<f64>::try_from(&f["ls.eps"]).unwrap();
    for (i, &e) in eps.iter().enumerate() {
        let logits = f["ls.logits"].copy().set_requires_grad(true);
        let loss = classification_loss(&logits, &f["ls.labels"], e);
        loss.backward();
        let e_loss = (loss.double_value(&[]) - f[&format!("ls.loss.{i}")].double_value(&[0])).abs();
        let e_grad = max_abs(&logits.grad(), &f[&format!("ls.grad.{i}")]);
        eprintln!("label_smoothing {e}: loss abs err {e_loss:.3e}, grad max abs err {e_grad:.3e} (tol 1e-6)");
        assert!(
            e_loss <= 1e-6 && e_grad <= 1e-6,
            "ε = {e}: loss err {e_loss}, grad err {e_grad}"
        );
    }
}

#[test]
fn color_jitter_matches_torchvision() {
    let f = fixtures();
    let factor = |name: &str| {
        f[&format!("cj.{name}")]
            .to_kind(Kind::Float)
            .view([-1, 1, 1, 1])
    };
    let ours = color_jitter(
        &f["cj.x"],
        &factor("brightness"),
        &factor("contrast"),
        &factor("saturation"),
    );
    let err = max_abs(&ours, &f["cj.out"]);
    eprintln!("colour jitter vs torchvision: max abs err {err:.3e} (tol 1e-6)");
    assert!(err <= 1e-6, "colour jitter differs by {err}");
}
