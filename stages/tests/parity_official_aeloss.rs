//! Parity of the autoencoder loss (stages/src/losses/lpips_with_discriminator.rs, SPEC §2.5)
//! with the authors' code: `LPIPSWithDiscriminator` of
//! karenyyy/HistoDiffAug@020116d69b9cf1f3daacec2681195591cb1873ad
//! `ldm/modules/losses/contperceptual.py` with `DiagonalGaussianDistribution`
//! (`ldm/modules/distributions/distributions.py`), taming-transformers@3ba01b241669f5ade541ce990f7650a3b8f65318
//! `NLayerDiscriminator` (`taming/modules/discriminator/model.py`, n_layers 3, ndf 64) and
//! `LPIPS` (`taming/modules/losses/lpips.py`, PyPI lpips 0.1.4 linear heads, hashed VGG16),
//! kl_weight 1e-6, disc_weight 0.5 (the HistoDiffAug AE config) but disc_start 1, at
//! global step 5 (and 0). The decoder is replaced by one conv whose weight is the
//! adaptive weight's `last_layer`: recon = conv3×3(cat(nearest×4(μ + σ·ξ), h), W, b).
//! The discriminator is in train mode (batch statistics), LPIPS in eval mode (see
//! docs/parity.md: Lightning's `train()` turns LPIPS's dropout on upstream).
//! Tolerances (f32, CPU), relative: loss terms 1e-5, adaptive weight 1e-4 (a ratio of two
//! gradient norms), gradients 1e-4 of the tensor's scale; BatchNorm statistics 1e-6 abs.

mod parity_official_common;

use histodiff_stages::losses::{AeLossConfig, LpipsWithDiscriminator};
use histodiff_stages::models::autoencoder::DiagonalGaussian;
use parity_official_common::*;
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

const FILE: &str = "ae_loss.safetensors";
const STEP: i64 = 5;
const TERM_TOL: f64 = 1e-5;
const D_WEIGHT_TOL: f64 = 1e-4;
const GRAD_TOL: f64 = 1e-4;
const STATS_TOL: f64 = 1e-6;

fn load_loss() -> (nn::VarStore, LpipsWithDiscriminator) {
    let fixture = read_fixture(FILE);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let config = AeLossConfig {
        disc_start: 1,
        ..AeLossConfig::default()
    };
    assert_eq!((config.kl_weight, config.disc_weight), (1e-6, 0.5));
    let loss = LpipsWithDiscriminator::new(&vs.root(), config);
    load_hashed_strict(&mut vs, FILE, &fixture);
    (vs, loss)
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

struct Graph {
    moments: Tensor,
    w: Tensor,
    b: Tensor,
    posterior: DiagonalGaussian,
    recon: Tensor,
}

fn graph(io: &HashMap<String, Tensor>) -> Graph {
    let (moments, w, b) = (
        leaf(&io["io.moments"]),
        leaf(&io["io.last_layer"]),
        leaf(&io["io.last_bias"]),
    );
    let posterior = DiagonalGaussian::new(moments.shallow_clone()).expect("moments");
    let z = posterior.sample_with_noise(&io["io.noise"]).expect("noise");
    let feat = Tensor::cat(
        &[
            z.upsample_nearest2d([32, 32], Some(4.0), Some(4.0)),
            io["io.h"].shallow_clone(),
        ],
        1,
    );
    let recon = feat.conv2d(&w, Some(&b), [1, 1], [1, 1], [1, 1], 1);
    Graph {
        moments,
        w,
        b,
        posterior,
        recon,
    }
}

fn check_stats(vs: &nn::VarStore, io: &HashMap<String, Tensor>, after: &str) {
    let vars = vs.variables();
    let prefix = format!("io.{after}.");
    let mut n = 0;
    for (key, want) in io.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        let name = format!("discriminator.{}", &key[prefix.len()..]);
        assert_close(&format!("{name} {after}"), &vars[&name], want, STATS_TOL);
        n += 1;
    }
    assert_eq!(n, 6, "three BatchNorms × (running_mean, running_var)");
}

