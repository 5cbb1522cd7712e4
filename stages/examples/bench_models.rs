//! Model benchmark: times one training step (forward + backward + AdamW) of each trainable
//! model and one inference pass of the FID extractor at CPU-feasible sizes, and prints one
//! JSON object per line ({"name", "median_s", "iters"}). `benches/models_vs_pytorch.py`
//! runs the same workloads in PyTorch eager and prints the side-by-side table.
//!
//! Usage: bench_models [--threads N] [--iters K] [--only NAME]

use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use histodiff_stages::models::inception::{FidInceptionV3, InceptionConfig};
use histodiff_stages::models::vit::{VisionTransformer, VitConfig};
use histodiff_stages::train::optim::{Adam, AdamConfig};
use std::time::Instant;
use tch::{nn, nn::ModuleT, Device, Kind, Tensor};

/// A benchmark: runs `iters` timed repetitions and returns the median seconds.
type Workload = Box<dyn Fn(usize) -> f64>;

struct Args {
    threads: i32,
    iters: usize,
    only: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        threads: 1,
        iters: 5,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--iters" => args.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--only" => args.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Median wall time of `iters` runs after one warm-up run.
fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One ViT classifier training step on random images and labels.
fn vit_train_step(config: VitConfig, batch: i64, iters: usize) -> f64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let size = config.image_size;
    let model = VisionTransformer::new(&vs.root(), config).expect("preset configs are valid");
    let mut opt = Adam::new(&vs, AdamConfig::adamw(1e-4, 0.05));
    let x = Tensor::randn([batch, 3, size, size], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(9, [batch], (Kind::Int64, Device::Cpu));
    time(iters, || {
        opt.zero_grad();
        model
            .forward_t(&x, true)
            .cross_entropy_for_logits(&y)
            .backward();
        opt.step();
    })
}

/// One generator step of the tiny kl autoencoder (32², f = 2): L1 reconstruction of a
/// posterior sample + 1e-6·KL (the GAN and LPIPS terms of the real loss are left out).
fn ae_train_step(batch: i64, iters: usize) -> f64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let ae =
        AutoencoderKL::new(&vs.root(), AutoencoderConfig::tiny()).expect("tiny AE config is valid");
    let mut opt = Adam::new(&vs, AdamConfig::adamw(4.5e-6, 0.01));
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    time(iters, || {
        opt.zero_grad();
        let (rec, posterior) = ae.forward(&x, true, true).expect("input shape is valid");
        let loss = (&rec - &x).abs().mean(Kind::Float) + posterior.kl().mean(Kind::Float) * 1e-6;
        loss.backward();
        opt.step();
    })
}

/// FID Inception pool3 of a batch of 64² images (resized to 299² inside).
fn inception_pool3(batch: i64, iters: usize) -> f64 {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FidInceptionV3::new(&vs.root(), InceptionConfig::default());
    let x = Tensor::rand([batch, 3, 64, 64], (Kind::Float, Device::Cpu));
    time(iters, || {
        let _ = model.pool3(&x).expect("input is (B, 3, 64, 64)");
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench_models: {e}");
            std::process::exit(2);
        }
    };
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let benches: Vec<(&str, Workload)> = vec![
        (
            "vit_tiny_train_step_b8",
            Box::new(|n| vit_train_step(VitConfig::tiny(9), 8, n)),
        ),
        (
            "vit_s16_train_step_b2",
            Box::new(|n| vit_train_step(VitConfig::small_16(9), 2, n)),
        ),
        ("ae_tiny_train_step_b4", Box::new(|n| ae_train_step(4, n))),
        (
            "fid_inception_pool3_b2",
            Box::new(|n| inception_pool3(2, n)),
        ),
    ];
    for (name, run) in benches {
        if args.only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let median = run(args.iters);
        println!(
            "{{\"name\": \"{name}\", \"median_s\": {median:.6}, \"iters\": {}, \"threads\": {}}}",
            args.iters, args.threads
        );
    }
}
