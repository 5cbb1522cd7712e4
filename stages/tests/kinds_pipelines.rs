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
    for name in ["histodiffusion.yaml", "histodiffusion-official.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../pipelines")
            .join(name);
        if let Err(errors) = load(&path, &registry(), &SettingsOverrides::default()) {
            panic!("{name}: {errors}");
        }
    }
}

/// Runs every instance of the quickstart plan in topological order, in process, the way
/// a worker would (inputs bound to upstream outputs with producer and coordinates), and
/// checks the report. This is the quickstart's end-to-end run without the orchestrator.
#[test]
#[ignore = "trains six tiny ViTs (about 3 CPU-minutes); run with `--ignored`"]
fn quickstart_runs_end_to_end_in_process() {
    use histodiff_engine::hash::{ArtifactHash, StageKey};
    use histodiff_engine::plan::InputBinding;
    use histodiff_engine::protocol::{InputArtifact, Job};
    use histodiff_engine::stage::StageContext;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml");
    let plan =
        load(&path, &registry(), &SettingsOverrides::default()).unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let work = |i: usize| tmp.path().join(format!("{i:03}"));
    let started = std::time::Instant::now();
    for (i, inst) in plan.instances.iter().enumerate() {
        let artifact = |u: &histodiff_engine::plan::Upstream| InputArtifact {
            hash: ArtifactHash(format!("{:064x}", u.instance)),
            path: work(u.instance).join("out").join(&u.output),
            producer: plan.instances[u.instance].name.clone(),
            coords: plan.instances[u.instance].coords.clone(),
        };
        let inputs = inst
            .inputs
            .iter()
            .map(|(slot, b)| {
                let arts = match b {
                    InputBinding::One(u) => vec![artifact(u)],
                    InputBinding::Many(us) => us.iter().map(artifact).collect(),
                };
                (slot.clone(), arts)
            })
            .collect();
        std::fs::create_dir_all(work(i).join("out")).unwrap();
        let job = Job {
            execution_id: i as i64,
            key: StageKey(format!("{i:064x}")),
            instance: inst.name.clone(),
            kind: inst.kind.clone(),
            kind_version: inst.kind_version,
            params: inst.params.clone(),
            external_paths: inst.external_paths.clone(),
            inputs,
            command: None,
            base_dir: plan.base_dir.clone(),
            work_dir: work(i),
            checkpoint_dir: work(i).join("ckpt"),
            objects_dir: tmp.path().join("objects"),
            device: "cpu".into(),
            threads: 2,
        };
        let stage = histodiff_stages::kinds::find(&inst.kind)
            .unwrap_or_else(|| panic!("no kind {}", inst.kind));
        let mut ctx = StageContext::new(
            job,
            Arc::new(AtomicBool::new(false)),
            Box::new(std::io::sink()),
        );
        let t = std::time::Instant::now();
        stage
            .run(&mut ctx)
            .unwrap_or_else(|e| panic!("{}: {e}", inst.name));
        eprintln!("{:>50} {:6.1} s", inst.name, t.elapsed().as_secs_f64());
    }
    eprintln!(
        "quickstart in process: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report = plan
        .instances
        .iter()
        .position(|i| i.kind == "report/table")
        .unwrap();
    let md = std::fs::read_to_string(work(report).join("out/report/table.md")).unwrap();
    eprintln!("{md}");
    for row in [
        "| baseline |",
        "| random 50 % |",
        "| selective 50 % |",
        "| selective 300 % |",
    ] {
        assert!(md.contains(row), "missing row {row}:\n{md}");
    }
    assert!(
        md.contains("FID n/c = not computed"),
        "FID without weights is reported as not computed"
    );
}
