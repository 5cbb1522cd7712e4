//! Parity of the StyleGAN2 port (stages/src/models/stylegan2, losses/stylegan2.rs and the
//! phases of kinds/stylegan2_train.rs) with the official NVlabs/stylegan2-ada-pytorch code
//! (commit d72cc7d, its pure-PyTorch reference ops), on the same random weights and inputs
//! (tests/fixtures/official/gen_stylegan2.py; conditional G 16² with z = w = 8, 3 classes,
//! 2 mapping layers, channels ≤ 8; resnet D, minibatch-std groups of 2), f32 on the CPU:
//! - the mapping (plain, truncated ψ 0.7, style-mixed at cutoff 3) and synthesis (const and
//!   no noise; fused and unfused modulation) outputs, and the discriminator's logits;
//! - one full official training step, batch 4: Gmain, Greg (path length, gain 4), Dmain,
//!   Dreg (R1 γ 10, gain 16), each phase's loss terms, gradients, the weights and buffers
//!   after its Adam step (lr and βs scaled by I/(I + 1)), the Adam moments, and G_ema after
//!   the EMA update.
//!
//! Tolerances (measured errors are printed): forward outputs 1e-5 absolute; loss terms 1e-5
//! relative; gradients 1e-4 of the largest gradient of the tensor (at least 1e-2 of the
//! phase's largest); weights after a step
//! 1e-5 absolute, or 4 f32 ulps of the tensor's largest value where larger (mapping
//! weights are stored ×100) (Adam with β1 = 0 moves each weight by about ±lr = 1.6e-3, so a sign flip
//! of a gradient would show as an error of 3e-3).

mod parity_official_common;

use histodiff_stages::kinds::stylegan2_train::{
    lazy_adam, optimizer_step, update_ema, D_REG_INTERVAL, G_REG_INTERVAL,
};
use histodiff_stages::losses::stylegan2::{mix_styles, LossConfig, Stylegan2Loss};
use histodiff_stages::models::stylegan2::{
    Discriminator, Generator, NoiseMode, Stylegan2Config, SynthesisMode, Truncation,
};
use histodiff_stages::train::named::{restore_into, take_prefix, trainable};
use histodiff_stages::train::optim::Adam;
use parity_official_common::{assert_close, assert_scalar, max_abs, read_fixture};
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

const FILE: &str = "stylegan2_tiny.safetensors";
const FORWARD_TOL: f64 = 1e-5;
const LOSS_TOL: f64 = 1e-5;
const GRAD_REL_TOL: f64 = 1e-4;
const STEP_TOL: f64 = 1e-5;

fn config() -> Stylegan2Config {
    Stylegan2Config {
        z_dim: 8,
        w_dim: 8,
        c_dim: 3,
        img_resolution: 16,
        img_channels: 3,
        mapping_layers: 2,
        channel_base: 64,
        channel_max: 8,
        conv_clamp: Some(256.0),
        architecture: "skip".into(),
    }
}

struct Nets {
    g_vs: VarStore,
    g: Generator,
    d_vs: VarStore,
    d: Discriminator,
}

fn nets(fx: &BTreeMap<String, Tensor>) -> Nets {
    let pairs: Vec<(String, Tensor)> = fx
        .iter()
        .map(|(k, t)| (k.clone(), t.shallow_clone()))
        .collect();
    let g_vs = VarStore::new(Device::Cpu);
    let g = Generator::new(&g_vs.root(), &config()).unwrap();
    let d_vs = VarStore::new(Device::Cpu);
    let d = Discriminator::new(&d_vs.root(), config().discriminator(Some(2)));
    for (vs, prefix) in [(&g_vs, "G."), (&d_vs, "D.")] {
        let theirs = take_prefix(&pairs, prefix);
        assert_eq!(
            theirs.len(),
            vs.variables().len(),
            "{prefix} tensor count: every official parameter and buffer has its place"
        );
        restore_into(vs, &theirs, |_| true, prefix).unwrap();
    }
    Nets { g_vs, g, d_vs, d }
}

