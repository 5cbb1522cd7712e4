//! Parity of the diffusion maths (stages/src/diffusion) with tests/fixtures/gen_diffusion.py:
//! schedule buffers vs numpy float64 formulas and diffusers, DDIM tables and steps vs
//! diffusers' DDIMScheduler, DDPM steps vs DDPMScheduler, classifier guidance with the
//! tiny reference classifier's autograd gradient, and whole guided sampling loops.

use histodiff_stages::diffusion::guidance::official_alpha;
use histodiff_stages::diffusion::{
    condition_mean, condition_score, ddim_sample, ddim_step, ddpm::MeanGuidance, ddpm_sample,
    ddpm_step, log_prob_gradient, BetaSchedule, ClassifierGuidance, DdimSchedule, GivenNoise,
    GuidanceMode, NoiseSchedule, NoiseSource, SeededNoise,
};
use histodiff_stages::models::unet::{presets, EncoderUNetModel, UNetModel};
use histodiff_stages::weights::{load_tensors_strict, read_tensors};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const GENERATOR: &str = "tests/fixtures/gen_diffusion.py";

fn fixture() -> HashMap<String, Tensor> {
    let dir = std::env::var("HISTODIFF_FIXTURES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fixtures").to_string());
    let path = PathBuf::from(&dir).join("diffusion.safetensors");
    assert!(
        path.exists(),
        "missing fixture {}: run `python {GENERATOR} --out {dir}`",
        path.display()
    );
    read_tensors(&path)
        .expect("fixture readable")
        .into_iter()
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shape mismatch");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn report(what: &str, err: f64, tolerance: f64) {
    eprintln!("{what}: max abs error {err:.3e} (tolerance {tolerance:e})");
    assert!(err <= tolerance, "{what}: {err} > {tolerance}");
}

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("schedule")
}

/// Loads `prefix.*` tensors of the fixture into a store whose root is `prefix`.
fn load_prefixed(fx: &HashMap<String, Tensor>, vs: &mut nn::VarStore, prefix: &str) {
    let tensors = fx
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}.")))
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    load_tensors_strict(vs, prefix, tensors).expect("fixture weights match");
}

fn tiny_models(
    fx: &HashMap<String, Tensor>,
) -> (UNetModel, EncoderUNetModel, nn::VarStore, nn::VarStore) {
    let mut unet_vs = nn::VarStore::new(Device::Cpu);
    let unet =
        UNetModel::new(&(unet_vs.root() / "unet"), &presets::tiny_unet()).expect("tiny unet");
    load_prefixed(fx, &mut unet_vs, "unet");
    let mut cls_vs = nn::VarStore::new(Device::Cpu);
    let classifier = EncoderUNetModel::new(
        &(cls_vs.root() / "classifier"),
        &presets::tiny_classifier(5),
    )
    .expect("tiny classifier");
    load_prefixed(fx, &mut cls_vs, "classifier");
    (unet, classifier, unet_vs, cls_vs)
}

