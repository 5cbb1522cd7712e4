//! Every paper-size model takes one training step on CPU — forward, loss, backward, Adam
//! step — in f32 and under the bf16 autocast it would use on a GPU, from the same weights
//! and batch; the bf16 step must track the f32 one: the parameter count is SPEC's, the loss
//! is within a relative tolerance, and the flattened gradient of all parameters has a
//! cosine similarity and a relative norm error within bounds. Each bound is the value
//! measured on this CPU (libtorch 2.13.0, oneDNN bf16) with margin; the measured value is
//! in the comment beside it and printed by the test.
//!
//! The models run one at a time (a static mutex): the official UNet with its gradients and
//! Adam state alone needs about 5 GB. Measured run times on 2 cores shared with other work
//! (load ≈ 4.5): autoencoder 130 s, UNet 131 s, ϕ 36 s, ViT-B/16 26 s. Zero-initialised layers (the UNet's output convs
//! and `proj_out`s) get small random weights first, as a trained model has, so that every
//! layer carries gradient and the comparison covers the whole network.

use histodiff_stages::diffusion::loss::diffusion_loss;
use histodiff_stages::diffusion::{BetaSchedule, EpsLoss, NoiseSchedule};
use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use histodiff_stages::models::unet::{presets, EncoderUNetModel, UNetModel};
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::train::autocast::{AutocastGuard, Precision};
use histodiff_stages::train::optim::{Adam, AdamConfig};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How far the bf16 step may be from the f32 step.
struct Bounds {
    /// |loss_bf16 − loss_f32| / |loss_f32|.
    loss_rel: f64,
    /// Minimum cosine similarity of the flattened gradients.
    grad_cosine: f64,
    /// ‖g_bf16 − g_f32‖ / ‖g_f32‖.
    grad_rel_norm: f64,
}

/// Builds a model at the given root and returns its training loss on a fixed batch.
type Build<'a> = &'a dyn Fn(&nn::Path) -> Box<dyn Fn() -> Tensor>;

struct Case<'a> {
    name: &'static str,
    /// Parameter count of SPEC (§2.3, §3.1, §5.2, §8.1).
    params: i64,
    adam: AdamConfig,
    bounds: Bounds,
    build: Build<'a>,
}

/// What one step left behind.
struct Step {
    loss: f64,
    /// Every parameter's gradient, flattened and concatenated in name order.
    grad: Tensor,
    params: i64,
    seconds: f64,
}

/// Same seed ⇒ same weights (and same draws in the forward pass) for both precisions.
const SEED: i64 = 20230708;

/// Gives every all-zero variable N(0, 0.02²) values (see the module doc), in name order:
/// the store's map iterates in a different order each time, and the draws must land on the
/// same tensors in both runs.
fn fill_zero_layers(vs: &nn::VarStore) {
    let _guard = tch::no_grad_guard();
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, mut var) in variables {
        if var.abs().max().double_value(&[]) == 0.0 {
            var.copy_(&(var.randn_like() * 0.02));
        }
    }
}

fn train_step(case: &Case, precision: Precision) -> Step {
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(Device::Cpu);
    let loss_fn = (case.build)(&vs.root());
    fill_zero_layers(&vs);
    let params = vs.variables().values().map(|t| t.numel() as i64).sum();
    let mut opt = Adam::new(&vs, case.adam);
    let start = Instant::now();
    // Forward and loss under autocast; backward and the step after it, as PyTorch's AMP
    // recipe does (backward ops follow the forward's dtypes by themselves, and the cast
    // cache must not outlive the weights it was made from).
    let loss = {
        let _autocast = AutocastGuard::enter(precision, Device::Cpu).expect("autocast on CPU");
        loss_fn()
    };
    loss.backward();
    let grad = {
        let _guard = tch::no_grad_guard();
        let flat: Vec<Tensor> = opt
            .params()
            .iter()
            .map(|(name, p)| {
                let g = p.grad();
                assert!(g.defined(), "{}: {name} has no gradient", case.name);
                g.flatten(0, -1)
            })
            .collect();
        Tensor::cat(&flat, 0)
    };
    opt.step();
    let seconds = start.elapsed().as_secs_f64();
    let finite = opt
        .params()
        .iter()
        .all(|(_, p)| p.isfinite().all().int64_value(&[]) == 1);
    assert!(
        finite,
        "{} {precision:?}: non-finite weights after the step",
        case.name
    );
    Step {
        loss: loss.double_value(&[]),
        grad,
        params,
        seconds,
    }
}

