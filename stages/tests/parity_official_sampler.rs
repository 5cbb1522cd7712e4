//! Parity of classifier-guided DDIM sampling (stages/src/diffusion/{ddim,guidance}.rs, the
//! `ddim_sample` + `ClassifierGuidance` + `log_prob_gradient` that kinds/sample.rs runs; SPEC
//! §4.3–4.4, Eq. 7–8) with the authors' samplers, on the same (hashed) tiny UNet and tiny
//! latent classifier, the same x_T, labels and noise, made by
//! tests/fixtures/official/gen_official_sampler.py:
//! - `guidance_mode: official` (`GuidanceMode::OfficialCompat`) against
//!   karenyyy/HistoDiffAug@020116d69b9cf1f3daacec2681195591cb1873ad
//!   `ldm/models/diffusion/ddim.py` `DDIMSampler.sample` / `ddim_sampling` / `p_sample_ddim`
//!   (ε − 10·√(1 − ddim_alphas[t//20])·∇) with the `cond_fn` of its `sample_diffusion.py`:
//!   a full S = 50 run (η = 1), and three steps at S = 100, where t//20 ≠ the step index;
//! - `guidance_mode: paper` (`GuidanceMode::ConditionScore`) against
//!   openai/guided-diffusion@22e0df8183507e13a7813f8d38d51b072ca1e67c
//!   `guided_diffusion/gaussian_diffusion.py` `ddim_sample` / `ddim_sample_loop` with
//!   `condition_score`, `guided_diffusion/respace.py` `SpacedDiffusion` on LDM's τ_i = 20i + 1,
//!   and the `cond_fn` of `scripts/classifier_sample.py` (classifier_scale = g): a full S = 50
//!   run. guided-diffusion's last step uses ᾱ_prev = 1 (hence σ = 0, no noise) where LDM's
//!   DDIM (and ours, SPEC §4.3) uses ᾱ_0 = 0.9985; every other step is the same formula, so
//!   the steps i ≥ 1 are checked on our schedule as it is and step 0 and the full run on a copy
//!   with guided-diffusion's final ᾱ_prev.
//!
//! The models are latent-diffusion `openaimodel.py` `UNetModel` (gen_official.py TINY_A =
//! `presets::tiny_unet`) and `EncoderUNetModel` (`tiny_classifier(5)` on 8×8 latents), already
//! proven by parity_official_{unet,classifier}.rs; g = 0.5 (official; its code has no scale,
//! i.e. g = 1 with the ×10) and g = 3 (paper).
//!
//! Tolerances (f32, CPU). Per step, teacher-forced from the official x_t: the classifier
//! gradient ≤ 2e-5 of its largest entry (a backward pass through ~20 layers, attention
//! included, whose kernels sum in a different order than PyTorch's, plus the log-softmax;
//! ≈ 1e-5 relative is a few dozen f32 ulp over that depth; measured ≤ 3.3e-6), x_{t−1} ≤
//! 5e-6 · max(1, max |x_{t−1}|) (the UNet's ≈ 5e-6 on ε ≈ 3 enters through DDIM coefficients
//! whose net factor on ε is ≤ 1; measured ≤ 6e-7). Full 50-step runs through `ddim_sample`,
//! where the errors compound and the untrained models blow the sample up to |x| ≈ 180:
//! ≤ 2e-5 · max |x_0| (measured ≤ 1.8e-6). A negative control shows the S = 100 check
//! separates HistoDiffAug's ⌊t/20⌋ indexing from the correct ᾱ_τ.

mod parity_official_common;

use histodiff_stages::diffusion::{
    ddim_sample, ddim_step, log_prob_gradient, BetaSchedule, ClassifierGuidance, DdimSchedule,
    GivenNoise, GuidanceMode, NoiseSchedule,
};
use histodiff_stages::models::unet::{presets, EncoderUNetConfig, EncoderUNetModel, UNetModel};
use parity_official_common::*;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

const GRAD_TOL: f64 = 2e-5;
const STEP_TOL: f64 = 5e-6;
const RUN_TOL: f64 = 2e-5;
const S: usize = 50;

struct Models {
    unet: UNetModel,
    phi: EncoderUNetModel,
    _vs: nn::VarStore,
}

fn load(file: &str) -> (Models, HashMap<String, Tensor>) {
    let fixture = read_fixture(file);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let unet = UNetModel::new(&(vs.root() / "unet"), &presets::tiny_unet()).expect("valid UNet");
    let phi_config = EncoderUNetConfig {
        image_size: 8,
        ..presets::tiny_classifier(5)
    };
    let phi = EncoderUNetModel::new(&(vs.root() / "phi"), &phi_config).expect("valid classifier");
    load_hashed_strict(&mut vs, file, &fixture);
    (Models { unet, phi, _vs: vs }, io(&fixture))
}