#[test]
fn schedule_buffers_match_float64_formulas_and_diffusers() {
    let fx = fixture();
    for (key, config) in [
        ("hd", BetaSchedule::histodiffaug()),
        ("ldm4", BetaSchedule::ldm4()),
    ] {
        let schedule = NoiseSchedule::new(config).expect("schedule");
        let mut worst: f64 = 0.0;
        for (name, ours) in schedule.buffers() {
            let reference = &fx[&format!("sched.{key}.{name}")];
            // f32 buffers: relative 1e-6 for large log values, absolute 1e-6 below 1.
            let err = ((ours.to_kind(Kind::Double) - reference.to_kind(Kind::Double)).abs()
                / reference.to_kind(Kind::Double).abs().clamp_min(1.0))
            .max()
            .double_value(&[]);
            worst = worst.max(err);
        }
        report(
            &format!("{key}: 12 buffers vs numpy float64 (error / max(1, |x|))"),
            worst,
            1e-6,
        );
        let ac = Tensor::from_slice(&schedule.alphas_cumprod).to_kind(Kind::Float);
        report(
            &format!("{key}: alphas_cumprod vs diffusers DDIMScheduler(scaled_linear)"),
            max_abs(&ac, &fx[&format!("diffusers.{key}.alphas_cumprod")]),
            1e-6,
        );
    }
    let hd = schedule();
    let rounded = |v: f64, digits: i32| (v * 10f64.powi(digits)).round() / 10f64.powi(digits);
    assert_eq!(rounded(hd.alphas_cumprod[0], 4), 0.9985, "SPEC §4.1 ᾱ_0");
    assert_eq!(
        rounded(hd.alphas_cumprod[499], 4),
        0.1511,
        "SPEC §4.1 ᾱ_499"
    );
    assert_eq!(
        rounded(hd.alphas_cumprod[999] * 1e4, 3),
        6.687,
        "SPEC §4.1 ᾱ_999"
    );
    assert_eq!(
        rounded(
            NoiseSchedule::new(BetaSchedule::ldm4())
                .unwrap()
                .alphas_cumprod[499],
            4
        ),
        0.1158,
        "SPEC §4.1 LDM-4 ᾱ_499"
    );
}

#[test]
fn ddim_tables_match_ldm() {
    let fx = fixture();
    let ddim = DdimSchedule::uniform(&schedule(), 200, 1.0).expect("200 steps");
    let tau: Vec<i64> = Vec::try_from(&fx["ddim200.timesteps"]).expect("int64");
    assert_eq!(ddim.timesteps, tau);
    assert_eq!(&ddim.timesteps[..3], &[1, 6, 11]);
    assert_eq!(*ddim.timesteps.last().unwrap(), 996);
    for (name, ours) in [
        ("alphas", &ddim.alphas),
        ("alphas_prev", &ddim.alphas_prev),
        ("sigmas", &ddim.sigmas),
    ] {
        report(
            &format!("ddim200.{name}"),
            max_abs(&Tensor::from_slice(ours), &fx[&format!("ddim200.{name}")]),
            1e-7,
        );
    }
    assert!(
        DdimSchedule::uniform(&schedule(), 1000, 0.0).is_err(),
        "S = T would index ᾱ_1000"
    );
    assert!(DdimSchedule::uniform(&schedule(), 0, 0.0).is_err());
}

#[test]
fn ddim_steps_match_diffusers() {
    let fx = fixture();
    for eta in [1.0, 0.0] {
        let ddim = DdimSchedule::uniform(&schedule(), 200, eta).expect("ddim");
        for i in [199usize, 120, 0] {
            let p = format!("ddimstep.eta{}.i{i}", eta as i64);
            let (next, x0) = ddim_step(
                &fx[&format!("{p}.x")],
                &fx[&format!("{p}.eps")],
                ddim.alphas[i],
                ddim.alphas_prev[i],
                ddim.sigmas[i],
                Some(&fx[&format!("{p}.noise")]),
            )
            .expect("step");
            report(
                &format!("{p} x_prev vs diffusers"),
                max_abs(&next, &fx[&format!("{p}.out")]),
                1e-5,
            );
            // x̂0 divides by √ᾱ_τ (0.026 at τ = 996), amplifying diffusers' f32 cumprod error.
            let reference = &fx[&format!("{p}.x0")];
            let scale = reference.abs().max().double_value(&[]).max(1.0);
            report(
                &format!("{p} x0 vs diffusers (error / max(1, max|x0|), max|x0| {scale:.1})"),
                max_abs(&x0, reference) / scale,
                1e-5,
            );
        }
    }
}

