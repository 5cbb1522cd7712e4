//! `histodiffusion/select`: picks synthetic images from a candidate pool (labeled by the
//! class they were generated for) to add X % = ratio·|real| to the few-shot set
//! (SPEC §7). `random` draws N_c = round(ratio·n_c) uniformly per class; `centroid`
//! keeps the candidates nearest to the class centroid of the real images' features after
//! a nearest-centroid filter (HistoGAN-style selective augmentation). Output `selection`
//! records what was chosen, including how many images `shortfall: fill` let in although
//! the filter rejected them; `histodiffusion/evaluate` carries it into the report's row.

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, range, Choice};
use crate::artifact::classifier;
use crate::artifact::{ImageSet, ImageSetWriter};
use crate::data::selection::{
    centroids, check_pool, filled_per_class, ratio_quotas, select_by_centroid, select_random,
    Shortfall,
};
use crate::report::results::{write, SelectionSummary, SELECTION_FORMAT};
use histodiff_engine::stage::{StageContext, StageError};

kind! {
    /// random or centroid-distance selection of synthetic images to an augmentation ratio
    Select("histodiffusion/select", version: 2) -> [images, selection] {
        /// random, or centroid distance (the paper's selective augmentation)
        method: Method = default(Method::Centroid),
        /// synthetic images per real image, per class (0.5 = 50 %)
        ratio: f64 = range(0.0..=100.0),
        /// seed of the random draw
        seed: u64 = range(0..).default(0),
        /// centroid: when too few candidates pass the nearest-centroid filter, fail or fill
        /// with the nearest rejected ones (counted in the `selection` output)
        shortfall: Shortfall = default(Shortfall::Error),
    }
    inputs {
        /// candidate synthetic images (labeled by conditioning class)
        pool: One,
        /// the real labeled few-shot set (class sizes and centroids)
        real: One,
        /// centroid: the classifier whose features are compared (baseline trained on real
        /// images)
        features: Optional,
    }
}

choice!(Shortfall { "error" => Error, "fill" => Fill });

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let pool = ImageSet::open(&ctx.input("pool")?.path).map_err(invalid)?;
    let real = ImageSet::open(&ctx.input("real")?.path).map_err(invalid)?;
    let (pm, rm) = (pool.manifest(), real.manifest());
    if pm.classes != rm.classes || !pm.labeled() {
        return Err(StageError::Invalid(format!(
            "pool classes {:?} differ from the real set's {:?}",
            pm.classes, rm.classes
        )));
    }
    let (ratio, method) = (p.ratio, p.method);
    let quotas = ratio_quotas(&rm.class_counts(), ratio);
    check_quotas(ctx, &pool, &quotas, ratio, method)?;
    let pool_labels: Vec<i64> = pm.items.iter().map(|i| i.label.unwrap_or(-1)).collect();
    let (chosen, filled) = match method {
        Method::Random => {
            let chosen = select_random(&pool_labels, &quotas, p.seed).map_err(invalid)?;
            (chosen, vec![0; quotas.len()])
        }
        Method::Centroid => by_centroid(ctx, &pool, &real, &pool_labels, (&quotas, p.shortfall))?,
    };
    ctx.log(format!(
        "selected {} of {} candidates for quotas {quotas:?}",
        chosen.len(),
        pm.count
    ));
    ctx.metric("select/count", None, chosen.len() as f64);
    let summary = SelectionSummary {
        format: SELECTION_FORMAT.into(),
        method: method.to_name().into(),
        ratio,
        classes: pm.classes.clone(),
        pool: as_u64(&pm.class_counts()),
        quotas: as_u64(&quotas),
        filled_total: filled.iter().sum::<usize>() as u64,
        filled: as_u64(&filled),
        count: chosen.len() as u64,
    };
    write_subset(ctx, &pool, chosen)?;
    write(&ctx.output_path("selection"), &summary).map_err(invalid)
}

/// The selection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Random,
    Centroid,
}

choice!(Method { "random" => Random, "centroid" => Centroid });

/// Fails before any feature is extracted (an hour at paper scale) when the pool holds
/// fewer candidates of a class than its quota, naming the per_class that would suffice.
fn check_quotas(
    ctx: &StageContext,
    pool: &ImageSet,
    quotas: &[usize],
    ratio: f64,
    method: Method,
) -> Result<(), StageError> {
    let m = pool.manifest();
    let producer = &ctx.input("pool")?.producer;
    check_pool(&m.class_counts(), quotas, &m.classes, ratio, producer).map_err(|e| match method {
        Method::Centroid => StageError::Invalid(format!(
            "{e}, or more: the nearest-centroid filter rejects some candidates"
        )),
        Method::Random => invalid(e),
    })
}

/// The centroid rule on the features of the `features` classifier: the chosen pool
/// indices and, per class, how many of them `shortfall: fill` added.
fn by_centroid(
    ctx: &mut StageContext,
    pool: &ImageSet,
    real: &ImageSet,
    pool_labels: &[i64],
    (quotas, shortfall): (&[usize], Shortfall),
) -> Result<(Vec<usize>, Vec<usize>), StageError> {
    let (pool_f, centres) = pool_and_centroids(ctx, pool, real)?;
    let picked =
        select_by_centroid(&pool_f, pool_labels, &centres, quotas, shortfall).map_err(invalid)?;
    let filled = filled_per_class(&picked, pool_labels, quotas.len());
    let total: usize = filled.iter().sum();
    if total > 0 {
        // Loud on purpose: these rows are no longer purely "selective" augmentation.
        ctx.log(format!(
            "{total} images (per class {filled:?}) failed the nearest-centroid filter and were taken to fill the quotas; sample a larger pool to avoid this"
        ));
    }
    ctx.metric("select/filled", None, total as f64);
    Ok((picked.into_iter().map(|s| s.index).collect(), filled))
}

/// One feature vector per image, or per class for centroids.
type FeatureRows = Vec<Vec<f32>>;

/// (pool features, class centroids of the real set's features), both from the classifier
/// bound to `features` (trained on the real few-shot set).
fn pool_and_centroids(
    ctx: &StageContext,
    pool: &ImageSet,
    real: &ImageSet,
) -> Result<(FeatureRows, FeatureRows), StageError> {
    let device = crate::device::parse(ctx.device())?;
    let classifier = classifier::load(&ctx.input("features")?.path, device)?;
    let pool_features = classifier.normalised_features(pool)?;
    let real_features = classifier.normalised_features(real)?;
    let labels: Vec<i64> = real
        .manifest()
        .items
        .iter()
        .map(|i| i.label.unwrap_or(-1))
        .collect();
    let centres = centroids(&real_features, &labels, real.manifest().classes.len())?;
    Ok((pool_features, centres))
}

fn as_u64(counts: &[usize]) -> Vec<u64> {
    counts.iter().map(|&n| n as u64).collect()
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
    let mut writer = ImageSetWriter::like(&ctx.output_path("images"), m).map_err(invalid)?;
    for (r, entry) in picked.into_iter().enumerate() {
        let (chw, label) = entry.expect("every chosen index is in the pool");
        writer
            .push_chw(&chw, label, m.items[chosen[r]].source.clone())
            .map_err(invalid)?;
    }
    writer.finish().map_err(invalid)?;
    Ok(())
}