#[test]
fn official_histodiffaug_lpips_with_discriminator_both_steps() {
    let fixture = read_fixture(FILE);
    let io = io(&fixture);
    let (vs, loss) = load_loss();
    let x = &io["io.x"];
    let g = graph(&io);

    // Optimizer 0 (autoencoder) step.
    let step = loss
        .generator_loss(x, &g.recon, &g.posterior, STEP, Some(&g.w), true)
        .expect("generator step");
    assert_scalar(
        "total_loss",
        step.loss.double_value(&[]),
        &io["io.g.total_loss"],
        TERM_TOL,
    );
    assert_scalar("nll_loss", step.nll, &io["io.g.nll_loss"], TERM_TOL);
    assert_scalar("rec_loss", step.rec, &io["io.g.rec_loss"], TERM_TOL);
    assert_scalar("kl_loss", step.kl, &io["io.g.kl_loss"], TERM_TOL);
    assert_scalar("g_loss", step.g_loss, &io["io.g.g_loss"], TERM_TOL);
    assert_scalar(
        "d_weight",
        step.d_weight,
        &io["io.g.d_weight"],
        D_WEIGHT_TOL,
    );
    assert_scalar(
        "disc_factor",
        step.disc_factor,
        &io["io.g.disc_factor"],
        0.0,
    );
    step.loss.backward();
    for (name, var) in [
        ("last_layer", &g.w),
        ("last_bias", &g.b),
        ("moments", &g.moments),
    ] {
        let want = &io[&format!("io.g.grad_{name}")];
        let tol = GRAD_TOL * want.abs().max().double_value(&[]);
        assert_close(
            &format!("AE-step gradient of {name}"),
            &var.grad(),
            want,
            tol,
        );
    }
    check_stats(&vs, &io, "after_g");

    // Optimizer 1 (discriminator) step on the same batch, reconstruction detached.
    for mut var in vs.trainable_variables() {
        var.zero_grad();
    }
    let d = loss
        .discriminator_loss(x, &g.recon, STEP, true)
        .expect("discriminator step");
    assert_scalar(
        "disc_loss",
        d.loss.double_value(&[]),
        &io["io.d.disc_loss"],
        TERM_TOL,
    );
    assert_scalar(
        "logits_real",
        d.logits_real,
        &io["io.d.logits_real"],
        TERM_TOL,
    );
    assert_scalar(
        "logits_fake",
        d.logits_fake,
        &io["io.d.logits_fake"],
        TERM_TOL,
    );
    d.loss.backward();
    let (mut worst_sum, mut worst_whole, mut count) = (0.0f64, 0.0f64, 0);
    for (name, var) in vs.variables() {
        let Some(short) = name.strip_prefix("discriminator.") else {
            continue;
        };
        if !var.requires_grad() {
            continue;
        }
        let grad = var.grad();
        let want = &io[&format!("io.d.grad.sum.{short}")];
        worst_sum = worst_sum.max(gradient_checksum_error(&grad, want, 0.0));
        if let Some(want) = io.get(&format!("io.d.grad.{short}")) {
            let scale = want.abs().max().double_value(&[]).max(1e-30);
            worst_whole = worst_whole.max(max_abs(&grad, want) / scale);
        }
        count += 1;
    }
    eprintln!(
        "discriminator gradients of {count} tensors: checksum error {worst_sum:.3e}, \
         stored-whole relative error {worst_whole:.3e} (tolerance {GRAD_TOL:.0e})"
    );
    assert_eq!(count, 13);
    assert!(worst_sum <= GRAD_TOL && worst_whole <= GRAD_TOL);
    check_stats(&vs, &io, "after_d");
}

#[test]
fn official_histodiffaug_lpips_with_discriminator_before_disc_start() {
    let io = io(&read_fixture(FILE));
    let (_vs, loss) = load_loss();
    let g = graph(&io);
    let step = loss
        .generator_loss(&io["io.x"], &g.recon, &g.posterior, 0, Some(&g.w), true)
        .expect("generator step");
    assert_scalar(
        "total_loss at step 0",
        step.loss.double_value(&[]),
        &io["io.g0.total_loss"],
        TERM_TOL,
    );
    assert_scalar(
        "disc_factor at step 0",
        step.disc_factor,
        &io["io.g0.disc_factor"],
        0.0,
    );
}
