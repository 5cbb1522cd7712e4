//! End-to-end: `export provenance` and `export tensorboard` on runs of the real binary,
//! checked by the reference readers in the project's Python venv (`HISTODIFF_PYTHON`, set
//! by scripts/env.sh): rocrate and rocrate-validator (provenance-run-crate-0.5 profile)
//! for the crate, prov for PROV-JSON, TensorBoard's EventAccumulator for the event
//! files. The Python checks read the store's SQLite database directly, so what they
//! compare against is the store, not histodiff's own reading of it. A missing venv or
//! package fails these tests; nothing is skipped.

mod common;

use common::{Outcome, Project};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A libtorch trainer that logs metrics at every step, between a data stage and a
/// `command` stage that writes a small JSON file (copied into the crate).
const PIPELINE: &str = r#"
version: 1
name: export-check
settings: { device: cpu, jobs: 1 }
stages:
  demo:
    uses: data/demo
    with: { per_class: 4, image_size: 16, classes: [ADI, TUM], seed: 0 }
  crc:
    uses: data/image-folder
    inputs: { folder: demo }
    with: { image_size: 16 }
  aux:
    uses: histodiffusion/train-image-classifier
    inputs: { images: crc }
    with: { preset: tiny, steps: 6, batch_size: 4, lr: 0.0005, metric_every: 1, seed: 0 }
  summary:
    uses: command
    inputs: { cls: aux }
    run: "printf '{\"bytes\": %s}' $(wc -c < ${inputs.cls}) > ${outs.json}"
    outs: { json: summary.json }
"#;

/// The second run: the first three stages are cache hits, `summary` runs again, and a
/// stage that fails is added.
const BROKEN_STAGE: &str = r#"
  broken:
    uses: command
    inputs: { s: summary }
    run: "echo 'no such model' >&2; exit 3"
    outs: { o: o.txt }
"#;

/// Only `command` stages: no metrics at all.
const COMMANDS_ONLY: &str = r#"
version: 1
stages:
  one:
    uses: command
    run: "echo one > ${outs.o}"
    outs: { o: o.txt }
"#;

fn python() -> String {
    std::env::var("HISTODIFF_PYTHON").unwrap_or_else(|_| {
        panic!("HISTODIFF_PYTHON is not set: run `source scripts/env.sh` (the export checks need the venv's rocrate, roc-validator, prov and tensorboard)")
    })
}

/// Runs `tests/export/<script> ARGS` and returns its stdout; fails with its output unless
/// it exits 0 (when `expect_ok`) or non-zero (otherwise).
fn python_check(script: &str, args: &[&Path], expect_ok: bool) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export");
    let out = Command::new(python())
        .arg(dir.join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {} for {script}: {e}", python()));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.success(),
        expect_ok,
        "{script} {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    stdout
}

fn store(p: &Project) -> PathBuf {
    p.path().join(".histodiff")
}

/// Runs the pipeline once (run 1); returns its path.
fn first_run(p: &Project) -> String {
    let pipeline = p.pipeline(PIPELINE).display().to_string();
    p.run(&["run", &pipeline]).expect_code(0);
    pipeline
}

fn export(p: &Project, args: &[&str]) -> Outcome {
    let mut all = vec!["--store", ".histodiff", "export"];
    all.extend_from_slice(args);
    p.run(&all)
}

