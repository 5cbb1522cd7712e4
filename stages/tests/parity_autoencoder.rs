//! Parity of the kl-f4 autoencoder, LPIPS, the PatchGAN discriminator and the
//! LPIPSWithDiscriminator loss against the PyTorch references of
//! tests/fixtures/gen_autoencoder.py (and, for the encoder/decoder, diffusers' AutoencoderKL),
//! plus key-set/shape/parameter-count checks at paper scale and the checkpoint converter.

use histodiff_stages::losses::{AeLossConfig, LpipsWithDiscriminator};
use histodiff_stages::models::autoencoder::{
    AutoencoderConfig, AutoencoderError, AutoencoderKL, DiagonalGaussian,
};
use histodiff_stages::models::discriminator::{DiscriminatorConfig, NLayerDiscriminator};
use histodiff_stages::models::lpips::Lpips;
use histodiff_stages::weights::{load_strict, load_strict_prefixed, read_tensors};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_autoencoder.py";
/// Forward outputs in f32: max abs error.
const FORWARD_TOL: f64 = 1e-4;
/// Gradients: max abs error relative to the largest reference entry of the tensor.
const GRAD_REL_TOL: f64 = 1e-3;
/// Weights after one Adam step (lr 1e-3): max abs error.
const ADAM_TOL: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
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

fn tensors(name: &str) -> HashMap<String, Tensor> {
    read_tensors(&fixture(name))
        .expect("readable fixture")
        .into_iter()
        .collect()
}

fn max_abs(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "shape mismatch");
    (got.to_kind(Kind::Double) - want.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) {
    let err = max_abs(got, want);
    eprintln!("{what}: max abs error {err:.3e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{what}: max abs error {err:.3e} > {tol:.0e}");
}

