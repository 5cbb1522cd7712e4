//! The paper pipelines checked at the paper's data sizes (SPEC §9), from their plans,
//! without running anything: every sample pool holds a candidate for every select quota,
//! every evaluate of a sweep member reads the selection its classifier was trained on and
//! names its sweep's variant (so the report prints the right paper row), and every
//! autoencoder reaches its `disc_start` within its run.

use histodiff_engine::plan::{InputBinding, Instance, Plan};
use histodiff_engine::registry::Registry;
use histodiff_engine::spec::{load, SettingsOverrides};
use histodiff_stages::data::selection::ratio_quotas;
use histodiff_stages::data::subset::{class_quotas, PerClass, SubsetSize};
use histodiff_stages::report::paper::lookup;
use std::path::Path;

/// NCT-CRC-HE-100K per class, ADI … TUM (SPEC §9.1).
const CRC_COUNTS: [usize; 9] = [
    10_407, 10_566, 11_512, 11_557, 8_896, 13_536, 8_763, 10_446, 14_317,
];
/// The unlabeled pre-training patches (SPEC §9.4).
const PRETRAIN_PATCHES: usize = 803_179;

fn plans() -> Vec<(&'static str, Plan)> {
    let mut registry = Registry::with_builtins();
    for kind in histodiff_stages::kinds::all() {
        registry.insert(kind.spec());
    }
    [
        "histodiffusion.yaml",
        "histodiffusion-official.yaml",
        "ablations.yaml",
    ]
    .into_iter()
    .map(|name| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipelines")
            .join(name);
        let plan = load(&path, &registry, &SettingsOverrides::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        (name, plan)
    })
    .collect()
}

fn of_kind<'a>(plan: &'a Plan, kind: &'a str) -> impl Iterator<Item = &'a Instance> {
    plan.instances.iter().filter(move |i| i.kind == kind)
}

/// The instances bound to `slot` with their output names (empty when unbound).
fn bound<'a>(plan: &'a Plan, inst: &Instance, slot: &str) -> Vec<(&'a Instance, String)> {
    let ups = match inst.inputs.get(slot) {
        Some(InputBinding::One(u)) => std::slice::from_ref(u),
        Some(InputBinding::Many(us)) => us.as_slice(),
        None => &[],
    };
    ups.iter()
        .map(|u| (&plan.instances[u.instance], u.output.clone()))
        .collect()
}

fn one<'a>(plan: &'a Plan, inst: &Instance, slot: &str) -> &'a Instance {
    match bound(plan, inst, slot).as_slice() {
        [(up, _)] => up,
        other => panic!(
            "{}: slot `{slot}` binds {} instances",
            inst.name,
            other.len()
        ),
    }
}

fn int(inst: &Instance, name: &str) -> usize {
    let v = inst.params.get(name).and_then(|v| v.as_u64());
    v.unwrap_or_else(|| panic!("{}: `{name}` is not a count", inst.name)) as usize
}

/// Images per class of an image set at the paper's sizes.
fn class_counts(plan: &Plan, set: &Instance) -> Vec<usize> {
    match set.kind.as_str() {
        "data/subset" => {
            let source = one(plan, set, "images");
            let path = source.params["path"].as_str().unwrap_or_default();
            assert!(
                path.ends_with("NCT-CRC-HE-100K"),
                "{}: subset of {path}",
                set.name
            );
            let per_class = match set.params["per_class"].as_str() {
                Some("balanced") => PerClass::Balanced,
                _ => PerClass::Stratified,
            };
            let fraction = set.params["fraction"].as_f64().unwrap();
            class_quotas(&CRC_COUNTS, per_class, SubsetSize::Fraction(fraction)).unwrap()
        }
        "data/images" => vec![PRETRAIN_PATCHES],
        other => panic!("{}: no paper-scale size known for {other}", set.name),
    }
}