fn summary(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_provenance_crate_validates_and_matches_the_store() {
    let p = Project::new();
    let pipeline = first_run(&p);
    let first = p.path().join("crate-1");
    export(&p, &["provenance", "1", first.to_str().unwrap()]).expect_code(0);
    let report = summary(&python_check(
        "check_ro_crate.py",
        &[&first, &store(&p), Path::new("1")],
        true,
    ));
    assert_eq!(report["executions"], 4, "{report}");
    assert_eq!(report["copied"], 1, "summary.json is copied: {report}");
    assert!(first.join("artifacts").read_dir().unwrap().count() == 1);

    p.pipeline(&(PIPELINE.replace("printf", "true; printf") + BROKEN_STAGE));
    p.run(&["run", &pipeline]).expect_code(1);
    let second = p.path().join("crate-2");
    export(&p, &["provenance", "2", second.to_str().unwrap()]).expect_code(0);
    let report = summary(&python_check(
        "check_ro_crate.py",
        &[&second, &store(&p), Path::new("2")],
        true,
    ));
    assert_eq!(
        report["executions"], 5,
        "3 cache hits, 1 ran, 1 failed: {report}"
    );
}

#[test]
fn the_validator_rejects_a_crate_that_breaks_a_required_rule() {
    let p = Project::new();
    first_run(&p);
    let dir = p.path().join("crate");
    export(&p, &["provenance", "1", dir.to_str().unwrap()]).expect_code(0);
    // Process Run Crate: an action MUST name its tool as `instrument`.
    let metadata = dir.join("ro-crate-metadata.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    for entity in doc["@graph"].as_array_mut().unwrap() {
        if entity["@type"] == "CreateAction" {
            entity.as_object_mut().unwrap().remove("instrument");
        }
    }
    std::fs::write(&metadata, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = python_check(
        "check_ro_crate.py",
        &[&dir, &store(&p), Path::new("1")],
        false,
    );
    let report = summary(&out);
    let required = report["required_issues"].as_array().unwrap();
    assert!(
        required
            .iter()
            .any(|i| i["message"].as_str().unwrap().contains("instrument")),
        "the validator itself reports the missing instrument: {report}"
    );
}

#[test]
fn prov_json_reads_back_with_the_prov_library() {
    let p = Project::new();
    let pipeline = first_run(&p);
    p.pipeline(&(PIPELINE.replace("printf", "true; printf") + BROKEN_STAGE));
    p.run(&["run", &pipeline]).expect_code(1);
    for run in ["1", "2"] {
        let dir = p.path().join(format!("prov-{run}"));
        export(
            &p,
            &[
                "provenance",
                run,
                dir.to_str().unwrap(),
                "--format",
                "prov-json",
            ],
        )
        .expect_code(0);
        let report = summary(&python_check(
            "check_prov_json.py",
            &[&dir.join("prov.json"), &store(&p), Path::new(run)],
            true,
        ));
        assert!(
            report["records"]["ProvGeneration"].as_u64() >= Some(1),
            "{report}"
        );
    }
}

/// Scalars by run directory, then tag: (step, f32 value).
type Scalars = BTreeMap<String, BTreeMap<String, Vec<(u64, f32)>>>;

/// What the event files must hold, from the database rows, by the documented rules:
/// final values (step NULL) at the last step, not repeated when equal to the value
/// logged there, `<name>/final` when different.
fn expected_scalars(rows: &[Value]) -> Scalars {
    let mut by_instance: BTreeMap<String, Vec<(String, Option<u64>, f64)>> = BTreeMap::new();
    for row in rows {
        let metric = (
            row[2].as_str().unwrap().to_string(),
            row[3].as_u64(),
            row[4].as_f64().unwrap(),
        );
        by_instance
            .entry(row[0].as_str().unwrap().to_string())
            .or_default()
            .push(metric);
    }
    let mut expected = Scalars::new();
    for (instance, metrics) in by_instance {
        let last = metrics.iter().filter_map(|m| m.1).max().unwrap_or(0);
        let tags = expected.entry(instance).or_default();
        for (name, step, value) in &metrics {
            let logged = metrics
                .iter()
                .find(|m| m.1 == Some(last) && &m.0 == name)
                .map(|m| m.2);
            let tag = match (step, logged) {
                (Some(_), _) => name.clone(),
                (None, Some(v)) if v == *value => continue,
                (None, Some(_)) => format!("{name}/final"),
                (None, None) => name.clone(),
            };
            tags.entry(tag)
                .or_default()
                .push((step.unwrap_or(last), *value as f32));
        }
        for series in tags.values_mut() {
            series.sort_by_key(|s| s.0);
        }
    }
    expected
}

#[test]
fn tensorboard_event_files_hold_the_stored_metrics_exactly() {
    let p = Project::new();
    first_run(&p);
    let logdir = p.path().join("tb");
    export(&p, &["tensorboard", "1", logdir.to_str().unwrap()]).expect_code(0);
    let read = summary(&python_check(
        "check_tensorboard.py",
        &[&logdir, &store(&p), Path::new("1")],
        true,
    ));
    let rows = read["database"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r[3].is_u64()),
        "the trainer logged steps: {read}"
    );
    let mut found = Scalars::new();
    for (dir, tags) in read["tensorboard"].as_object().unwrap() {
        for (tag, events) in tags.as_object().unwrap() {
            let mut wall = 0.0;
            for e in events.as_array().unwrap() {
                let w = e[2].as_f64().unwrap();
                assert!(w >= wall, "{dir}/{tag}: wall time goes back: {events}");
                wall = w;
                let value = e[1].as_f64().unwrap() as f32;
                let series = found
                    .entry(dir.clone())
                    .or_default()
                    .entry(tag.clone())
                    .or_default();
                series.push((e[0].as_u64().unwrap(), value));
            }
        }
    }
    assert_eq!(found, expected_scalars(rows));
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["aux"],
        "only the trainer logged metrics"
    );
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let p = Project::new();
    let pipeline = p.pipeline(COMMANDS_ONLY).display().to_string();
    p.run(&["run", &pipeline]).expect_code(0);
    let dest = p.path().join("out");

    let unknown = export(&p, &["provenance", "7", dest.to_str().unwrap()]).expect_code(2);
    assert!(
        unknown.stderr.contains("run 7 is not in the store"),
        "{}",
        unknown.stderr
    );
    let unknown = export(&p, &["tensorboard", "7", dest.to_str().unwrap()]).expect_code(2);
    assert!(
        unknown.stderr.contains("run 7 is not in the store"),
        "{}",
        unknown.stderr
    );
    assert!(!dest.exists(), "nothing written for an unknown run");

    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    let full = export(&p, &["provenance", "1", dest.to_str().unwrap()]).expect_code(2);
    assert!(full.stderr.contains("is not empty"), "{}", full.stderr);
    let full = export(&p, &["tensorboard", "1", dest.to_str().unwrap()]).expect_code(2);
    assert!(full.stderr.contains("is not empty"), "{}", full.stderr);
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );

    let empty = p.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = export(&p, &["tensorboard", "1", empty.to_str().unwrap()]).expect_code(2);
    assert!(
        none.stderr.contains("recorded no metrics"),
        "{}",
        none.stderr
    );
    export(&p, &["provenance", "1", empty.to_str().unwrap()]).expect_code(0);
    assert!(
        empty.join("ro-crate-metadata.json").is_file(),
        "an empty DEST is used"
    );

    std::fs::remove_file(&pipeline).unwrap();
    let gone = p.path().join("gone");
    let missing = export(&p, &["provenance", "1", gone.to_str().unwrap()]).expect_code(2);
    assert!(
        missing.stderr.contains(&pipeline) && missing.stderr.contains("is gone"),
        "{}",
        missing.stderr
    );
    assert!(!gone.exists());
    let leftovers: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging directories left: {leftovers:?}"
    );
}
