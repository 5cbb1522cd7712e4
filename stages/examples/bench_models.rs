//! Model benchmark: times one training step (forward + loss + backward + Adam) of each
//! trainable model and the inference workloads, and prints one JSON object per line
//! ({"name", "median_s", "images_per_s", …}). `benches/models_vs_pytorch.py` runs the same
//! workloads on the PyTorch reference modules in eager mode and prints the side-by-side
//! table; `benches/gpu.sh` runs the paper-size set on a CUDA card.
//!
//! Usage: bench_models [--threads N] [--iters K] [--only NAME] [--list]
//!                     [--size tiny|paper] [--device cpu|cuda|cuda:N]
//!                     [--precision f32|bf16|fp16] [--batch B] [--channels-last auto|on|off]
//!
//! `--size tiny` (default): CPU-feasible models. `--size paper`: the paper's models at the
//! paper's batch sizes (SPEC Appendix A; `--batch` overrides every batch): the kl-f4
//! autoencoder's generator step on 256² images (batch 6), the official UNet's ε-step on
//! 64² latents (batch 4), the latent classifier ϕ (batch 32), ViT-B/16 (batch 128), and a
//! guided DDIM step (UNet ε + ∇ log p_ϕ, η = 1, batch 10 as the official sampling script);
//! its images/s is for a whole 200-step sampling run (decoding excluded).
//! Mixed precision is libtorch autocast ([`AutocastGuard`]); fp16 training also runs the
//! loss scaler. channels_last (`auto`: on for CUDA) applies to the conv models.

use histodiff_stages::diffusion::guidance::log_prob_gradient;
use histodiff_stages::diffusion::{
    ddim_sample, BetaSchedule, ClassifierGuidance, DdimSchedule, GuidanceMode, NoiseSchedule,
    SeededNoise,
};
use histodiff_stages::kinds::stylegan2_train::{GanState, Params as GanParams};
use histodiff_stages::kinds::train_common::{ScheduleParams, TrainingParams};
use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use histodiff_stages::models::inception::{FidInceptionV3, InceptionConfig};
use histodiff_stages::models::stylegan2::Stylegan2Config;
use histodiff_stages::models::unet::{presets, EncoderUNetModel, UNetConfig, UNetModel};
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::presets::Preset;
use histodiff_stages::train::autocast::{self, AutocastGuard, LossScaler, Precision};
use histodiff_stages::train::memory_format;
use histodiff_stages::train::optim::{Adam, AdamConfig};
use std::time::Instant;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

/// DDIM steps of one sampling run (paper: 200).
const DDIM_STEPS: usize = 200;
/// Guided DDIM steps per timed repetition (from the high-noise end of the 200-step table).
const DDIM_STEPS_TIMED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Tiny,
    Paper,
}

struct Args {
    threads: i32,
    iters: usize,
    only: Option<String>,
    list: bool,
    size: Size,
    device: Device,
    precision: Precision,
    batch: Option<i64>,
    channels_last: Option<bool>,
}