#[test]
fn ddpm_steps_match_diffusers() {
    let fx = fixture();
    let schedule = schedule();
    for t in [999i64, 500, 1, 0] {
        let p = format!("ddpmstep.t{t}");
        let (x, eps) = (&fx[&format!("{p}.x")], &fx[&format!("{p}.eps")]);
        let out =
            ddpm_step(&schedule, x, t, eps, None, Some(&fx[&format!("{p}.noise")])).expect("step");
        report(
            &format!("{p} vs diffusers DDPMScheduler"),
            max_abs(&out, &fx[&format!("{p}.out")]),
            1e-5,
        );
        let steps = Tensor::full([2], t, (Kind::Int64, Device::Cpu));
        let x0 = schedule
            .predict_start_from_noise(x, &steps, eps)
            .expect("x0");
        let (mean, _, _) = schedule.q_posterior(&x0, x, &steps).expect("posterior");
        report(
            &format!("{p} posterior mean vs formula"),
            max_abs(&mean, &fx[&format!("{p}.posterior_mean")]),
            1e-5,
        );
    }
    assert!(
        ddpm_step(
            &schedule,
            &fx["ddpmstep.t1.x"],
            1000,
            &fx["ddpmstep.t1.eps"],
            None,
            None
        )
        .is_err(),
        "t = T is out of range"
    );
}

#[test]
fn classifier_guidance_matches_reference_autograd() {
    let fx = fixture();
    let (_, classifier, _, _) = tiny_models(&fx);
    let schedule = schedule();
    let ddim = DdimSchedule::uniform(&schedule, 200, 1.0).expect("ddim");
    assert_eq!(ddim.timesteps[100], 501);
    let (x, t, y) = (&fx["guide.x"], &fx["guide.t"], &fx["guide.y"]);
    let grad = tch::no_grad(|| log_prob_gradient(&|z, s| classifier.forward(z, s), x, t, y));
    let scale = fx["guide.grad"].abs().max().double_value(&[]);
    report(
        &format!("∇ log p(y|z_t) (max |∇| {scale:.3})"),
        max_abs(&grad, &fx["guide.grad"]),
        1e-5,
    );
    let eps_hat = condition_score(&fx["guide.eps"], &grad, ddim.alphas[100], 2.5);
    report(
        "condition_score ε̂ (g = 2.5)",
        max_abs(&eps_hat, &fx["guide.eps_hat"]),
        1e-5,
    );
    let mut guidance = ClassifierGuidance {
        scale: 2.5,
        mode: GuidanceMode::ConditionScore,
        gradient: Box::new(|z: &Tensor, s: &Tensor| {
            log_prob_gradient(&|a, b| classifier.forward(a, b), z, s, y)
        }),
    };
    let guided = guidance
        .guide(&fx["guide.eps"], x, t, &ddim, 100)
        .expect("guide");
    report(
        "ClassifierGuidance::guide ε̂",
        max_abs(&guided, &fx["guide.eps_hat"]),
        1e-5,
    );
    let out = ddpm_step(
        &schedule,
        x,
        501,
        &fx["guide.eps"],
        Some(MeanGuidance {
            scale: 2.5,
            gradient: &grad,
        }),
        Some(&fx["guide.noise"]),
    )
    .expect("step");
    report(
        "guided ancestral step (condition_mean)",
        max_abs(&out, &fx["guide.ddpm_out"]),
        1e-5,
    );
    let steps = Tensor::full([2], 501, (Kind::Int64, Device::Cpu));
    let x0 = schedule
        .predict_start_from_noise(x, &steps, &fx["guide.eps"])
        .unwrap();
    let (mean, var, _) = schedule.q_posterior(&x0, x, &steps).unwrap();
    report(
        "condition_mean μ̂",
        max_abs(
            &condition_mean(&mean, &var, &grad, 2.5),
            &fx["guide.mean_hat"],
        ),
        1e-5,
    );
}