fn schedule(steps: usize) -> DdimSchedule {
    let noise = NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("schedule");
    DdimSchedule::uniform(&noise, steps, 1.0).expect("ddim schedule")
}

/// max |got − want| / max(1, max |want|).
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    max_abs(got, want) / want.abs().max().double_value(&[]).max(1.0)
}

fn guidance<'a>(
    models: &'a Models,
    labels: &'a Tensor,
    scale: f64,
    mode: GuidanceMode,
) -> ClassifierGuidance<'a> {
    let phi = &models.phi;
    ClassifierGuidance {
        scale,
        mode,
        gradient: Box::new(move |x: &Tensor, t: &Tensor| {
            log_prob_gradient(&|x, t| phi.forward(x, t), x, t, labels)
        }),
    }
}

/// Teacher-forced steps: from each official state `traj[k]` (DDIM index `indices[k]`), one
/// Rust guided step with the official noise must give `traj[k + 1]`; the classifier gradient
/// must match `grads[k]`. `schedules` gives the table per index. Returns (worst gradient, worst
/// step) errors.
fn check_steps(
    what: &str,
    models: &Models,
    io: &HashMap<String, Tensor>,
    prefix: &str,
    indices: &[usize],
    schedule_for: &dyn Fn(usize) -> DdimSchedule,
    mode: GuidanceMode,
) {
    let labels = &io["io.y"];
    let scale = io["io.scale"].double_value(&[0]);
    let (traj, grads, noise) = (
        &io[&format!("{prefix}traj")],
        &io[&format!("{prefix}grad")],
        &io[&format!("{prefix}noise")],
    );
    let (mut worst_grad, mut worst_step) = (0.0f64, 0.0f64);
    let _guard = tch::no_grad_guard();
    for (k, &index) in indices.iter().enumerate() {
        let ddim = schedule_for(index);
        let k = k as i64;
        let x = traj.get(k);
        let t = Tensor::full([2], ddim.timesteps[index], (Kind::Int64, Device::Cpu));
        let grad = log_prob_gradient(&|x, t| models.phi.forward(x, t), &x, &t, labels);
        let want_grad = grads.get(k);
        worst_grad =
            worst_grad.max(max_abs(&grad, &want_grad) / want_grad.abs().max().double_value(&[]));
        let eps = models.unet.forward(&x, &t);
        let mut guide = guidance(models, labels, scale, mode);
        let eps = guide.guide(&eps, &x, &t, &ddim, index).expect("guided ε");
        let sigma = ddim.sigmas[index];
        let xi = noise.get(k);
        let (next, _) = ddim_step(
            &x,
            &eps,
            ddim.alphas[index],
            ddim.alphas_prev[index],
            sigma,
            (sigma > 0.0).then_some(&xi),
        )
        .expect("ddim step");
        worst_step = worst_step.max(rel_err(&next, &traj.get(k + 1)));
    }
    eprintln!(
        "{what}: {} steps, gradient error / max|∇| {worst_grad:.3e} (tolerance {GRAD_TOL:.0e}), \
         x_(t−1) error / max(1, max|x|) {worst_step:.3e} (tolerance {STEP_TOL:.0e})",
        indices.len()
    );
    assert!(
        worst_grad <= GRAD_TOL,
        "{what}: gradient error {worst_grad:.3e}"
    );
    assert!(
        worst_step <= STEP_TOL,
        "{what}: step error {worst_step:.3e}"
    );
}

/// The whole loop through `ddim_sample` from x_T with the given noise.
fn check_run(
    what: &str,
    models: &Models,
    io: &HashMap<String, Tensor>,
    ddim: &DdimSchedule,
    mode: GuidanceMode,
    noises: i64,
) {
    let labels = &io["io.y"];
    let scale = io["io.scale"].double_value(&[0]);
    let mut guide = guidance(models, labels, scale, mode);
    let mut noise = GivenNoise::new((0..noises).map(|k| io["io.noise"].get(k)).collect());
    let _guard = tch::no_grad_guard();
    let mut eps_model = |x: &Tensor, t: &Tensor| models.unet.forward(x, t);
    let sample = ddim_sample(
        ddim,
        &io["io.x_T"],
        &mut eps_model,
        Some(&mut guide),
        &mut noise,
    )
    .expect("sample");
    assert_eq!(noise.remaining(), 0, "{what}: noise draws");
    let want = io["io.traj"].get(S as i64);
    let err = rel_err(&sample, &want);
    eprintln!(
        "{what}: sample error / max|x_0| {err:.3e} (tolerance {RUN_TOL:.0e}, max|x_0| {:.1})",
        want.abs().max().double_value(&[])
    );
    assert!(err <= RUN_TOL, "{what}: sample error {err:.3e}");
}