/// (a·b, ‖a‖², ‖b‖², ‖a − b‖²) in f64, in chunks so that no f64 copy of the whole vector exists.
fn gradient_sums(a: &Tensor, b: &Tensor) -> (f64, f64, f64, f64) {
    let _guard = tch::no_grad_guard();
    let chunk = 1 << 22;
    let (mut ab, mut aa, mut bb, mut dd) = (0.0, 0.0, 0.0, 0.0);
    for (a, b) in a.split(chunk, 0).iter().zip(b.split(chunk, 0).iter()) {
        let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
        ab += a.dot(&b).double_value(&[]);
        aa += a.dot(&a).double_value(&[]);
        bb += b.dot(&b).double_value(&[]);
        let d = &a - &b;
        dd += d.dot(&d).double_value(&[]);
    }
    (ab, aa, bb, dd)
}

fn check(case: Case) {
    tch::set_num_threads(2);
    let f32_step = train_step(&case, Precision::F32);
    let bf16_step = train_step(&case, Precision::Bf16);
    assert_eq!(
        (f32_step.params, bf16_step.params),
        (case.params, case.params),
        "{}: parameter count",
        case.name
    );
    let (ab, aa, bb, dd) = gradient_sums(&f32_step.grad, &bf16_step.grad);
    let cosine = ab / (aa.sqrt() * bb.sqrt());
    let rel_norm = dd.sqrt() / aa.sqrt();
    let loss_rel = (bf16_step.loss - f32_step.loss).abs() / f32_step.loss.abs();
    let b = &case.bounds;
    eprintln!(
        "{}: {} parameters; loss f32 {:.6e}, bf16 {:.6e}, rel. diff {loss_rel:.2e} (bound {:.0e}); \
         gradient cosine {cosine:.6} (bound {}), rel. norm error {rel_norm:.3e} (bound {:.0e}); \
         step time f32 {:.1} s, bf16 {:.1} s",
        case.name,
        case.params,
        f32_step.loss,
        bf16_step.loss,
        b.loss_rel,
        b.grad_cosine,
        b.grad_rel_norm,
        f32_step.seconds,
        bf16_step.seconds
    );
    assert!(
        f32_step.loss.is_finite() && aa > 0.0,
        "{}: a real f32 step",
        case.name
    );
    // bf16 rounding leaves ~1e-2 of relative gradient difference: far less means the
    // guard did not lower anything and the comparison would be vacuous.
    assert!(
        rel_norm >= 1e-3,
        "{}: bf16 gradients equal the f32 ones ({rel_norm:.1e}): autocast did not run",
        case.name
    );
    assert!(
        loss_rel <= b.loss_rel,
        "{}: loss rel. diff {loss_rel}",
        case.name
    );
    assert!(
        cosine >= b.grad_cosine,
        "{}: gradient cosine {cosine}",
        case.name
    );
    assert!(
        rel_norm <= b.grad_rel_norm,
        "{}: gradient rel. norm error {rel_norm}",
        case.name
    );
}

fn cpu(kind: Kind) -> (Kind, Device) {
    (kind, Device::Cpu)
}

#[test]
fn autoencoder_kl_f4_step_on_a_256px_image() {
    // Held from the first draw: libtorch's generator is process-wide, and another test's
    // manual_seed between our seeding and our initialisation would change our weights.
    let _one = one_at_a_time();
    // The generator step of SPEC §2.5 without its two external-weight terms: LPIPS needs
    // VGG16 and LPIPS weights, and the GAN term is 0 until disc_start (50001 steps).
    // L = Σ|x − x̂| / B + 1e-6 · KL / B, with the posterior sampled with fixed noise.
    tch::manual_seed(1);
    let x = Tensor::rand([1, 3, 256, 256], cpu(Kind::Float)) * 2.0 - 1.0;
    let noise = Tensor::randn([1, 3, 64, 64], cpu(Kind::Float));
    let build = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
        let ae = AutoencoderKL::new(root, AutoencoderConfig::default()).expect("kl-f4");
        let (x, noise) = (x.shallow_clone(), noise.shallow_clone());
        Box::new(move || {
            let posterior = ae.encode(&x, true).expect("256² input");
            let z = posterior.sample_with_noise(&noise).expect("noise shape");
            let rec = ae.decode(&z, true).expect("latent shape");
            let nll = (&rec - &x).abs().sum(Kind::Float);
            nll + posterior.kl().sum(Kind::Float) * 1e-6
        })
    };
    check(Case {
        name: "AutoencoderKL kl-f4",
        params: 55_312_063,
        adam: AdamConfig {
            beta1: 0.5,
            beta2: 0.9,
            ..AdamConfig::adam(4.5e-6)
        },
        bounds: Bounds {
            loss_rel: 1e-3,      // measured 4.2e-5
            grad_cosine: 0.999,  // measured 0.99985
            grad_rel_norm: 5e-2, // measured 1.7e-2
        },
        build: &build,
    });
}

