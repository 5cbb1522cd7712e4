//! `data/subset`: the seeded few-shot subset of SPEC §9.3 (5 % of NCT-CRC-HE-100K,
//! sampled without replacement from every class), or with `complement: true` everything
//! else — two stages with the same seed split a set into disjoint train and test parts.
//! The chosen source files are recorded in the output manifest.

use super::declare::kind;
use super::invalid;
use super::params::{choice, default, range};
use crate::artifact::{ImageSet, ImageSetWriter};
use crate::data::subset::{complement, select, PerClass, SubsetSize};
use histodiff_engine::stage::{StageContext, StageError};

choice!(PerClass { "stratified" => Stratified, "balanced" => Balanced, "even" => Stratified });

kind! {
    /// even per-class few-shot subset (or its complement), seeded
    Subset("data/subset", version: 1) -> [images] {
        /// stratified: round(fraction·n_c) of each class; balanced: the same number per class;
        /// even = stratified
        per_class: PerClass = default(PerClass::Stratified),
        /// share of the whole set to keep (ignored when count > 0)
        fraction: f64 = range(0.0..=1.0).default(0.05),
        /// exact number of images to keep (0 = use fraction)
        count: usize = range(0..).default(0),
        /// seed of the per-class shuffles
        seed: u64 = range(0..).default(0),
        /// output the images NOT chosen (a held-out set)
        complement: bool = default(false),
    }
    inputs {
        /// a labeled image set
        images: One,
    }
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let set = ImageSet::open(&ctx.input("images")?.path).map_err(invalid)?;
    let manifest = set.manifest().clone();
    if !manifest.labeled() {
        return Err(StageError::Invalid(format!(
            "{}: data/subset needs a labeled image set",
            set.dir().display()
        )));
    }
    let size = if p.count > 0 {
        SubsetSize::Count(p.count)
    } else {
        SubsetSize::Fraction(p.fraction)
    };
    let labels: Vec<i64> = manifest
        .items
        .iter()
        .map(|i| i.label.unwrap_or(-1))
        .collect();
    let chosen =
        select(&labels, manifest.classes.len(), p.per_class, size, p.seed).map_err(invalid)?;
    let keep = if p.complement {
        complement(manifest.count, &chosen)
    } else {
        chosen
    };
    ctx.log(format!(
        "keeping {} of {} images",
        keep.len(),
        manifest.count
    ));
    let mut writer =
        ImageSetWriter::like(&ctx.output_path("images"), &manifest).map_err(invalid)?;
    let mut next = keep.iter().peekable();
    set.for_each(|index, chw, label| {
        if next.peek() == Some(&&index) {
            next.next();
            writer
                .push_chw(chw, label, manifest.items[index].source.clone())
                .map_err(invalid)?;
        }
        Ok::<(), StageError>(())
    })?;
    writer.finish().map_err(invalid)?;
    Ok(())
}
