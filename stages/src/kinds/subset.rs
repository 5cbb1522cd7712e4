//! `data/subset`: the seeded few-shot subset of SPEC §9.3 (5 % of NCT-CRC-HE-100K,
//! sampled without replacement from every class), or with `complement: true` everything
//! else — two stages with the same seed split a set into disjoint train and test parts.
//! The chosen source files are recorded in the output manifest.

use super::schema::{float, int, invalid, one_of, param, slot, usize_param};
use crate::artifact::{ImageSet, ImageSetWriter, DEFAULT_SHARD_SIZE};
use crate::data::subset::{complement, select, PerClass, SubsetSize};
use histodiff_engine::registry::{KindSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};

pub struct Subset;

impl Stage for Subset {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "data/subset".into(),
            version: 1,
            params: vec![
                param("per_class", one_of(&["stratified", "balanced", "even"]), Some("stratified".into()),
                    "stratified: round(fraction·n_c) of each class; balanced: the same number per class; even = stratified"),
                param("fraction", float(Some(0.0), Some(1.0)), Some(0.05.into()), "share of the whole set to keep (ignored when count > 0)"),
                param("count", int(Some(0), None), Some(0.into()), "exact number of images to keep (0 = use fraction)"),
                param("seed", int(Some(0), None), Some(0.into()), "seed of the per-class shuffles"),
                param("complement", ParamType::Bool, Some(false.into()), "output the images NOT chosen (a held-out set)"),
            ],
            inputs: vec![slot("images", true, false, "a labeled image set")],
            outputs: vec!["images".into()],
            resumable: false,
            doc: "even per-class few-shot subset (or its complement), seeded".into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let set = ImageSet::open(&ctx.input("images")?.path).map_err(invalid)?;
        let manifest = set.manifest().clone();
        if !manifest.labeled() {
            return Err(StageError::Invalid(format!(
                "{}: data/subset needs a labeled image set",
                set.dir().display()
            )));
        }
        let per_class = match ctx.param_str("per_class")? {
            "balanced" => PerClass::Balanced,
            _ => PerClass::Stratified,
        };
        let count = usize_param(ctx, "count")?;
        let size = if count > 0 {
            SubsetSize::Count(count)
        } else {
            SubsetSize::Fraction(ctx.param_f64("fraction")?)
        };
        let labels: Vec<i64> = manifest
            .items
            .iter()
            .map(|i| i.label.unwrap_or(-1))
            .collect();
        let seed = ctx.param_i64("seed")? as u64;
        let chosen =
            select(&labels, manifest.classes.len(), per_class, size, seed).map_err(invalid)?;
        let keep = if ctx.param_bool("complement")? {
            complement(manifest.count, &chosen)
        } else {
            chosen
        };
        ctx.log(format!(
            "keeping {} of {} images",
            keep.len(),
            manifest.count
        ));
        let mut writer = ImageSetWriter::create(
            &ctx.output_path("images"),
            manifest.classes.clone(),
            manifest.image_size,
            DEFAULT_SHARD_SIZE,
        )
        .map_err(invalid)?;
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
}
