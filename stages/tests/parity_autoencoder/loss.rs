//! Training parity of LPIPSWithDiscriminator: both steps' terms, the adaptive weight,
//! gradients and one step of each optimizer the kinds use (against torch.optim.Adam),
//! BatchNorm running statistics.

use crate::fixtures::*;
use histodiff_stages::losses::{AeLossConfig, DiscLoss, LpipsWithDiscriminator};
use histodiff_stages::models::autoencoder::{AutoencoderConfig, DiagonalGaussian};
use histodiff_stages::train::autoencoder::optimizer;
use histodiff_stages::train::named::trainable;
use histodiff_stages::train::optim::Adam;
use histodiff_stages::weights::load_strict_prefixed;
use std::collections::HashMap;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The optimizer train-autoencoder and finetune-decoder step (train::autoencoder), over
/// the trainable variables of `vs` under `prefix`, at the fixture's lr 1e-3.
fn adam(vs: &VarStore, prefix: &str) -> Adam {
    let params = trainable(vs)
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    optimizer(params, 1e-3)
}

/// Some AE gradients are analytically zero and hold only rounding noise (~1e-5 here, the
/// largest gradient being ~1e2): conv biases feeding a GroupNorm with one channel per
/// group, and attention key biases (softmax ignores a shift shared by all keys). Gradient
/// errors are therefore measured relative to max(the tensor's largest reference entry,
/// this fraction of the model's largest gradient).
const GRAD_FLOOR_FRACTION: f64 = 1e-3;
/// Adam's first step moves each weight by ≈ ±lr·sign(g): elements whose reference gradient
/// is below this fraction of the model's largest gradient (noise level) move in an arbitrary
/// direction on either side, so they are left out of the weight comparison and counted.
const ADAM_FLOOR_FRACTION: f64 = 1e-5;