#[test]
fn guided_ddim_loop_matches_reference() {
    let fx = fixture();
    let (unet, classifier, _, _) = tiny_models(&fx);
    let y = &fx["guide.y"];
    for (name, steps, mode) in [
        ("ddim10", 10, GuidanceMode::ConditionScore),
        ("official50", 50, GuidanceMode::OfficialCompat),
    ] {
        let ddim = DdimSchedule::uniform(&schedule(), steps, 1.0).expect("ddim");
        let noise: Vec<Tensor> = fx[&format!("loop.{name}.noise")].unbind(0);
        let mut noise = GivenNoise::new(noise);
        let mut guidance = ClassifierGuidance {
            scale: 1.0,
            mode,
            gradient: Box::new(|z: &Tensor, s: &Tensor| {
                log_prob_gradient(&|a, b| classifier.forward(a, b), z, s, y)
            }),
        };
        let out = tch::no_grad(|| {
            ddim_sample(
                &ddim,
                &fx["loop.xT"],
                &mut |x, t| unet.forward(x, t),
                Some(&mut guidance),
                &mut noise,
            )
        })
        .expect("sampling");
        assert_eq!(noise.remaining(), 0, "one noise tensor per step");
        // Rounding differences compound over the steps (×10 guidance in official mode).
        let reference = &fx[&format!("loop.{name}.out")];
        let scale = reference.abs().max().double_value(&[]);
        report(
            &format!("{name}: guided DDIM loop vs reference (max|out| {scale:.2})"),
            max_abs(&out, reference),
            5e-4,
        );
    }
}

#[test]
fn official_guidance_indexing_is_floor_t_over_20() {
    let ddim50 = DdimSchedule::uniform(&schedule(), 50, 1.0).unwrap();
    for (i, tau) in ddim50.timesteps.iter().enumerate() {
        assert_eq!(
            official_alpha(&ddim50, *tau).unwrap(),
            ddim50.alphas[i],
            "S = 50: ⌊τ_i/20⌋ = i"
        );
    }
    let ddim200 = DdimSchedule::uniform(&schedule(), 200, 1.0).unwrap();
    assert_eq!(
        official_alpha(&ddim200, 996).unwrap(),
        ddim200.alphas[49],
        "S = 200, τ = 996 reads index 49"
    );
    assert!(
        (1.0 - ddim200.alphas[49]).sqrt() < 0.7,
        "SPEC §4.4: 0.676 instead of 0.9996"
    );
    let ddim10 = DdimSchedule::uniform(&schedule(), 10, 1.0).unwrap();
    assert!(
        official_alpha(&ddim10, 901).is_err(),
        "S = 10 leaves the table"
    );
}

#[test]
fn guided_ancestral_loop_matches_reference() {
    let fx = fixture();
    let (unet, classifier, _, _) = tiny_models(&fx);
    let short = NoiseSchedule::new(BetaSchedule {
        beta_start: 0.0015,
        beta_end: 0.0155,
        num_timesteps: 20,
    })
    .unwrap();
    let y = &fx["guide.y"];
    let mut noise = GivenNoise::new(fx["loop.ddpm20.noise"].unbind(0));
    let mut gradient =
        |z: &Tensor, s: &Tensor| log_prob_gradient(&|a, b| classifier.forward(a, b), z, s, y);
    let out = tch::no_grad(|| {
        ddpm_sample(
            &short,
            &fx["loop.xT"],
            &mut |x, t| unet.forward(x, t),
            Some((1.0, &mut gradient)),
            &mut noise,
        )
    })
    .expect("sampling");
    assert_eq!(noise.remaining(), 0);
    report(
        "ddpm20: guided ancestral loop vs reference",
        max_abs(&out, &fx["loop.ddpm20.out"]),
        1e-4,
    );
}

#[test]
fn seeded_noise_is_deterministic_and_standard_normal() {
    let like = Tensor::zeros([4, 3, 64, 64], (Kind::Float, Device::Cpu));
    let a = SeededNoise::new(11).next_like(&like).unwrap();
    let b = SeededNoise::new(11).next_like(&like).unwrap();
    let c = SeededNoise::new(12).next_like(&like).unwrap();
    assert_eq!(max_abs(&a, &b), 0.0);
    assert!(max_abs(&a, &c) > 0.1);
    let (mean, std) = (
        a.mean(Kind::Double).double_value(&[]),
        a.std(true).double_value(&[]),
    );
    assert!(
        mean.abs() < 0.02 && (std - 1.0).abs() < 0.02,
        "mean {mean}, std {std}"
    );
}