fn parse_device(text: &str) -> Result<Device, String> {
    match text {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(Device::Cuda)
            .ok_or(format!("--device {other}: expected cpu, cuda or cuda:N")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        threads: 1,
        iters: 5,
        only: None,
        list: false,
        size: Size::Tiny,
        device: Device::Cpu,
        precision: Precision::F32,
        batch: None,
        channels_last: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--list" {
            args.list = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--threads" => args.threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            "--iters" => args.iters = value.parse().map_err(|e| format!("--iters: {e}"))?,
            "--only" => args.only = Some(value),
            "--size" => {
                args.size = match value.as_str() {
                    "tiny" => Size::Tiny,
                    "paper" => Size::Paper,
                    other => return Err(format!("--size {other}: expected tiny or paper")),
                }
            }
            "--device" => args.device = parse_device(&value)?,
            "--precision" => {
                args.precision = Precision::parse(&value)
                    .ok_or(format!("--precision {value}: expected f32, bf16 or fp16"))?
            }
            "--batch" => args.batch = Some(value.parse().map_err(|e| format!("--batch: {e}"))?),
            "--channels-last" => {
                args.channels_last = match value.as_str() {
                    "auto" => None,
                    "on" => Some(true),
                    "off" => Some(false),
                    other => return Err(format!("--channels-last {other}: auto, on or off")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// What every workload needs to know about the run.
struct Ctx {
    device: Device,
    precision: Precision,
    channels_last: bool,
    iters: usize,
}

impl Ctx {
    fn sync(&self) {
        if let Device::Cuda(index) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
    }

    /// Median wall time of `iters` runs after one warm-up run (device work included).
    fn time(&self, mut f: impl FnMut()) -> f64 {
        f();
        self.sync();
        let mut samples: Vec<f64> = (0..self.iters.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                self.sync();
                start.elapsed().as_secs_f64()
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    fn randn(&self, shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, self.device))
    }

    /// A conv model's input in the layout its weights were put in.
    fn conv_input(&self, xs: Tensor) -> Tensor {
        if self.channels_last {
            memory_format::to_channels_last(&xs)
        } else {
            xs
        }
    }

    /// A conv model's store, channels_last when asked for.
    fn conv_store(&self, vs: &nn::VarStore) {
        if self.channels_last {
            memory_format::convert_var_store(vs);
        }
    }

    /// Runs `f` under this run's autocast.
    fn autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        autocast::run(self.precision, self.device, f).expect("autocast for this device")
    }

    /// Times training steps: zero_grad, `loss` under autocast, backward (loss-scaled in
    /// fp16), Adam step.
    fn train_step(&self, vs: &nn::VarStore, adam: AdamConfig, loss: impl Fn() -> Tensor) -> f64 {
        let mut opt = Adam::new(vs, adam);
        let mut scaler = self
            .precision
            .needs_loss_scaling()
            .then(LossScaler::default);
        self.time(|| {
            opt.zero_grad();
            let loss = self.autocast(&loss);
            match scaler.as_mut() {
                Some(scaler) => {
                    scaler.scale_loss(&loss).backward();
                    let finite = scaler.unscale(opt.params());
                    if finite {
                        opt.step();
                    }
                    scaler.update(finite);
                }
                None => {
                    loss.backward();
                    opt.step();
                }
            }
        })
    }
}

/// One workload: its name (shared with the Python side), the images one timed run
/// processes (batch, or batch / 200 for a DDIM step), and the timer.
struct Workload {
    name: String,
    images_per_run: f64,
    run: Box<dyn Fn(&Ctx) -> f64>,
}

fn workload(name: String, images_per_run: f64, run: impl Fn(&Ctx) -> f64 + 'static) -> Workload {
    Workload {
        name,
        images_per_run,
        run: Box::new(run),
    }
}

/// ViT classifier step on random images and labels.
fn vit_train_step(ctx: &Ctx, config: VitConfig, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let size = config.image_size;
    let model = VisionTransformer::new(&vs.root(), config).expect("preset configs are valid");
    let x = ctx.randn(&[batch, 3, size, size]);
    let y = Tensor::randint(9, [batch], (Kind::Int64, ctx.device));
    ctx.train_step(&vs, AdamConfig::adamw(1e-4, 0.05), || {
        model.forward_t(&x, true).cross_entropy_for_logits(&y)
    })
}

/// Autoencoder generator step: Σ|x − x̂|/B of a posterior sample + 1e-6·KL/B (the LPIPS and
/// GAN terms of the real loss are left out: external weights, and 0 before disc_start).
fn ae_train_step(ctx: &Ctx, config: AutoencoderConfig, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let size = config.resolution;
    let ae = AutoencoderKL::new(&vs.root(), config).expect("AE config is valid");
    ctx.conv_store(&vs);
    let x = ctx.conv_input(ctx.randn(&[batch, 3, size, size]));
    let adam = AdamConfig {
        beta1: 0.5,
        beta2: 0.9,
        ..AdamConfig::adam(4.5e-6)
    };
    ctx.train_step(&vs, adam, || {
        let (rec, posterior) = ae.forward(&x, true, true).expect("input shape is valid");
        let nll = (&rec - &x).abs().sum(Kind::Float) / batch as f64;
        nll + posterior.kl().sum(Kind::Float) * (1e-6 / batch as f64)
    })
}

/// ᾱ_t of the official √β-linear schedule (0.0015 → 0.0155, T = 1000), f32, on `device`.
fn alphas_cumprod(device: Device) -> Tensor {
    let betas = Tensor::linspace(
        0.0015f64.sqrt(),
        0.0155f64.sqrt(),
        1000,
        (Kind::Double, Device::Cpu),
    )
    .square();
    betas
        .neg()
        .g_add_scalar(1.0)
        .cumprod(0, Kind::Double)
        .to_kind(Kind::Float)
        .to_device(device)
}

/// z_t = √ᾱ z₀ + √(1−ᾱ) ε for t ~ U{0..999}: (z_t, t, ε).
fn noised(ctx: &Ctx, ac: &Tensor, z0: &Tensor) -> (Tensor, Tensor, Tensor) {
    let batch = z0.size()[0];
    let t = Tensor::randint(1000, [batch], (Kind::Int64, ctx.device));
    let eps = z0.randn_like();
    let a = ac.index_select(0, &t).reshape([batch, 1, 1, 1]);
    let zt = z0 * a.sqrt() + &eps * a.neg().g_add_scalar(1.0).sqrt();
    (zt, t, eps)
}

/// ε-prediction step of a UNet on 3×size² latents: L2 loss, backward, AdamW.
fn unet_train_step(ctx: &Ctx, config: &UNetConfig, size: i64, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let unet = UNetModel::new(&vs.root(), config).expect("UNet config is valid");
    ctx.conv_store(&vs);
    let ac = alphas_cumprod(ctx.device);
    let z0 = ctx.conv_input(ctx.randn(&[batch, 3, size, size]));
    ctx.train_step(&vs, AdamConfig::adamw(5e-5, 0.01), || {
        let (zt, t, eps) = noised(ctx, &ac, &z0);
        (unet.forward_t(&zt, &t, true) - &eps)
            .square()
            .mean(Kind::Float)
    })
}

/// Latent classifier ϕ step: cross-entropy on noised latents at random t, AdamW.
fn phi_train_step(ctx: &Ctx, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let phi = EncoderUNetModel::new(&vs.root(), &presets::latent_classifier(9)).expect("ϕ");
    ctx.conv_store(&vs);
    let ac = alphas_cumprod(ctx.device);
    let z0 = ctx.conv_input(ctx.randn(&[batch, 3, 64, 64]));
    let y = Tensor::randint(9, [batch], (Kind::Int64, ctx.device));
    ctx.train_step(&vs, AdamConfig::adamw(5e-5, 0.05), || {
        let (zt, t, _) = noised(ctx, &ac, &z0);
        phi.forward_t(&zt, &t, true).cross_entropy_for_logits(&y)
    })
}

/// Seconds per DDIM step of the tiny UNet: a 50-step, η = 0 run on a batch of latents.
fn ddim_step_time(ctx: &Ctx, batch: i64) -> f64 {
    const STEPS: usize = 50;
    let vs = nn::VarStore::new(ctx.device);
    let unet = UNetModel::new(&vs.root(), &presets::tiny_unet()).expect("tiny UNet config");
    let schedule =
        NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("official schedule is valid");
    let ddim = DdimSchedule::uniform(&schedule, STEPS, 0.0).expect("50 steps fit T = 1000");
    let x_t = ctx.randn(&[batch, 3, 32, 32]);
    let _guard = tch::no_grad_guard();
    let run = ctx.time(|| {
        let _autocast = AutocastGuard::enter(ctx.precision, ctx.device).expect("autocast");
        let mut eps_model = |x: &Tensor, t: &Tensor| unet.forward(x, t);
        let mut noise = SeededNoise::new(0);
        let _ =
            ddim_sample(&ddim, &x_t, &mut eps_model, None, &mut noise).expect("shapes are valid");
    });
    run / STEPS as f64
}

/// The last `steps` entries (highest t) of a DDIM schedule.
fn ddim_head(ddim: &DdimSchedule, steps: usize) -> DdimSchedule {
    let from = ddim.len() - steps;
    DdimSchedule {
        timesteps: ddim.timesteps[from..].to_vec(),
        alphas: ddim.alphas[from..].to_vec(),
        alphas_prev: ddim.alphas_prev[from..].to_vec(),
        sigmas: ddim.sigmas[from..].to_vec(),
        eta: ddim.eta,
    }
}

/// Seconds per guided DDIM step at paper size (the sample stage's loop: official UNet ε,
/// ∇ log p_ϕ(y | z_t) by autograd through ϕ, condition_score with g = 1, η = 1 noise).
fn guided_ddim_step_time(ctx: &Ctx, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let unet = UNetModel::new(&(vs.root() / "unet"), &presets::histodiffaug_unet()).expect("UNet");
    let phi =
        EncoderUNetModel::new(&(vs.root() / "phi"), &presets::latent_classifier(9)).expect("ϕ");
    ctx.conv_store(&vs);
    let schedule = NoiseSchedule::new(BetaSchedule::histodiffaug()).expect("schedule");
    let full = DdimSchedule::uniform(&schedule, DDIM_STEPS, 1.0).expect("200 steps");
    let ddim = ddim_head(&full, DDIM_STEPS_TIMED);
    let x_t = ctx.conv_input(ctx.randn(&[batch, 3, 64, 64]));
    let labels = Tensor::randint(9, [batch], (Kind::Int64, ctx.device));
    let _guard = tch::no_grad_guard();
    let run = ctx.time(|| {
        let _autocast = AutocastGuard::enter(ctx.precision, ctx.device).expect("autocast");
        let mut eps_model = |x: &Tensor, t: &Tensor| unet.forward(x, t);
        let classifier = |x: &Tensor, t: &Tensor| phi.forward(x, t);
        let mut guidance = ClassifierGuidance {
            scale: 1.0,
            mode: GuidanceMode::ConditionScore,
            gradient: Box::new(|x: &Tensor, t: &Tensor| {
                log_prob_gradient(&classifier, x, t, &labels)
            }),
        };
        let mut noise = SeededNoise::new(0);
        let _ = ddim_sample(&ddim, &x_t, &mut eps_model, Some(&mut guidance), &mut noise)
            .expect("shapes are valid");
    });
    run / DDIM_STEPS_TIMED as f64
}

/// FID Inception pool3 of a batch of 64² images (resized to 299² inside).
fn inception_pool3(ctx: &Ctx, batch: i64) -> f64 {
    let vs = nn::VarStore::new(ctx.device);
    let model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    let x = Tensor::rand([batch, 3, 64, 64], (Kind::Float, ctx.device));
    let _guard = tch::no_grad_guard();
    ctx.time(|| {
        let _ = ctx.autocast(|| model.pool3(&x).expect("input is (B, 3, 64, 64)"));
    })
}

/// One StyleGAN2 training iteration of the kind (stylegan2/train's `GanState::step_on`) at
/// step 0, so all four phases run: Gmain, Greg (path length), Dmain, Dreg (R1), then the
/// G_ema update; tiny network at 32², 9 classes, f32 (the official FP16 is not ported).
fn stylegan2_train_step(ctx: &Ctx, batch: i64) -> f64 {
    let params = GanParams {
        training: TrainingParams {
            preset: Preset::Tiny,
            batch_size: batch as usize,
            lr: 0.0025,
        },
        r1_gamma: 0.0128,
        pl_weight: 2.0,
        style_mixing_prob: 0.9,
        mbstd_group_size: 4,
        ema_kimg: 10.0,
        ema_rampup: 0.0,
        run: ScheduleParams {
            precision: None,
            steps: 1,
            epochs: 1,
            seed: 0,
            checkpoint_every: 0,
            checkpoint_minutes: 0.0,
            metric_every: 1,
        },
    };
    let config = Stylegan2Config::tiny(32, 9);
    let weights = Tensor::ones([9], (Kind::Double, Device::Cpu));
    let mut state = GanState::new(&params, &config, weights, ctx.device).expect("tiny StyleGAN2");
    let real = ctx.randn(&[batch, 3, 32, 32]).clamp(-1.0, 1.0);
    let labels = Tensor::randint(9, [batch], (Kind::Int64, ctx.device));
    ctx.time(|| {
        state.step_on(0, &real, &labels);
    })
}

fn tiny_workloads() -> Vec<Workload> {
    vec![
        workload("vit_tiny_train_step_b8".into(), 8.0, |c| {
            vit_train_step(c, VitConfig::tiny(9), 8)
        }),
        workload("vit_s16_train_step_b2".into(), 2.0, |c| {
            vit_train_step(c, VitConfig::small_16(9), 2)
        }),
        workload("ae_tiny_train_step_b4".into(), 4.0, |c| {
            ae_train_step(c, AutoencoderConfig::tiny(), 4)
        }),
        workload("unet_tiny_train_step_b4".into(), 4.0, |c| {
            unet_train_step(c, &presets::tiny_unet(), 32, 4)
        }),
        workload("ddim_tiny_step_b4".into(), 4.0 / 50.0, |c| {
            ddim_step_time(c, 4)
        }),
        workload("fid_inception_pool3_b2".into(), 2.0, |c| {
            inception_pool3(c, 2)
        }),
        workload("stylegan2_tiny_train_step_b8".into(), 8.0, |c| {
            stylegan2_train_step(c, 8)
        }),
    ]
}

/// The paper-size set; `batch` overrides each workload's paper batch.
fn paper_workloads(batch: Option<i64>) -> Vec<Workload> {
    let b = |paper: i64| batch.unwrap_or(paper);
    let (ae, dm, phi, vit, ddim) = (b(6), b(4), b(32), b(128), b(10));
    vec![
        workload(format!("ae_kl_f4_train_step_b{ae}"), ae as f64, move |c| {
            ae_train_step(c, AutoencoderConfig::default(), ae)
        }),
        workload(
            format!("unet_paper_train_step_b{dm}"),
            dm as f64,
            move |c| unet_train_step(c, &presets::histodiffaug_unet(), 64, dm),
        ),
        workload(
            format!("phi_paper_train_step_b{phi}"),
            phi as f64,
            move |c| phi_train_step(c, phi),
        ),
        workload(format!("vit_b16_train_step_b{vit}"), vit as f64, move |c| {
            vit_train_step(c, VitConfig::base_16(9), vit)
        }),
        workload(
            format!("ddim_guided_paper_step_b{ddim}"),
            ddim as f64 / DDIM_STEPS as f64,
            move |c| guided_ddim_step_time(c, ddim),
        ),
    ]
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench_models: {e}");
            std::process::exit(2);
        }
    };
    let workloads = match args.size {
        Size::Tiny => tiny_workloads(),
        Size::Paper => paper_workloads(args.batch),
    };
    if args.device.is_cuda() && !tch::Cuda::is_available() {
        eprintln!("bench_models: --device cuda but libtorch sees no CUDA device");
        std::process::exit(2);
    }
    if args.list {
        for w in &workloads {
            println!("{}", w.name);
        }
        return;
    }
    if let Err(e) = AutocastGuard::enter(args.precision, args.device) {
        eprintln!("bench_models: {e}");
        std::process::exit(2);
    }
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    if args.device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let ctx = Ctx {
        device: args.device,
        precision: args.precision,
        channels_last: args
            .channels_last
            .unwrap_or(memory_format::use_channels_last(args.device)),
        iters: args.iters,
    };
    let precision = format!("{:?}", args.precision).to_lowercase();
    for w in workloads {
        if args.only.as_deref().is_some_and(|only| only != w.name) {
            continue;
        }
        let median = (w.run)(&ctx);
        println!(
            "{{\"name\": \"{}\", \"median_s\": {median:.6}, \"images_per_s\": {:.4e}, \"iters\": {}, \
             \"threads\": {}, \"device\": \"{:?}\", \"precision\": \"{precision}\", \"channels_last\": {}}}",
            w.name,
            w.images_per_run / median,
            args.iters,
            args.threads,
            args.device,
            ctx.channels_last
        );
    }
}
