//! The example and paper pipelines validate against the registry of every kind this
//! crate implements (parameters, slots, references, matrices), as `histodiff plan` does.

use histodiff_engine::registry::Registry;
use histodiff_engine::spec::{load, SettingsOverrides};
use std::path::Path;

fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    for kind in histodiff_stages::kinds::all() {
        r.insert(kind.spec());
    }
    r
}

#[test]
fn quickstart_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml");
    match load(&path, &registry(), &SettingsOverrides::default()) {
        Ok(plan) => eprintln!("quickstart: {} stage instances", plan.instances.len()),
        Err(errors) => panic!("{errors}"),
    }
}

#[test]
fn paper_pipelines_validate() {
    for name in [
        "histodiffusion.yaml",
        "histodiffusion-official.yaml",
        "ablations.yaml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipelines")
            .join(name);
        if let Err(errors) = load(&path, &registry(), &SettingsOverrides::default()) {
            panic!("{name}: {errors}");
        }
    }
}