#[test]
fn every_pool_holds_a_candidate_for_every_quota_at_paper_scale() {
    for (name, plan) in plans() {
        for select in of_kind(&plan, "histodiffusion/select") {
            let pool = one(&plan, select, "pool");
            let per_class = int(pool, "per_class");
            let real = class_counts(&plan, one(&plan, select, "real"));
            let ratio = select.params["ratio"].as_f64().unwrap();
            let largest = ratio_quotas(&real, ratio).into_iter().max().unwrap();
            assert!(
                per_class >= largest,
                "{name}: {} needs {largest} candidates of a class, {} makes {per_class}",
                select.name,
                pool.name
            );
            // The nearest-centroid filter rejects some candidates: the pool needs a margin.
            if select.params["method"] == "centroid" {
                assert!(
                    per_class as f64 >= 1.2 * largest as f64,
                    "{name}: {} leaves less than 20 % of {largest} for the filter to reject",
                    pool.name
                );
            }
        }
    }
}

#[test]
fn every_evaluate_reads_the_selection_its_classifier_was_trained_on() {
    for (name, plan) in plans() {
        for evaluate in of_kind(&plan, "histodiffusion/evaluate") {
            let classifier = one(&plan, evaluate, "predictions");
            let trained_on: Vec<&str> = bound(&plan, classifier, "train")
                .into_iter()
                .filter(|(up, _)| up.kind == "histodiffusion/select")
                .map(|(up, _)| up.name.as_str())
                .collect();
            let recorded: Vec<(&str, String)> = bound(&plan, evaluate, "selection")
                .into_iter()
                .map(|(up, output)| (up.name.as_str(), output))
                .collect();
            let expected: Vec<(&str, String)> = trained_on
                .iter()
                .map(|s| (*s, "selection".to_string()))
                .collect();
            assert_eq!(recorded, expected, "{name}: {}", evaluate.name);
        }
    }
}

/// `noft_` and `nopre_` stages are supplementary Table 1's ablations and `_gan` stages its
/// StyleGAN2 rows; each evaluate says so, and the paper has a row for every sweep member
/// it evaluates.
#[test]
fn every_evaluate_names_the_variant_of_its_sweep() {
    for (name, plan) in plans() {
        for evaluate in of_kind(&plan, "histodiffusion/evaluate") {
            let expected = match evaluate.stage.split('_').next() {
                Some("noft") => "no-finetune",
                Some("nopre") => "no-pretrain",
                _ if evaluate.stage.split('_').any(|w| w == "gan") => "stylegan2",
                _ => "full",
            };
            let variant = evaluate.params["variant"].as_str().unwrap();
            assert_eq!(variant, expected, "{name}: {}", evaluate.name);
            for (select, _) in bound(&plan, evaluate, "selection") {
                let method = select.params["method"].as_str().unwrap();
                let ratio = select.params["ratio"].as_f64().unwrap();
                let paper = lookup(variant, method, ratio);
                assert!(
                    paper.is_some_and(|p| p.setting.variant == variant),
                    "{name}: {} has no paper row",
                    evaluate.name
                );
            }
        }
    }
}

/// The GAN terms of Eq. 4 count from step `disc_start`; a run shorter than that trains
/// without them (the former "without pre-training" autoencoder: 50,001 of 8,330 steps).
#[test]
fn every_autoencoder_reaches_its_disc_start() {
    for (name, plan) in plans() {
        let kinds = [
            "histodiffusion/train-autoencoder",
            "histodiffusion/finetune-decoder",
        ];
        for ae in plan
            .instances
            .iter()
            .filter(|i| kinds.contains(&i.kind.as_str()))
        {
            let images: usize = class_counts(&plan, one(&plan, ae, "images")).iter().sum();
            let steps = match int(ae, "steps") {
                0 => images / int(ae, "batch_size") * int(ae, "epochs"),
                n => n,
            };
            let disc_start = int(ae, "disc_start");
            assert!(
                disc_start < steps,
                "{name}: {} starts its GAN at step {disc_start} of {steps}",
                ae.name
            );
        }
    }
}