#[test]
fn official_unet_step_on_a_64px_latent() {
    // Held from the first draw: libtorch's generator is process-wide, and another test's
    // manual_seed between our seeding and our initialisation would change our weights.
    let _one = one_at_a_time();
    // SPEC §4.2: z_t = √ᾱ_t z0 + √(1−ᾱ_t) ε at a fixed t, L2 ε-loss (paper Eq. 3), AdamW.
    tch::manual_seed(2);
    let z0 = Tensor::randn([1, 3, 64, 64], cpu(Kind::Float));
    let noise = Tensor::randn([1, 3, 64, 64], cpu(Kind::Float));
    let t = Tensor::from_slice(&[517i64]);
    let build = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
        let unet = UNetModel::new(root, &presets::histodiffaug_unet()).expect("paper preset");
        let schedule = NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("schedule");
        let (z0, noise, t) = (z0.shallow_clone(), noise.shallow_clone(), t.shallow_clone());
        Box::new(move || {
            let mut eps = |z: &Tensor, t: &Tensor| unet.forward_t(z, t, true);
            diffusion_loss(&schedule, &mut eps, &z0, &t, &noise, EpsLoss::L2).expect("loss")
        })
    };
    check(Case {
        name: "UNet histodiffaug_unet",
        params: 294_963_459,
        adam: AdamConfig::adamw(5e-5, 0.01),
        bounds: Bounds {
            loss_rel: 1e-3,      // measured 3.2e-5
            grad_cosine: 0.999,  // measured 0.99989
            grad_rel_norm: 5e-2, // measured 1.5e-2
        },
        build: &build,
    });
}

#[test]
fn latent_classifier_step_on_a_64px_latent() {
    // Held from the first draw: libtorch's generator is process-wide, and another test's
    // manual_seed between our seeding and our initialisation would change our weights.
    let _one = one_at_a_time();
    // SPEC §5.2 (paper-faithful Eq. 6): cross-entropy of ϕ(z_t, t), AdamW(5e-5, wd 0.05).
    tch::manual_seed(3);
    let z_t = Tensor::randn([1, 3, 64, 64], cpu(Kind::Float));
    let t = Tensor::from_slice(&[517i64]);
    let label = Tensor::from_slice(&[4i64]);
    let build = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
        let phi = EncoderUNetModel::new(root, &presets::latent_classifier(9)).expect("ϕ");
        let (z_t, t, label) = (
            z_t.shallow_clone(),
            t.shallow_clone(),
            label.shallow_clone(),
        );
        Box::new(move || {
            phi.forward_t(&z_t, &t, true)
                .cross_entropy_for_logits(&label)
        })
    };
    check(Case {
        name: "latent classifier ϕ",
        params: 51_453_961,
        adam: AdamConfig::adamw(5e-5, 0.05),
        bounds: Bounds {
            loss_rel: 2e-2,      // measured 4.4e-3
            grad_cosine: 0.999,  // measured 0.99990
            grad_rel_norm: 5e-2, // measured 1.4e-2
        },
        build: &build,
    });
}

#[test]
fn vit_b16_step_on_two_224px_images() {
    // Held from the first draw: libtorch's generator is process-wide, and another test's
    // manual_seed between our seeding and our initialisation would change our weights.
    let _one = one_at_a_time();
    // SPEC §8.1: ViT-B/16, 9 classes, cross-entropy, AdamW(1e-4).
    tch::manual_seed(4);
    let images = Tensor::randn([2, 3, 224, 224], cpu(Kind::Float));
    let labels = Tensor::from_slice(&[2i64, 7]);
    let build = |root: &nn::Path| -> Box<dyn Fn() -> Tensor> {
        let vit = VisionTransformer::new(root, VitConfig::base_16(9)).expect("ViT-B/16");
        let (images, labels) = (images.shallow_clone(), labels.shallow_clone());
        Box::new(move || {
            vit.forward_t(&images, true)
                .cross_entropy_for_logits(&labels)
        })
    };
    check(Case {
        name: "ViT-B/16",
        params: 85_805_577,
        adam: AdamConfig::adamw(1e-4, 0.05),
        bounds: Bounds {
            loss_rel: 1e-2,      // measured 2.4e-3
            grad_cosine: 0.999,  // measured 0.99993
            grad_rel_norm: 5e-2, // measured 1.1e-2
        },
        build: &build,
    });
}