#[test]
fn mapping_synthesis_and_discriminator_match_the_official_networks() {
    let fx = read_fixture(FILE);
    let n = nets(&fx);
    let (z, c) = (&fx["in.z"], &fx["in.c"]);
    let _guard = tch::no_grad_guard();
    let ws = n.g.mapping.forward(Some(z), c, Truncation::NONE, false);
    assert_close("mapping ws", &ws, &fx["out.ws"], FORWARD_TOL);
    let trunc = Truncation {
        psi: 0.7,
        cutoff: None,
    };
    assert_close(
        "mapping ws ψ 0.7",
        &n.g.mapping.forward(Some(z), c, trunc, false),
        &fx["out.ws_trunc"],
        FORWARD_TOL,
    );
    let other =
        n.g.mapping
            .forward(Some(&fx["in.z2"]), c, Truncation::NONE, false);
    let cutoff = fx["in.cutoff"].int64_value(&[]);
    assert_close(
        "style mixing",
        &mix_styles(&ws, &other, cutoff),
        &fx["out.ws_mixed"],
        FORWARD_TOL,
    );
    let synth = |noise, fused| n.g.synthesis.forward(&ws, SynthesisMode { noise, fused });
    assert_close(
        "synthesis const noise, fused",
        &synth(NoiseMode::Const, true),
        &fx["out.img_const"],
        FORWARD_TOL,
    );
    assert_close(
        "synthesis no noise, fused",
        &synth(NoiseMode::None, true),
        &fx["out.img_none"],
        FORWARD_TOL,
    );
    assert_close(
        "synthesis const noise, unfused",
        &synth(NoiseMode::Const, false),
        &fx["out.img_unfused"],
        FORWARD_TOL,
    );
    assert_close(
        "G(z, c, ψ 0.7)",
        &n.g.generate(z, c, trunc, NoiseMode::Const),
        &fx["out.img_trunc"],
        FORWARD_TOL,
    );
    assert_close(
        "D(real, c)",
        &n.d.forward(&fx["in.real"], c),
        &fx["out.d_logits"],
        FORWARD_TOL,
    );
    assert_close(
        "D(G(z), c)",
        &n.d.forward(&fx["out.img_const"], c),
        &fx["out.d_logits_fake"],
        FORWARD_TOL,
    );
}

/// Every tensor of `vs` against the fixture's `<prefix><name>` (errors scaled so that
/// [`STEP_TOL`] is the limit).
fn assert_state(what: &str, vs: &VarStore, fx: &BTreeMap<String, Tensor>, prefix: &str) {
    let mut worst = (0.0f64, String::new());
    for (name, t) in vs.variables() {
        let want = fx
            .get(&format!("{prefix}{name}"))
            .unwrap_or_else(|| panic!("{what}: fixture lacks {prefix}{name}"));
        // Mapping weights are stored ×100 (lr multiplier 0.01): allow 4 f32 ulps of the
        // tensor's magnitude where that exceeds the absolute tolerance.
        let ulps = 4.0 * f64::from(f32::EPSILON) * want.abs().max().double_value(&[]);
        let err = max_abs(&t, want) * STEP_TOL / STEP_TOL.max(ulps);
        if err > worst.0 {
            worst = (err, name);
        }
    }
    eprintln!(
        "{what}: worst weight {} error {:.3e} (tolerance {STEP_TOL:.0e}, after ulp scaling)",
        worst.1, worst.0
    );
    assert!(
        worst.0 <= STEP_TOL,
        "{what}: {} differs by {:.3e}",
        worst.1,
        worst.0
    );
}

