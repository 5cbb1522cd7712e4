//! `histodiffusion/fid`: Fréchet Inception Distance of a synthetic image set against real
//! images (SPEC §8.4: pool3 2048-d features, unbiased covariance), with the pytorch-fid
//! Inception weights the user converts and gives as `inception` (nothing is downloaded).
//! Without weights the stage still succeeds and its result says "not computed" and why,
//! so a sweep runs end to end and the report shows the gap plainly.

use super::classifier::for_each_chunk;
use super::schema::{invalid, optional_path, param, slot};
use crate::artifact::ImageSet;
use crate::metrics::fid::{frechet_distance, StatsAccumulator, DEFAULT_EPS};
use crate::models::inception::load_fid_inception;
use crate::report::results::{write, FidResult, FID_FORMAT};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::Value;
use tch::Kind;

pub struct Fid;

impl Stage for Fid {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/fid".into(),
            version: 1,
            params: vec![param(
                "inception",
                ParamType::Path,
                Some(Value::Null),
                "pytorch-fid Inception-v3 weights (pt_inception-2015-12-05) converted to safetensors; unset = not computed",
            )],
            inputs: vec![
                slot("synthetic", true, false, "the synthetic image set (e.g. select's output)"),
                slot("real", true, false, "the real image set (the few-shot training set)"),
            ],
            outputs: vec!["fid".into()],
            resumable: false,
            doc: "Fréchet distance on Inception features (weights given by the user)".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let synthetic = ImageSet::open(&ctx.input("synthetic")?.path)?;
        let real = ImageSet::open(&ctx.input("real")?.path)?;
        let result = match optional_path(ctx, "inception")? {
            None => FidResult::not_computed("no Inception weights given (parameter `inception`)"),
            Some((_, weights)) => {
                let device = crate::device::parse(ctx.device())?;
                let (_vs, model) = load_fid_inception(&weights, device).map_err(invalid)?;
                let stats = |set: &ImageSet| -> Result<_, StageError> {
                    let mut acc = StatsAccumulator::default();
                    for_each_chunk(set, 50, |images| {
                        let x = images.to_device(device).to_kind(Kind::Float) / 255.0;
                        acc.add(&model.pool3(&x).map_err(invalid)?).map_err(invalid)
                    })?;
                    acc.finish().map_err(invalid)
                };
                let (a, b) = (stats(&synthetic)?, stats(&real)?);
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
}
