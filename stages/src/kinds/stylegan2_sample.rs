//! `stylegan2/sample`: a per-class candidate pool from a StyleGAN2 generator artifact
//! (`stylegan2/train`, or an official snapshot converted by scripts/convert_checkpoint.py):
//! G_ema(z, one-hot c) with truncation ψ towards w̄ and constant noise (as the official
//! `generate.py`), z of batch b from a seeded stream of (seed, b). The output is what
//! `histodiffusion/sample` writes, an image set labeled with the classes of `images`, so
//! selection, classifier training, evaluation and FID take either generator's pool.

use super::schema::{batch_size_param, float, int, invalid, one_of, param, slot};
use super::stylegan2_train::{one_hot, CONFIG_KEY};
use super::train_common::typed_params;
use crate::artifact::pool::PoolLayout;
use crate::artifact::ImageSet;
use crate::diffusion::SeededNoise;
use crate::models::stylegan2::{Generator, NoiseMode, Stylegan2Config, Truncation};
use crate::train::data_order::mix;
use crate::train::images::Batch;
use crate::train::{train, Schedule, StepReport, Trainable};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde::Deserialize;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub struct Stylegan2Sample;

#[derive(Debug, Clone, Deserialize)]
struct Params {
    per_class: usize,
    batch_size: usize,
    truncation_psi: f64,
    noise_mode: String,
    seed: u64,
}

impl Stage for Stylegan2Sample {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "stylegan2/sample".into(),
            version: 1,
            params: vec![
                param("per_class", int(Some(1), None), Some(100.into()), "images per class"),
                batch_size_param(32, "images per batch (a checkpoint after each)"),
                param("truncation_psi", float(Some(0.0), Some(1.0)), Some(1.0.into()), "truncation ψ (1: none)"),
                param("noise_mode", one_of(&["const", "random", "none"]), Some("const".into()), "synthesis noise: the stored constant (generate.py's default), fresh from the seed, or none"),
                param("seed", int(Some(0), None), Some(0.into()), "seed of the latent streams"),
            ],
            inputs: vec![
                slot("generator", true, false, "stylegan2/train output or a converted official snapshot"),
                slot("images", true, false, "labeled set giving class names and image size (e.g. S′)"),
            ],
            outputs: vec!["images".into()],
            resumable: true,
            doc: "per-class StyleGAN2 pool with truncation ψ, seeded, for histodiffusion/select".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let p: Params = typed_params(ctx)?;
        let dev = crate::device::parse(ctx.device())?;
        let reference = ImageSet::open(&ctx.input("images")?.path)?;
        let classes = reference.manifest().classes.clone();
        let image_size = reference.manifest().image_size;
        let path = ctx.input("generator")?.path.clone();
        let (_vs, g) = load_generator(&path, dev)?;
        check_compatible(g.config(), classes.len(), image_size, &path)?;
        let pool = PoolLayout::new(
            classes,
            (p.per_class, p.batch_size, image_size),
            ctx.checkpoint_dir(),
        )?;
        let batches = pool.batches();
        let noise = match p.noise_mode.as_str() {
            "random" => NoiseMode::Random,
            "none" => NoiseMode::None,
            _ => NoiseMode::Const,
        };
        let mut state = GanSampler {
            g,
            pool,
            truncation: Truncation {
                psi: p.truncation_psi,
                cutoff: None,
            },
            noise,
            seed: p.seed,
            device: dev,
        };
        let schedule = Schedule {
            total_steps: batches,
            every_steps: 1,
            every_minutes: 0.0,
            metric_every: batches,
            seed: p.seed,
        };
        train(ctx, &schedule, &mut state, None)?;
        state.pool.finish(&ctx.output_path("images"))
    }
}

/// The G_ema of a generator artifact, built from its recorded architecture and loaded
/// strictly.
pub fn load_generator(path: &Path, device: Device) -> Result<(VarStore, Generator), StageError> {
    let meta = crate::weights::read_metadata(path).map_err(StageError::Invalid)?;
    let json = meta.get(CONFIG_KEY).ok_or_else(|| {
        StageError::Invalid(format!(
            "{}: not a StyleGAN2 generator artifact (no `{CONFIG_KEY}` metadata; convert official snapshots with scripts/convert_checkpoint.py stylegan2)",
            path.display()
        ))
    })?;
    let config: Stylegan2Config = serde_json::from_str(json)
        .map_err(|e| StageError::Invalid(format!("{}: `{CONFIG_KEY}`: {e}", path.display())))?;
    let mut vs = VarStore::new(device);
    let g = Generator::new(&vs.root(), &config)
        .map_err(|e| StageError::Invalid(format!("{}: {e}", path.display())))?;
    // Keys outside `G_ema.` stay as they are, so the strict load names them as unexpected.
    let tensors = crate::weights::read_tensors(path)
        .map_err(invalid)?
        .into_iter()
        .map(|(k, t)| (k.strip_prefix("G_ema.").map(str::to_string).unwrap_or(k), t))
        .collect();
    crate::weights::load_tensors_strict(&mut vs, &path.display().to_string(), tensors)
        .map_err(invalid)?;
    vs.freeze();
    Ok((vs, g))
}

fn check_compatible(
    c: &Stylegan2Config,
    classes: usize,
    image_size: usize,
    path: &Path,
) -> Result<(), StageError> {
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

struct GanSampler {
    g: Generator,
    pool: PoolLayout,
    truncation: Truncation,
    noise: NoiseMode,
    seed: u64,
    device: Device,
}

impl Trainable for GanSampler {
    fn step(&mut self, batch: u64, _: Option<&Batch>) -> Result<StepReport, StageError> {
        let labels = self.pool.labels(batch);
        let n = labels.len() as i64;
        let c = one_hot(
            &Tensor::from_slice(&labels).to_device(self.device),
            self.g.config().c_dim,
        );
        let z = SeededNoise::new(mix(self.seed, batch))
            .tensor(&[n, self.g.config().z_dim])
            .to_device(self.device);
        let img = tch::no_grad(|| self.g.generate(&z, &c, self.truncation, self.noise));
        self.pool.write_batch(batch, &img)?;
        Ok(StepReport::default())
    }

    /// Nothing but the step: finished batches are on disk, batch b's draws come from (seed, b).
    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn restore(&mut self, _state: Vec<(String, Tensor)>) -> Result<(), StageError> {
        Ok(())
    }
}
