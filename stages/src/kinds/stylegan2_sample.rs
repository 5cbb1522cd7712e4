//! `stylegan2/sample`: a per-class candidate pool from a StyleGAN2 generator artifact
//! (`stylegan2/train`, or an official snapshot converted by scripts/convert_checkpoint.py):
//! G_ema(z, one-hot c) with truncation ψ towards w̄ and constant noise (as the official
//! `generate.py`), z of batch b from a seeded stream of (seed, b). The output is what
//! `histodiffusion/sample` writes, an image set labeled with the classes of `images`, so
//! selection, classifier training, evaluation and FID take either generator's pool.

use super::declare::kind;
use super::params::{choice, default, range};
use super::train_common::{pool_layout, sample_pool};
use crate::artifact::generator;
use crate::artifact::pool::PoolLayout;
use crate::diffusion::SeededNoise;
use crate::models::stylegan2::{one_hot, NoiseMode, Stylegan2Config, Truncation};
use crate::train::data_order::mix;
use histodiff_engine::stage::{StageContext, StageError};
use std::path::Path;
use tch::Tensor;

choice!(NoiseMode { "const" => Const, "random" => Random, "none" => None });

kind! {
    /// per-class StyleGAN2 pool with truncation ψ, seeded, for histodiffusion/select
    Stylegan2Sample("stylegan2/sample", version: 1, resumable) -> [images] {
        /// images per class
        per_class: usize = range(1..).default(100),
        /// images per batch (a checkpoint after each)
        batch_size: usize = range(1..).default(32),
        /// truncation ψ (1: none)
        truncation_psi: f64 = range(0.0..=1.0).default(1.0),
        /// synthesis noise: the stored constant (generate.py's default), fresh from the seed,
        /// or none
        noise_mode: NoiseMode = default(NoiseMode::Const),
        /// seed of the latent streams
        seed: u64 = range(0..).default(0),
    }
    inputs {
        /// stylegan2/train output or a converted official snapshot
        generator: One,
        /// labeled set giving class names and image size (e.g. S′)
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let dev = crate::device::parse(ctx.device())?;
    let pool = pool_layout(ctx, p.per_class, p.batch_size)?;
    let path = &ctx.input("generator")?.path;
    let (_vs, g) = generator::load(path, dev)?;
    check_compatible(g.config(), &pool, path)?;
    let truncation = Truncation {
        psi: p.truncation_psi,
        cutoff: None,
    };
    sample_pool(ctx, pool, p.seed, |batch, labels| {
        let c = one_hot(&Tensor::from_slice(labels).to_device(dev), g.config().c_dim);
        let z = SeededNoise::new(mix(p.seed, batch))
            .tensor(&[labels.len() as i64, g.config().z_dim])
            .to_device(dev);
        Ok(tch::no_grad(|| {
            g.generate(&z, &c, truncation, p.noise_mode)
        }))
    })
}

fn check_compatible(c: &Stylegan2Config, pool: &PoolLayout, path: &Path) -> Result<(), StageError> {
    let (classes, image_size) = (pool.classes.len(), pool.image_size);
    if c.c_dim != classes as i64 || c.img_resolution != image_size as i64 {
        return Err(StageError::Invalid(format!(
            "{}: the generator makes {}² images of {} classes, the `images` input has {image_size}² images of {classes} classes",
            path.display(),
            c.img_resolution,
            c.c_dim
        )));
    }
    Ok(())
}