fn assert_scalar(what: &str, got: f64, want: &Tensor, rel_tol: f64) {
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

fn is_io(key: &str) -> bool {
    key.starts_with("io.")
}

fn load_ae(file: &str, config: AutoencoderConfig) -> (VarStore, AutoencoderKL) {
    let mut vs = VarStore::new(Device::Cpu);
    let ae = AutoencoderKL::new(&vs.root(), config).expect("valid config");
    load_strict(&mut vs, &fixture(file), |k| {
        is_io(k) || k.starts_with("loss.")
    })
    .expect("strict load");
    (vs, ae)
}

#[test]
fn autoencoder_matches_reference_and_diffusers() {
    let (_vs, ae) = load_ae("autoencoder_tiny.safetensors", AutoencoderConfig::tiny());
    let io = tensors("autoencoder_tiny.safetensors");
    let _guard = tch::no_grad_guard();
    let posterior = ae.encode(&io["io.x"], false).unwrap();
    assert_close(
        "encoder moments vs reference",
        &posterior.moments,
        &io["io.moments"],
        FORWARD_TOL,
    );
    assert_close(
        "encoder moments vs diffusers",
        &posterior.moments,
        &io["io.diffusers.moments"],
        FORWARD_TOL,
    );
    let z = posterior.sample_with_noise(&io["io.noise"]).unwrap();
    assert_close("posterior sample", &z, &io["io.z_sample"], FORWARD_TOL);
    let kl_err = max_abs(&posterior.kl(), &io["io.kl"]) / io["io.kl"].abs().max().double_value(&[]);
    eprintln!("posterior kl: relative error {kl_err:.3e} (tolerance 1e-5)");
    assert!(kl_err <= 1e-5);
    let decoded = ae.decode(&z, false).unwrap();
    assert_close(
        "decoder output vs reference",
        &decoded,
        &io["io.decoded"],
        FORWARD_TOL,
    );
    assert_close(
        "decoder output vs diffusers",
        &decoded,
        &io["io.diffusers.decoded"],
        FORWARD_TOL,
    );
    let decoded_mode = ae.decode(&posterior.mode(), false).unwrap();
    assert_close(
        "decoder output of the mode",
        &decoded_mode,
        &io["io.decoded_mode"],
        FORWARD_TOL,
    );
}

#[test]
fn autoencoder_with_level_attention_matches_reference() {
    let config = AutoencoderConfig {
        num_res_blocks: 2,
        attn_resolutions: vec![16],
        ..AutoencoderConfig::tiny()
    };
    let (vs, ae) = load_ae("autoencoder_tiny_attn.safetensors", config);
    assert!(vs
        .variables()
        .contains_key("encoder.down.1.attn.1.q.weight"));
    assert!(vs
        .variables()
        .contains_key("decoder.up.1.attn.2.proj_out.weight"));
    let io = tensors("autoencoder_tiny_attn.safetensors");
    let _guard = tch::no_grad_guard();
    let posterior = ae.encode(&io["io.x"], false).unwrap();
    assert_close(
        "attn encoder moments",
        &posterior.moments,
        &io["io.moments"],
        FORWARD_TOL,
    );
    let decoded = ae.decode(&posterior.mode(), false).unwrap();
    assert_close(
        "attn decoder output",
        &decoded,
        &io["io.decoded_mode"],
        FORWARD_TOL,
    );
}

#[test]
fn gaussian_clamps_logvar_like_reference() {
    let io = tensors("gaussian.safetensors");
    let posterior = DiagonalGaussian::new(io["io.moments"].shallow_clone()).unwrap();
    assert_eq!(posterior.logvar.max().double_value(&[]), 20.0);
    assert_eq!(posterior.logvar.min().double_value(&[]), -30.0);
    let sample = posterior.sample_with_noise(&io["io.noise"]).unwrap();
    let scale = io["io.sample"].abs().max().double_value(&[]);
    assert_close(
        "clamped sample / max|sample|",
        &(sample / scale),
        &(&io["io.sample"] / scale),
        1e-6,
    );
    assert_close(
        "clamped std / max|std|",
        &(&posterior.std / 2.2e4),
        &(&io["io.std"] / 2.2e4),
        1e-6,
    );
    let kl_err = max_abs(&posterior.kl(), &io["io.kl"]) / io["io.kl"].abs().max().double_value(&[]);
    eprintln!("clamped kl: relative error {kl_err:.3e} (tolerance 1e-6)");
    assert!(kl_err <= 1e-6);
    let wrong = Tensor::zeros([1, 3, 4, 4], (Kind::Float, Device::Cpu));
    assert!(matches!(
        posterior.sample_with_noise(&wrong),
        Err(AutoencoderError::Shape { .. })
    ));
}

#[test]
fn lpips_matches_reference() {
    let mut vs = VarStore::new(Device::Cpu);
    let lpips = Lpips::new(&vs.root());
    load_strict(&mut vs, &fixture("lpips.safetensors"), is_io).expect("strict load");
    assert!(vs.trainable_variables().is_empty(), "LPIPS must be frozen");
    let io = tensors("lpips.safetensors");
    let value = lpips.forward(&io["io.a"], &io["io.b"]).unwrap();
    assert_close("lpips value", &value, &io["io.value"], 1e-5);
    assert!(lpips
        .forward(&io["io.a"], &io["io.b"].narrow(2, 0, 16))
        .is_err());
}

#[test]
fn discriminator_matches_reference_in_eval_and_train_mode() {
    let mut vs = VarStore::new(Device::Cpu);
    let disc = NLayerDiscriminator::new(&vs.root(), &DiscriminatorConfig::default());
    load_strict(&mut vs, &fixture("discriminator.safetensors"), is_io).expect("strict load");
    let io = tensors("discriminator.safetensors");
    let _guard = tch::no_grad_guard();
    assert_close(
        "discriminator eval-mode BN",
        &disc.forward_t(&io["io.x"], false),
        &io["io.out_eval"],
        FORWARD_TOL,
    );
    assert_close(
        "discriminator train-mode BN",
        &disc.forward_t(&io["io.x"], true),
        &io["io.out_train"],
        FORWARD_TOL,
    );
    let vars = vs.variables();
    for (key, want) in io.iter().filter(|(k, _)| k.starts_with("io.after_train.")) {
        let name = key.trim_start_matches("io.after_train.");
        assert_close(&format!("running stat {name}"), &vars[name], want, 1e-5);
    }
}

fn adam(vs: &VarStore) -> nn::Optimizer {
    nn::Adam {
        beta1: 0.5,
        beta2: 0.9,
        wd: 0.0,
        eps: 1e-8,
        amsgrad: false,
    }
    .build(vs, 1e-3)
    .unwrap()
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
    let mut opt = adam(vs);
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

#[test]
fn ae_loss_steps_match_reference() {
    let file = "ae_loss.safetensors";
    let (ae_vs, ae) = load_ae(file, AutoencoderConfig::tiny());
    let mut loss_vs = VarStore::new(Device::Cpu);
    let loss = LpipsWithDiscriminator::new(
        &loss_vs.root(),
        AeLossConfig {
            disc_start: 5,
            ..Default::default()
        },
    );
    load_strict_prefixed(&mut loss_vs, &fixture(file), "loss.", "").expect("strict load of loss.*");
    assert_eq!(
        loss_vs.trainable_variables().len(),
        13,
        "only the discriminator trains"
    );
    let io = tensors(file);
    let x = &io["io.x"];

    // Generator (AE) step, terms and adaptive weight.
    let posterior = ae.encode(x, true).unwrap();
    let recon = ae
        .decode(&posterior.sample_with_noise(&io["io.noise"]).unwrap(), true)
        .unwrap();
    let g = loss
        .generator_loss(x, &recon, &posterior, 5, Some(ae.last_layer()), true)
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

    // Backward and one Adam step of the AE optimizer.
    check_backward_and_adam("AE", &ae_vs, "", &g.loss, &io, ("io.grad.", "io.adam."));

    // Discriminator step, its Adam step, and the BN running statistics after three passes.
    let d = loss.discriminator_loss(x, &recon, 5, true).unwrap();
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
    check_backward_and_adam(
        "discriminator",
        &loss_vs,
        "discriminator.",
        &d.loss,
        &io,
        ("io.disc_grad.", "io.disc_adam."),
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
    assert!(loss
        .generator_loss(&x, &x.narrow(3, 0, 16), &posterior, 0, None, false)
        .is_err());
}

#[test]
fn converted_checkpoint_loads_strictly() {
    let (vs, _ae) = load_ae("ae_loss.safetensors", AutoencoderConfig::tiny());
    let mut converted = VarStore::new(Device::Cpu);
    let _ae2 = AutoencoderKL::new(&converted.root(), AutoencoderConfig::tiny()).unwrap();
    // No ignore: the converter must have dropped loss.* and num_batches_tracked.
    load_strict(&mut converted, &fixture("ae_converted.safetensors"), |_| {
        false
    })
    .expect("strict load");
    let original = vs.variables();
    for (name, var) in converted.variables() {
        assert_eq!(
            max_abs(&var, &original[&name]),
            0.0,
            "{name} changed in conversion"
        );
    }
    let mut with_loss = VarStore::new(Device::Cpu);
    let _ae3 = AutoencoderKL::new(&with_loss.root(), AutoencoderConfig::tiny()).unwrap();
    let _loss = LpipsWithDiscriminator::new(&(with_loss.root() / "loss"), AeLossConfig::default());
    load_strict(
        &mut with_loss,
        &fixture("ae_converted_keep_loss.safetensors"),
        |_| false,
    )
    .expect("strict load");
}

fn shapes(vs: &VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect()
}

fn reference_shapes(doc: &serde_json::Value, part: &str) -> BTreeMap<String, Vec<i64>> {
    serde_json::from_value(doc[part].clone()).expect("{name: shape} object")
}

fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}

#[test]
fn paper_scale_keys_shapes_and_counts() {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("autoencoder_paper_keys.json")).unwrap(),
    )
    .unwrap();
    let _guard = tch::no_grad_guard();
    let ae_vs = VarStore::new(Device::Cpu);
    let _ae = AutoencoderKL::new(&ae_vs.root(), AutoencoderConfig::default()).unwrap();
    assert_eq!(shapes(&ae_vs), reference_shapes(&doc, "autoencoder"));
    assert_eq!(
        parameter_count(&ae_vs),
        55_312_063,
        "SPEC §2.3 AE parameter count"
    );
    assert_eq!(doc["autoencoder_parameters"], 55_312_063);

    let loss_vs = VarStore::new(Device::Cpu);
    let _loss = LpipsWithDiscriminator::new(&loss_vs.root(), AeLossConfig::default());
    assert_eq!(shapes(&loss_vs), reference_shapes(&doc, "loss"));
    assert_eq!(
        parameter_count(&loss_vs),
        2_765_633,
        "SPEC §2.3 discriminator parameter count"
    );
    assert_eq!(doc["discriminator_parameters"], 2_765_633);
}