/// The phase's gradients against `grad.<phase>.<net>.<name>`, relative to each tensor's
/// largest official gradient, floored at 1e-2 of the phase's largest (R1 gives biases
/// gradients near 0: only f32 noise is left to compare there).
fn assert_grads(
    what: &str,
    opt: &Adam,
    grads: &[Tensor],
    fx: &BTreeMap<String, Tensor>,
    prefix: &str,
) {
    let phase_max = opt
        .params()
        .iter()
        .map(|(name, _)| fx[&format!("{prefix}{name}")].abs().max().double_value(&[]))
        .fold(0.0f64, f64::max);
    let mut worst = (0.0f64, String::new());
    for ((name, _), grad) in opt.params().iter().zip(grads) {
        let want = &fx[&format!("{prefix}{name}")];
        let scale = want.abs().max().double_value(&[]).max(1e-2 * phase_max);
        let err = max_abs(grad, want) / scale;
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    eprintln!(
        "{what}: worst gradient {} relative error {:.3e} (tolerance {GRAD_REL_TOL:.0e})",
        worst.1, worst.0
    );
    assert!(
        worst.0 <= GRAD_REL_TOL,
        "{what}: gradient of {} off by {:.3e}",
        worst.1,
        worst.0
    );
}

fn assert_adam(what: &str, opt: &Adam, fx: &BTreeMap<String, Tensor>, prefix: &str) {
    let state: BTreeMap<String, Tensor> = opt.state_tensors("").into_iter().collect();
    let mut worst = 0.0f64;
    for moment in ["exp_avg", "exp_avg_sq"] {
        let official = |name: &str| &fx[&format!("{prefix}{name}.{moment}")];
        let largest = opt
            .params()
            .iter()
            .map(|(name, _)| official(name).abs().max().double_value(&[]))
            .fold(0.0f64, f64::max);
        for (name, _) in opt.params() {
            let want = official(name);
            // The floor of assert_grads: exp_avg is the last gradient (β1 = 0).
            let scale = want.abs().max().double_value(&[]).max(1e-2 * largest);
            worst = worst.max(max_abs(&state[&format!("{name}.{moment}")], want) / scale);
        }
    }
    eprintln!("{what}: Adam moments worst relative error {worst:.3e}");
    assert!(
        worst <= GRAD_REL_TOL * 2.0,
        "{what}: Adam moments off by {worst:.3e}"
    );
}

fn mean(t: &Tensor) -> f64 {
    t.mean(Kind::Float).double_value(&[])
}

fn term(terms: &[(&'static str, f64)], name: &str) -> f64 {
    terms
        .iter()
        .find(|(k, _)| *k == name)
        .unwrap_or_else(|| panic!("term {name}"))
        .1
}

#[test]
fn one_training_step_with_both_lazy_regularisers_matches_the_official_loop() {
    let fx = read_fixture(FILE);
    let n = nets(&fx);
    let g_ema_vs = VarStore::new(Device::Cpu);
    Generator::new(&g_ema_vs.root(), &config()).unwrap();
    let mut g_ema_vs = g_ema_vs;
    g_ema_vs.copy(&n.g_vs).unwrap();
    let loss_config = LossConfig {
        style_mixing_prob: 0.0,
        r1_gamma: 10.0,
        ..LossConfig::default()
    };
    let mut loss = Stylegan2Loss::new(loss_config, NoiseMode::Const, Device::Cpu);
    let mut opt_g = lazy_adam(trainable(&n.g_vs), 0.002, G_REG_INTERVAL);
    let mut opt_d = lazy_adam(trainable(&n.d_vs), 0.002, D_REG_INTERVAL);
    let input = |phase: &str| {
        (
            &fx[&format!("in.step.gen_z.{phase}")],
            &fx[&format!("in.step.gen_c.{phase}")],
        )
    };
    let (real, real_c) = (&fx["in.step.real"], &fx["in.step.real_c"]);

    let (z, c) = input("Gmain");
    let g_main = loss.g_main(&n.g, &n.d, z, c);
    assert_scalar(
        "Gmain loss",
        term(&g_main.terms, "loss_G"),
        &fx["loss.Gmain"].reshape([1]),
        LOSS_TOL,
    );
    let grads = optimizer_step(&mut opt_g, &g_main.loss);
    assert_grads("Gmain", &opt_g, &grads, &fx, "grad.Gmain.G.");
    assert_state("G after Gmain", &n.g_vs, &fx, "after.Gmain.G.");

    let (z, c) = input("Greg");
    let greg = loss.g_path_length(&n.g, z, c, &fx["in.step.pl_noise"], G_REG_INTERVAL as f64);
    assert_scalar(
        "path-length penalty",
        term(&greg.terms, "pl_penalty"),
        &fx["loss.pl_penalty"].mean(Kind::Float).reshape([1]),
        LOSS_TOL,
    );
    assert_scalar(
        "pl_mean",
        loss.pl_mean.double_value(&[]),
        &fx["loss.pl_mean"].reshape([1]),
        LOSS_TOL,
    );
    let grads = optimizer_step(&mut opt_g, &greg.loss);
    assert_grads("Greg", &opt_g, &grads, &fx, "grad.Greg.G.");
    assert_state("G after Greg", &n.g_vs, &fx, "after.Greg.G.");
    assert_adam("G", &opt_g, &fx, "adam.G.");

    let (z, c) = input("Dmain");
    let dmain = loss.d_loss((&n.g, &n.d), (real, real_c), (z, c), true, false, 1.0);
    assert_scalar(
        "Dmain fake",
        term(&dmain.terms, "loss_D_fake"),
        &fx["loss.Dgen"].reshape([1]),
        LOSS_TOL,
    );
    assert_scalar(
        "Dmain real",
        term(&dmain.terms, "loss_D_real"),
        &fx["loss.Dreal"].reshape([1]),
        LOSS_TOL,
    );
    let grads = optimizer_step(&mut opt_d, &dmain.loss);
    assert_grads("Dmain", &opt_d, &grads, &fx, "grad.Dmain.D.");
    assert_state("D after Dmain", &n.d_vs, &fx, "after.Dmain.D.");

    let (z, c) = input("Dreg");
    let dreg = loss.d_loss(
        (&n.g, &n.d),
        (real, real_c),
        (z, c),
        false,
        true,
        D_REG_INTERVAL as f64,
    );
    assert_scalar(
        "R1 penalty",
        term(&dreg.terms, "r1_penalty"),
        &Tensor::from(mean(&fx["loss.r1_penalty"])).reshape([1]),
        LOSS_TOL,
    );
    let grads = optimizer_step(&mut opt_d, &dreg.loss);
    assert_grads("Dreg", &opt_d, &grads, &fx, "grad.Dreg.D.");
    assert_state("D after Dreg", &n.d_vs, &fx, "after.Dreg.D.");
    assert_adam("D", &opt_d, &fx, "adam.D.");

    // G_ema: batch 4, ema_kimg 0.01 → β = 0.5^(4/10).
    let beta = 0.5f64.powf(4.0 / 10.0);
    assert_scalar("ema β", beta, &fx["step.ema_beta"].reshape([1]), 1e-12);
    update_ema(&n.g_vs, &g_ema_vs, beta);
    assert_state("G_ema", &g_ema_vs, &fx, "after.ema.G_ema.");
}

/// `scripts/convert_checkpoint.py stylegan2` on an official snapshot pickle of the
/// fixture's G (gen_stylegan2.py writes both): the sampler's loader rebuilds it from the
/// metadata and generates the official images.
#[test]
fn a_converted_official_snapshot_loads_and_generates_the_official_images() {
    let fx = read_fixture(FILE);
    let path = parity_official_common::fixture_path("stylegan2_converted.safetensors");
    let (_vs, g) = histodiff_stages::artifact::generator::load(&path, Device::Cpu)
        .expect("a converted snapshot is a generator artifact");
    assert_eq!(g.config(), &config());
    let trunc = Truncation {
        psi: 0.7,
        cutoff: None,
    };
    let img = tch::no_grad(|| g.generate(&fx["in.z"], &fx["in.c"], trunc, NoiseMode::Const));
    assert_close(
        "converted G_ema(z, c, ψ 0.7)",
        &img,
        &fx["out.img_trunc"],
        FORWARD_TOL,
    );
}