/// Indices S−1 … 0 in the order the sampler visits them.
fn descending(n: usize) -> Vec<usize> {
    (0..n).rev().collect()
}

#[test]
fn official_histodiffaug_p_sample_ddim_s50_full_run() {
    let (models, io) = load("sampler_official.safetensors");
    let ddim = schedule(S);
    let alphas = Tensor::from_slice(&ddim.alphas);
    let sigmas = Tensor::from_slice(&ddim.sigmas);
    assert!(
        max_abs(&alphas, &io["io.ddim_alphas"]) <= 1e-7,
        "ddim_alphas"
    );
    assert!(
        max_abs(&sigmas, &io["io.ddim_sigmas"]) <= 1e-6,
        "ddim_sigmas"
    );
    let mode = GuidanceMode::OfficialCompat;
    check_steps(
        "official S=50",
        &models,
        &io,
        "io.",
        &descending(S),
        &|_| schedule(S),
        mode,
    );
    check_run(
        "official S=50 full run",
        &models,
        &io,
        &ddim,
        mode,
        S as i64,
    );
}

#[test]
fn official_histodiffaug_p_sample_ddim_s100_floor_t_over_20() {
    let (models, io) = load("sampler_official.safetensors");
    let ddim = schedule(100);
    // The official code reads ddim_alphas[t//20] = [49, 49, 48] here, not [99, 98, 97].
    let read: Vec<i64> = [99usize, 98, 97]
        .iter()
        .map(|&i| ddim.timesteps[i] / 20)
        .collect();
    assert_eq!(read, [49, 49, 48]);
    check_steps(
        "official S=100 steps 99..97",
        &models,
        &io,
        "io.s100.",
        &[99, 98, 97],
        &|_| schedule(100),
        GuidanceMode::OfficialCompat,
    );
    // Negative control: ×10 with the correct ᾱ_{τ_99} misses the official step by far.
    let _guard = tch::no_grad_guard();
    let (labels, traj) = (&io["io.y"], &io["io.s100.traj"]);
    let x = traj.get(0);
    let t = Tensor::full([2], ddim.timesteps[99], (Kind::Int64, Device::Cpu));
    let scale = 10.0 * io["io.scale"].double_value(&[0]);
    let mut guide = guidance(&models, labels, scale, GuidanceMode::ConditionScore);
    let eps = guide
        .guide(&models.unet.forward(&x, &t), &x, &t, &ddim, 99)
        .expect("guided ε");
    let xi = io["io.s100.noise"].get(0);
    let (next, _) = ddim_step(
        &x,
        &eps,
        ddim.alphas[99],
        ddim.alphas_prev[99],
        ddim.sigmas[99],
        Some(&xi),
    )
    .expect("ddim step");
    let err = rel_err(&next, &traj.get(1));
    eprintln!("negative control (correct ᾱ_τ, ×10): x_(t−1) error {err:.3e}");
    assert!(err > 100.0 * STEP_TOL);
}

#[test]
fn guided_diffusion_ddim_condition_score_s50_full_run() {
    let (models, io) = load("sampler_paper.safetensors");
    let ours = schedule(S);
    let alphas = Tensor::from_slice(&ours.alphas);
    assert!(max_abs(&alphas, &io["io.alphas_cumprod"]) <= 1e-7, "ᾱ_τ");
    let prev = io["io.alphas_cumprod_prev"].shallow_clone();
    assert!(
        max_abs(
            &Tensor::from_slice(&ours.alphas_prev[1..]),
            &prev.narrow(0, 1, S as i64 - 1)
        ) <= 1e-7
    );
    // The only difference: guided-diffusion's final ᾱ_prev is 1 (ours ᾱ_0, as LDM).
    assert_eq!(prev.double_value(&[0]), 1.0);
    let mut gd = ours.clone();
    gd.alphas_prev[0] = 1.0;
    gd.sigmas[0] = 0.0;
    let mode = GuidanceMode::ConditionScore;
    let gd_for = gd.clone();
    check_steps(
        "paper S=50",
        &models,
        &io,
        "io.",
        &descending(S),
        &move |index| {
            if index == 0 {
                gd_for.clone()
            } else {
                schedule(S)
            }
        },
        mode,
    );
    // σ_0 = 0: the last noise tensor is drawn by guided-diffusion but not used (nor drawn here).
    check_run("paper S=50 full run", &models, &io, &gd, mode, S as i64 - 1);
}