#[test]
fn config_validation_and_input_shapes() {
    assert!(AutoencoderConfig::default().validate().is_ok());
    let narrow = AutoencoderConfig {
        ch: 16,
        ..AutoencoderConfig::tiny()
    };
    assert!(matches!(
        narrow.validate(),
        Err(AutoencoderError::Config(_))
    ));
    let odd = AutoencoderConfig {
        resolution: 33,
        ..AutoencoderConfig::tiny()
    };
    assert!(odd.validate().is_err());
    let vs = VarStore::new(Device::Cpu);
    let ae = AutoencoderKL::new(&vs.root(), AutoencoderConfig::tiny()).unwrap();
    let _guard = tch::no_grad_guard();
    let bad_channels = Tensor::zeros([1, 4, 32, 32], (Kind::Float, Device::Cpu));
    assert!(ae.encode(&bad_channels, false).is_err());
    let bad_size = Tensor::zeros([1, 3, 31, 32], (Kind::Float, Device::Cpu));
    assert!(ae.encode(&bad_size, false).is_err());
    assert!(ae
        .decode(
            &Tensor::zeros([1, 4, 8, 8], (Kind::Float, Device::Cpu)),
            false
        )
        .is_err());
    let (recon, posterior) = ae
        .forward(
            &Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)),
            true,
            false,
        )
        .unwrap();
    assert_eq!(recon.size(), [2, 3, 32, 32]);
    assert_eq!(posterior.mean.size(), [2, 3, 16, 16]);
}
