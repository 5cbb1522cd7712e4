//! `histodiffusion/fid`: Fréchet Inception Distance of a synthetic image set against real
//! images (SPEC §8.4: pool3 2048-d features, unbiased covariance), with the pytorch-fid
//! Inception weights the user converts and gives as `inception` (nothing is downloaded).
//! Without weights the stage still succeeds and its result says "not computed" and why,
//! so a sweep runs end to end and the report shows the gap plainly.

use super::declare::kind;
use super::invalid;
use super::params::{optional, ExternalPath};
use crate::artifact::ImageSet;
use crate::metrics::fid::{frechet_distance, FeatureStats, StatsAccumulator, DEFAULT_EPS};
use crate::models::inception::{load_fid_inception, FidInceptionV3};
use crate::report::results::{write, FidResult, FID_FORMAT};
use histodiff_engine::stage::{StageContext, StageError};
use tch::{Device, Kind};

kind! {
    /// Fréchet distance on Inception features (weights given by the user)
    Fid("histodiffusion/fid", version: 1) -> [fid] {
        /// pytorch-fid Inception-v3 weights (pt_inception-2015-12-05) converted to
        /// safetensors; unset = not computed
        inception: Option<ExternalPath> = optional(),
    }
    inputs {
        /// the synthetic image set (e.g. select's output)
        synthetic: One,
        /// the real image set (the few-shot training set)
        real: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let synthetic = ImageSet::open(&ctx.input("synthetic")?.path)?;
    let real = ImageSet::open(&ctx.input("real")?.path)?;
    let result = match p.inception {
        None => FidResult::not_computed("no Inception weights given (parameter `inception`)"),
        Some(weights) => {
            let device = crate::device::parse(ctx.device())?;
            let (_vs, model) = load_fid_inception(&weights.path, device).map_err(invalid)?;
            let (a, b) = (
                pool3_stats(&model, &synthetic, device)?,
                pool3_stats(&model, &real, device)?,
            );
            let fid = frechet_distance(&a, &b, DEFAULT_EPS).map_err(invalid)?;
            ctx.metric("fid", None, fid);
            FidResult {
                format: FID_FORMAT.into(),
                fid: Some(fid),
                status: "computed".into(),
                n_real: real.len() as u64,
                n_synthetic: synthetic.len() as u64,
            }
        }
    };
    ctx.log(format!(
        "FID: {}",
        result
            .fid
            .map_or(result.status.clone(), |f| format!("{f:.3}"))
    ));
    write(&ctx.output_path("fid"), &result).map_err(invalid)?;
    Ok(())
}

/// Mean and covariance of the pool3 features of every image of `set`.
fn pool3_stats(
    model: &FidInceptionV3,
    set: &ImageSet,
    device: Device,
) -> Result<FeatureStats, StageError> {
    let mut acc = StatsAccumulator::default();
    set.for_each_chunk(50, |images| {
        let x = images.to_device(device).to_kind(Kind::Float) / 255.0;
        acc.add(&model.pool3(&x).map_err(invalid)?).map_err(invalid)
    })?;
    acc.finish().map_err(invalid)
}
