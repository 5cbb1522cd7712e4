//! Features for selective augmentation (SPEC §7.2): the CLS token after the final
//! LayerNorm of the classifier trained on the real few-shot set, L2-normalised, for the
//! candidate pool and for the real images (whose class means are the centroids).

use super::classifier::{for_each_chunk, load, model_input};
use crate::artifact::ImageSet;
use crate::data::selection::{centroids, l2_normalise};
use histodiff_engine::stage::{StageContext, StageError};

/// Normalised features of every image of `set`.
fn features(ctx: &StageContext, set: &ImageSet) -> Result<Vec<Vec<f32>>, StageError> {
    let device = crate::device::parse(ctx.device())?;
    let classifier = load(&ctx.input("features")?.path, device)?;
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(set.len());
    for_each_chunk(set, 64, |images| {
        let x = model_input(images, classifier.config.image_size, device);
        let f = classifier
            .model
            .features_t(&x, false)
            .to_device(tch::Device::Cpu)
            .to_kind(tch::Kind::Float);
        let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&f).map_err(StageError::other)?;
        out.extend(rows.into_iter().map(|mut r| {
            l2_normalise(&mut r);
            r
        }));
        Ok(())
    })?;
    Ok(out)
}

/// One feature vector per image, or per class for centroids.
pub type FeatureRows = Vec<Vec<f32>>;

/// (pool features, class centroids of the real set's features).
pub fn pool_and_centroids(
    ctx: &StageContext,
    pool: &ImageSet,
    real: &ImageSet,
) -> Result<(FeatureRows, FeatureRows), StageError> {
    let pool_features = features(ctx, pool)?;
    let real_features = features(ctx, real)?;
    let labels: Vec<i64> = real
        .manifest()
        .items
        .iter()
        .map(|i| i.label.unwrap_or(-1))
        .collect();
    let centres = centroids(&real_features, &labels, real.manifest().classes.len())?;
    Ok((pool_features, centres))
}
