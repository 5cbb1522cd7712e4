//! `histodiffusion/select`: picks synthetic images from a candidate pool (labeled by the
//! class they were generated for) to add X % = ratio·|real| to the few-shot set
//! (SPEC §7). `random` draws N_c = round(ratio·n_c) uniformly per class; `centroid`
//! keeps the candidates nearest to the class centroid of the real images' features after
//! a nearest-centroid filter (HistoGAN-style selective augmentation).

use super::schema::{float, int, invalid, one_of, param, slot};
use crate::artifact::{ImageSet, ImageSetWriter, DEFAULT_SHARD_SIZE};
use crate::data::selection::{ratio_quotas, select_by_centroid, select_random, Shortfall};
use histodiff_engine::registry::KindSpec;
use histodiff_engine::stage::{Stage, StageContext, StageError};

pub struct Select;

impl Stage for Select {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "histodiffusion/select".into(),
            version: 1,
            params: vec![
                param("method", one_of(&["random", "centroid"]), Some("centroid".into()), "random, or centroid distance (the paper's selective augmentation)"),
                param("ratio", float(Some(0.0), Some(100.0)), None, "synthetic images per real image, per class (0.5 = 50 %)"),
                param("seed", int(Some(0), None), Some(0.into()), "seed of the random draw"),
                param("shortfall", one_of(&["error", "fill"]), Some("error".into()),
                    "centroid: when too few candidates pass the nearest-centroid filter, fail or fill with the nearest rejected ones"),
            ],
            inputs: vec![
                slot("pool", true, false, "candidate synthetic images (labeled by conditioning class)"),
                slot("real", true, false, "the real labeled few-shot set (class sizes and centroids)"),
                slot("features", false, false, "centroid: the classifier whose features are compared (baseline trained on real images)"),
            ],
            outputs: vec!["images".into()],
            resumable: false,
            doc: "random or centroid-distance selection of synthetic images to an augmentation ratio".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let pool = ImageSet::open(&ctx.input("pool")?.path).map_err(invalid)?;
        let real = ImageSet::open(&ctx.input("real")?.path).map_err(invalid)?;
        let (pm, rm) = (pool.manifest(), real.manifest());
        if pm.classes != rm.classes || !pm.labeled() {
            return Err(StageError::Invalid(format!(
                "pool classes {:?} differ from the real set's {:?}",
                pm.classes, rm.classes
            )));
        }
        let quotas = ratio_quotas(&rm.class_counts(), ctx.param_f64("ratio")?);
        let pool_labels: Vec<i64> = pm.items.iter().map(|i| i.label.unwrap_or(-1)).collect();
        let chosen: Vec<usize> = match ctx.param_str("method")? {
            "random" => select_random(&pool_labels, &quotas, ctx.param_i64("seed")? as u64)
                .map_err(invalid)?,
            _ => {
                let shortfall = if ctx.param_str("shortfall")? == "fill" {
                    Shortfall::Fill
                } else {
                    Shortfall::Error
                };
                let (pool_f, centres) = super::features::pool_and_centroids(ctx, &pool, &real)?;
                let picked =
                    select_by_centroid(&pool_f, &pool_labels, &centres, &quotas, shortfall)
                        .map_err(invalid)?;
                let filled = picked.iter().filter(|s| !s.passed_filter).count();
                if filled > 0 {
                    ctx.log(format!("{filled} images taken to fill a shortfall after the nearest-centroid filter"));
                }
                ctx.metric("select/filled", None, filled as f64);
                picked.into_iter().map(|s| s.index).collect()
            }
        };
        ctx.log(format!(
            "selected {} of {} candidates for quotas {quotas:?}",
            chosen.len(),
            pm.count
        ));
        ctx.metric("select/count", None, chosen.len() as f64);
        write_subset(ctx, &pool, chosen)
    }
}

/// Writes pool images `chosen` (in that order) as the output image set.
fn write_subset(
    ctx: &mut StageContext,
    pool: &ImageSet,
    chosen: Vec<usize>,
) -> Result<(), StageError> {
    let m = pool.manifest();
    let mut rank = vec![usize::MAX; m.count];
    chosen.iter().enumerate().for_each(|(r, &i)| rank[i] = r);
    let mut picked: Vec<Option<(Vec<u8>, Option<i64>)>> = vec![None; chosen.len()];
    pool.for_each(|index, chw, label| {
        if let Some(slot) = picked.get_mut(rank[index]) {
            *slot = Some((chw.to_vec(), label));
        }
        Ok::<(), StageError>(())
    })?;
    let mut writer = ImageSetWriter::create(
        &ctx.output_path("images"),
        m.classes.clone(),
        m.image_size,
        DEFAULT_SHARD_SIZE,
    )
    .map_err(invalid)?;
    for (r, entry) in picked.into_iter().enumerate() {
        let (chw, label) = entry.expect("every chosen index is in the pool");
        writer
            .push_chw(&chw, label, m.items[chosen[r]].source.clone())
            .map_err(invalid)?;
    }
    writer.finish().map_err(invalid)?;
    Ok(())
}
