//! Snapshot tests of small plans: instance names and order, coordinates, canonical
//! parameters and input bindings of the valid corpus (tests/pipelines/valid).

mod spec_support;

use histodiff_engine::plan::{InputBinding, Plan};
use histodiff_engine::spec::{self, SettingsOverrides};
use std::fmt::Write;

fn load(name: &str) -> Plan {
    let path = spec_support::pipelines_dir().join("valid").join(name);
    match spec::load(
        &path,
        &spec_support::registry(),
        &SettingsOverrides::default(),
    ) {
        Ok(plan) => plan,
        Err(e) => panic!("{name} should resolve, got:\n{e}"),
    }
}

/// One block per instance, paths made relative to the pipeline directory so snapshots
/// do not depend on where the repository is checked out.
fn render(plan: &Plan) -> String {
    let base = plan.base_dir.display().to_string();
    let mut out = String::new();
    for inst in &plan.instances {
        writeln!(out, "{} ({} v{})", inst.name, inst.kind, inst.kind_version).unwrap();
        if !inst.coords.is_empty() {
            writeln!(
                out,
                "  coords: {}",
                serde_json::to_string(&inst.coords).unwrap()
            )
            .unwrap();
        }
        if !inst.params.is_empty() {
            writeln!(
                out,
                "  params: {}",
                serde_json::Value::Object(inst.params.clone())
            )
            .unwrap();
        }
        for (k, p) in &inst.external_paths {
            writeln!(
                out,
                "  path {k}: {}",
                p.display().to_string().replace(&base, "<dir>")
            )
            .unwrap();
        }
        for (slot, binding) in &inst.inputs {
            let text = |u: &histodiff_engine::plan::Upstream| {
                format!("{}.{}", plan.instances[u.instance].name, u.output)
            };
            let bound = match binding {
                InputBinding::One(u) => text(u),
                InputBinding::Many(us) => {
                    format!("[{}]", us.iter().map(text).collect::<Vec<_>>().join(", "))
                }
            };
            writeln!(out, "  {slot} <- {bound}").unwrap();
        }
        if let Some(c) = &inst.command {
            writeln!(out, "  run: {}", c.run).unwrap();
            for d in &c.deps {
                writeln!(
                    out,
                    "  dep: {}",
                    d.display().to_string().replace(&base, "<dir>")
                )
                .unwrap();
            }
            writeln!(out, "  outs: {:?}", c.outs).unwrap();
        }
        writeln!(
            out,
            "  outputs: {:?}; resources: {:?}; retries: {}",
            inst.outputs, inst.resources, inst.retries
        )
        .unwrap();
    }
    out
}

#[test]
fn design_example() {
    let plan = load("design.yaml");
    assert_eq!(plan.name, "quickstart");
    assert_eq!(plan.settings.jobs, 2);
    assert!(
        plan.settings
            .store
            .ends_with("tests/pipelines/valid/.histodiff"),
        "{}",
        plan.settings.store
    );
    insta::assert_snapshot!(render(&plan));
}

#[test]
fn fanout_rules() {
    insta::assert_snapshot!(render(&load("fanout.yaml")));
}

#[test]
fn commands() {
    insta::assert_snapshot!(render(&load("commands.yaml")));
}

#[test]
fn instances_are_topologically_ordered_and_graph_matches() {
    for name in ["design.yaml", "fanout.yaml", "commands.yaml"] {
        let plan = load(name);
        assert_eq!(plan.graph.node_count(), plan.instances.len());
        let mut edges = 0;
        for i in 0..plan.instances.len() {
            for u in plan.upstreams(i) {
                assert!(
                    u < i,
                    "{name}: {} reads {} which comes later",
                    plan.instances[i].name,
                    plan.instances[u].name
                );
                assert!(plan.graph.contains_edge(plan.node(u), plan.node(i)));
                edges += 1;
            }
        }
        assert_eq!(
            plan.graph.edge_count(),
            edges,
            "{name}: one edge per distinct upstream"
        );
    }
}

#[test]
fn overrides_replace_file_settings() {
    let path = spec_support::pipelines_dir().join("valid/design.yaml");
    let overrides = SettingsOverrides {
        jobs: Some(7),
        device: Some("cuda:1".into()),
        store: Some("/tmp/elsewhere".into()),
        salt: Some("x".into()),
        ..Default::default()
    };
    let plan = spec::load(&path, &spec_support::registry(), &overrides).unwrap();
    assert_eq!(plan.settings.jobs, 7);
    assert_eq!(plan.settings.device, "cuda:1");
    assert_eq!(plan.settings.store, "/tmp/elsewhere");
    assert_eq!(plan.settings.salt, "x");
}

/// Every element of a list of paths is external data: its content must enter the key,
/// so each is recorded under `name.N`, resolved against the pipeline directory.
#[test]
fn list_of_paths_are_external_data() {
    let yaml = "version: 1\nname: t\nstages:\n  pre:\n    uses: data/images\n    with: { paths: [a/x, /abs/y] }\n";
    let file = std::path::Path::new("/work/p/pipeline.yaml");
    let plan = spec::load_str(
        yaml,
        file,
        &spec_support::registry(),
        &SettingsOverrides::default(),
    )
    .unwrap_or_else(|e| panic!("should resolve: {e}"));
    let ext = &plan.instances[0].external_paths;
    assert_eq!(
        ext.get("paths.0").map(|p| p.display().to_string()),
        Some("/work/p/a/x".into())
    );
    assert_eq!(
        ext.get("paths.1").map(|p| p.display().to_string()),
        Some("/abs/y".into())
    );
    assert_eq!(ext.len(), 2);
}
