//! `--set PATH=VALUE` through the public spec API: values are typed as in the file, reach
//! `${params.*}` and matrices, give the same stage keys as the value written in the file,
//! and every malformed or impossible override is a located error naming its argument.

mod spec_support;

use histodiff_engine::fingerprint::Fingerprint;
use histodiff_engine::plan::{Plan, SmallMap};
use histodiff_engine::spec::{self, SettingsOverrides, SpecErrors};
use serde_json::{json, Value};
use std::path::Path;

const PIPELINE: &str = "\
version: 1
name: t
params: { size: 32, frac: 0.1 }
stages:
  crc:
    uses: data/image-folder
    with: { path: data/crc, image_size: ${params.size} }
  fewshot:
    uses: data/subset
    inputs: { images: crc }
    matrix: { seed: [0, 1] }
    with: { fraction: ${params.frac}, seed: ${matrix.seed} }
  diffusion:
    uses: histodiffusion/train-diffusion
    inputs: { images: crc }
    with:
      steps: 100
  classify:
    uses: histodiffusion/train-classifier
    inputs: { train: [crc], test: crc }
";

fn sets(args: &[&str]) -> SettingsOverrides {
    SettingsOverrides {
        set: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn load(text: &str, overrides: &SettingsOverrides) -> Result<Plan, SpecErrors> {
    let file = Path::new("/work/p/pipeline.yaml");
    spec::load_str(text, file, &spec_support::registry(), overrides)
}

fn plan(args: &[&str]) -> Plan {
    load(PIPELINE, &sets(args)).unwrap_or_else(|e| panic!("{args:?} should load:\n{e}"))
}

/// The errors of a load that must fail, as printed.
fn errors(args: &[&str]) -> String {
    match load(PIPELINE, &sets(args)) {
        Ok(_) => panic!("{args:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

fn param(plan: &Plan, instance: &str, key: &str) -> Value {
    let Some(inst) = plan.instances.iter().find(|i| i.name == instance) else {
        panic!("no instance {instance}");
    };
    inst.params.get(key).cloned().unwrap_or(Value::Null)
}

/// Instance name → stage key, with no upstream content: what the file itself decides.
fn keys(plan: &Plan) -> Vec<(String, String)> {
    plan.instances
        .iter()
        .map(|i| {
            let fp = Fingerprint::of(i, SmallMap::new(), SmallMap::new(), &plan.settings.salt);
            (i.name.clone(), fp.key().0)
        })
        .collect()
}

#[test]
fn values_are_typed_as_yaml_scalars() {
    let p = plan(&[
        "stages.diffusion.with.steps=5",
        "stages.diffusion.with.lr=0.5",
        "stages.classify.with.pretrained=false",
        "stages.fewshot.with.per_class=proportional",
    ]);
    assert_eq!(param(&p, "diffusion", "steps"), json!(5));
    assert_eq!(param(&p, "diffusion", "lr"), json!(0.5));
    assert_eq!(param(&p, "classify", "pretrained"), json!(false));
    assert_eq!(
        param(&p, "fewshot[seed=0]", "per_class"),
        json!("proportional")
    );
}

#[test]
fn params_interpolation_sees_the_overridden_value() {
    let p = plan(&["params.size=64", "params.frac=0.5"]);
    assert_eq!(param(&p, "crc", "image_size"), json!(64));
    assert_eq!(param(&p, "fewshot[seed=1]", "fraction"), json!(0.5));
}

#[test]
fn a_matrix_override_expands_like_the_file() {
    let p = plan(&["stages.fewshot.matrix.seed=[3, 4, 5]"]);
    let names: Vec<&str> = p.instances.iter().map(|i| i.name.as_str()).collect();
    assert!(names.contains(&"fewshot[seed=5]"), "{names:?}");
    assert_eq!(param(&p, "fewshot[seed=4]", "seed"), json!(4));
}

#[test]
fn keys_a_file_may_leave_out_may_be_added() {
    let p = plan(&[
        "params.unused=1",
        "stages.crc.with.path=data/other",
        "stages.classify.with.epochs=2",
        "settings.device=cpu",
        "stages.classify.resources.cpus=3",
    ]);
    assert_eq!(param(&p, "classify", "epochs"), json!(2));
    let classify = p.instances.iter().find(|i| i.stage == "classify");
    assert_eq!(classify.map(|i| i.resources.cpus), Some(3));
    assert_eq!(param(&p, "crc", "path"), json!("data/other"));
    assert_eq!(p.settings.device, "cpu");
}

#[test]
fn the_last_override_wins_and_a_settings_flag_wins_over_set() {
    let p = plan(&[
        "stages.diffusion.with.steps=5",
        "stages.diffusion.with.steps=7",
    ]);
    assert_eq!(param(&p, "diffusion", "steps"), json!(7));
    let mut o = sets(&["settings.device=cpu"]);
    o.device = Some("cuda:1".into());
    let p = load(PIPELINE, &o).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.settings.device, "cuda:1");
}

#[test]
fn an_override_keys_exactly_like_the_value_written_in_the_file() {
    let written = PIPELINE
        .replace("size: 32", "size: 64")
        .replace("steps: 100", "steps: 5")
        .replace("seed: [0, 1]", "seed: [0, 1, 2]");
    let from_file = load(&written, &SettingsOverrides::default()).unwrap_or_else(|e| panic!("{e}"));
    let from_set = plan(&[
        "params.size=64",
        "stages.diffusion.with.steps=5",
        "stages.fewshot.matrix.seed=[0, 1, 2]",
    ]);
    assert_eq!(keys(&from_file), keys(&from_set));
    assert_eq!(from_file.instances, from_set.instances);
    assert_ne!(
        keys(&plan(&[])),
        keys(&from_set),
        "the override changed keys"
    );
}

#[test]
fn malformed_arguments_are_named() {
    let e = errors(&["params.size"]);
    assert!(e.contains("--set params.size: expected PATH=VALUE"), "{e}");
    let e = errors(&["=5"]);
    assert!(e.contains("--set =5: empty PATH"), "{e}");
    let e = errors(&["params..size=5"]);
    assert!(
        e.contains("--set params..size=5: PATH has an empty key"),
        "{e}"
    );
    let e = errors(&["params.size=[1, 2"]);
    assert!(
        e.contains("--set params.size=[1, 2: VALUE is not a YAML value"),
        "{e}"
    );
}

#[test]
fn a_missing_stage_is_an_error_with_a_suggestion() {
    let e = errors(&["stages.difusion.with.steps=5"]);
    assert_eq!(
        e,
        "/work/p/pipeline.yaml: --set stages.difusion.with.steps=5: no stage `difusion`; \
         did you mean `diffusion`? (`--set` cannot add a stage)"
    );
}

#[test]
fn paths_through_non_mappings_and_closed_keys_are_errors() {
    let e = errors(&["stages.crc.uses.x=1"]);
    assert!(
        e.contains("`stages.crc.uses` is a string, not a mapping"),
        "{e}"
    );
    let e = errors(&["stages.crc.wth.path=x"]);
    assert!(
        e.contains("no key `wth` in `stages.crc`; did you mean `with`?"),
        "{e}"
    );
    let e = errors(&["stages.diffusion.inputs.extra.x=1"]);
    assert!(
        e.contains("no key `extra` in `stages.diffusion.inputs`"),
        "{e}"
    );
    let e = errors(&["stagez.crc=1"]);
    assert!(
        e.contains("no top-level key `stagez`; did you mean `stages`?"),
        "{e}"
    );
}

#[test]
fn a_refused_override_leaves_the_document_unchanged() {
    // `retries` may be added to a stage, `retries.x` may not: nothing is added, so the
    // only error is the refusal (not a second one about `retries` being a mapping).
    let e = errors(&["stages.crc.retries.x=1"]);
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn validation_errors_of_overridden_values_name_the_argument() {
    let e = errors(&["stages.diffusion.with.steps=many"]);
    assert!(
        e.starts_with(
            "/work/p/pipeline.yaml: --set stages.diffusion.with.steps=many: \
             stage `diffusion`, key `steps`: expected an integer, found a string"
        ),
        "{e}"
    );
    let e = errors(&["stages.diffusion.with.stps=5"]);
    assert!(
        e.contains(
            "--set stages.diffusion.with.stps=5: stage `diffusion`, key `stps`: unknown key"
        ),
        "{e}"
    );
    assert!(e.contains("did you mean `steps`?"), "{e}");
}

#[test]
fn file_errors_keep_their_lines_and_come_with_the_override_errors() {
    let broken = PIPELINE.replace("steps: 100", "steps: lots");
    let Err(e) = load(&broken, &sets(&["nope"])) else {
        panic!("should be refused");
    };
    assert_eq!(e.errors.len(), 2, "{e}");
    assert_eq!(e.errors[0].set.as_deref(), Some("nope"));
    assert_eq!(
        (e.errors[1].pos.line, e.errors[1].set.as_deref()),
        (17, None)
    );
    let e = load("a: [1\n", &sets(&["x"])).err().map(|e| e.errors.len());
    assert_eq!(e, Some(2), "a syntax error and the malformed --set");
}