/// Trainable variables of `vs` whose names start with `strip`, keyed by the rest of the name
/// (the name the fixture uses after its `io.<what>.` prefix).
fn trained(vs: &VarStore, strip: &str) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(k, v)| k.starts_with(strip) && v.requires_grad())
        .map(|(k, v)| (k[strip.len()..].to_string(), v))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn largest_reference_gradient(io: &HashMap<String, Tensor>, grads: &str) -> f64 {
    io.iter()
        .filter(|(k, _)| k.starts_with(grads))
        .map(|(_, g)| g.abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

/// Largest per-tensor gradient error relative to the tensor's scale (see above).
fn worst_grad_error(vars: &[(String, Tensor)], io: &HashMap<String, Tensor>, grads: &str) -> f64 {
    let floor = GRAD_FLOOR_FRACTION * largest_reference_gradient(io, grads);
    let mut worst: f64 = 0.0;
    for (name, var) in vars {
        let want = &io[&format!("{grads}{name}")];
        let scale = want.abs().max().double_value(&[]).max(floor);
        let err = max_abs(&var.grad(), want) / scale;
        if err > GRAD_REL_TOL {
            eprintln!("  gradient of {name}: relative error {err:.3e}");
        }
        worst = worst.max(err);
    }
    worst
}

/// Largest weight error after one Adam step, on elements with a real gradient.
fn worst_adam_error(
    vars: &[(String, Tensor)],
    io: &HashMap<String, Tensor>,
    grads: &str,
    updated: &str,
) -> f64 {
    let floor = ADAM_FLOOR_FRACTION * largest_reference_gradient(io, grads);
    let (mut worst, mut skipped, mut total): (f64, i64, i64) = (0.0, 0, 0);
    for (name, var) in vars {
        let significant = io[&format!("{grads}{name}")].abs().ge(floor);
        skipped += significant.logical_not().sum(Kind::Int64).int64_value(&[]);
        total += var.numel() as i64;
        let diff =
            (var - &io[&format!("{updated}{name}")]).abs() * significant.to_kind(Kind::Float);
        worst = worst.max(diff.max().double_value(&[]));
    }
    eprintln!(
        "Adam step ({updated}*): {skipped} of {total} weights with |g| < {floor:.1e} not compared"
    );
    worst
}

/// Backward of `loss`, then checks the gradients and the weights after one Adam step.
fn check_backward_and_adam(
    what: &str,
    vs: &VarStore,
    strip: &str,
    loss: &Tensor,
    io: &HashMap<String, Tensor>,
    (grads, updated): (&str, &str),
) {
    let mut opt = adam(vs, strip);
    opt.zero_grad();
    loss.backward();
    let vars = trained(vs, strip);
    let grad_err = worst_grad_error(&vars, io, grads);
    eprintln!(
        "{what} gradients: worst relative error {grad_err:.3e} (tolerance {GRAD_REL_TOL:.0e})"
    );
    assert!(grad_err <= GRAD_REL_TOL, "{what} gradients");
    opt.step();
    let adam_err = worst_adam_error(&vars, io, grads, updated);
    eprintln!("{what} weights after Adam: max abs error {adam_err:.3e} (tolerance {ADAM_TOL:.0e})");
    assert!(adam_err <= ADAM_TOL, "{what} weights after Adam");
}

const LOSS_FILE: &str = "ae_loss.safetensors";
/// The fixture's global step: ≥ disc_start, so the GAN terms count.
const STEP: i64 = 5;

/// A loss at the fixture's settings, its store loaded strictly from the fixture's `loss.*`.
fn load_loss(disc_loss: DiscLoss) -> (VarStore, LpipsWithDiscriminator) {
    let mut vs = VarStore::new(Device::Cpu);
    let config = AeLossConfig {
        disc_start: STEP,
        disc_loss,
        ..Default::default()
    };
    let loss = LpipsWithDiscriminator::new(&vs.root(), config);
    load_strict_prefixed(&mut vs, &fixture(LOSS_FILE), "loss.", "").expect("strict load of loss.*");
    (vs, loss)
}

/// The AE step: loss terms, adaptive weight, gradients and one Adam step of the AE
/// optimizer. Returns the reconstruction the discriminator step uses.
fn check_generator_step(loss: &LpipsWithDiscriminator, io: &HashMap<String, Tensor>) -> Tensor {
    let (ae_vs, ae) = load_ae(LOSS_FILE, AutoencoderConfig::tiny());
    let x = &io["io.x"];
    let posterior = ae.encode(x, true).unwrap();
    let z = posterior.sample_with_noise(&io["io.noise"]).unwrap();
    let recon = ae.decode(&z, true).unwrap();
    let g = loss
        .generator_loss(x, &recon, &posterior, STEP, Some(ae.last_layer()), true)
        .unwrap();
    assert_scalar(
        "g step total",
        g.loss.double_value(&[]),
        &io["io.g.total"],
        1e-5,
    );
    assert_scalar("g step nll", g.nll, &io["io.g.nll"], 1e-5);
    assert_scalar("g step rec", g.rec, &io["io.g.rec"], 1e-5);
    assert_scalar("g step kl", g.kl, &io["io.g.kl"], 1e-5);
    assert_scalar("g step g_loss", g.g_loss, &io["io.g.g"], 1e-4);
    assert_scalar("g step d_weight", g.d_weight, &io["io.g.d_weight"], 1e-3);
    assert_scalar(
        "g step disc_factor",
        g.disc_factor,
        &io["io.g.disc_factor"],
        0.0,
    );
    check_backward_and_adam("AE", &ae_vs, "", &g.loss, io, ("io.grad.", "io.adam."));
    recon
}

/// The discriminator step (hinge, and vanilla on the same logits), its gradients and Adam
/// step, and the BatchNorm running statistics after its three train-mode passes.
fn check_discriminator_step(
    loss_vs: &VarStore,
    loss: &LpipsWithDiscriminator,
    recon: &Tensor,
    io: &HashMap<String, Tensor>,
) {
    let x = &io["io.x"];
    let d = loss.discriminator_loss(x, recon, STEP, true).unwrap();
    assert_scalar(
        "d step loss",
        d.loss.double_value(&[]),
        &io["io.d.disc"],
        1e-4,
    );
    assert_scalar(
        "d step logits_real",
        d.logits_real,
        &io["io.d.logits_real"],
        1e-4,
    );
    assert_scalar(
        "d step logits_fake",
        d.logits_fake,
        &io["io.d.logits_fake"],
        1e-4,
    );
    // Train-mode BN outputs use batch statistics only, so a second discriminator with the
    // same weights gives the same logits.
    let (_vanilla_vs, vanilla) = load_loss(DiscLoss::Vanilla);
    let v = vanilla.discriminator_loss(x, recon, STEP, true).unwrap();
    assert_scalar(
        "d step vanilla loss",
        v.loss.double_value(&[]),
        &io["io.d.vanilla"],
        1e-4,
    );
    let grads = ("io.disc_grad.", "io.disc_adam.");
    check_backward_and_adam(
        "discriminator",
        loss_vs,
        "discriminator.",
        &d.loss,
        io,
        grads,
    );
    let vars = loss_vs.variables();
    for (key, want) in io.iter().filter(|(k, _)| k.starts_with("io.disc_after.")) {
        let name = format!("discriminator.{}", key.trim_start_matches("io.disc_after."));
        assert_close(
            &format!("{name} after three train-mode passes"),
            &vars[&name],
            want,
            1e-5,
        );
    }
}

/// Both steps in Lightning's order: the generator step's discriminator pass updates the
/// BatchNorm running statistics the discriminator step starts from.
#[test]
fn ae_loss_steps_match_reference() {
    let (loss_vs, loss) = load_loss(DiscLoss::Hinge);
    assert_eq!(
        loss_vs.trainable_variables().len(),
        13,
        "only the discriminator trains"
    );
    let io = tensors(LOSS_FILE);
    let recon = check_generator_step(&loss, &io);
    check_discriminator_step(&loss_vs, &loss, &recon, &io);
}

#[test]
fn loss_schedule_and_eval_mode() {
    let vs = VarStore::new(Device::Cpu);
    let loss = LpipsWithDiscriminator::new(&vs.root(), AeLossConfig::default());
    assert_eq!(loss.disc_factor(50000), 0.0);
    assert_eq!(loss.disc_factor(50001), 1.0);
    let x = Tensor::zeros([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let posterior =
        DiagonalGaussian::new(Tensor::zeros([1, 6, 8, 8], (Kind::Float, Device::Cpu))).unwrap();
    let _guard = tch::no_grad_guard();
    // Without gradients (validation) the adaptive weight is 0, as upstream.
    let g = loss
        .generator_loss(&x, &x, &posterior, 60000, None, false)
        .unwrap();
    assert_eq!(g.d_weight, 0.0);
    // LPIPS was never loaded: its NaN weights make the loss NaN rather than silently L1-only.
    assert!(g.nll.is_nan() && g.loss.double_value(&[]).is_nan());
    assert!(loss
        .generator_loss(&x, &x.narrow(3, 0, 16), &posterior, 0, None, false)
        .is_err());
}
