//! Every pipeline file the project ships (`pipelines/*.yaml`, `examples/*.yaml`) runs end
//! to end, as written, at smoke scale: generated CRC-like data stands in for the user's
//! data sets, and `--set` overrides (never edited copies) shrink data, models and step
//! counts. The file's own DAG runs: every stage, every ratio, every variant, the report.
//! A new file in either folder is picked up here without a change to this test.
//!
//! This is the guard that would have caught the 300 % quota outgrowing the sample pool.

mod common;

use common::Project;
use histodiff_engine::plan::Plan;
use histodiff_engine::registry::Registry;
use histodiff_engine::spec::{load, SettingsOverrides};
use std::path::{Path, PathBuf};

/// A stage instance's parameters, defaults filled in.
type Params = serde_json::Map<String, serde_json::Value>;

/// Images per class of the generated stand-in for NCT-CRC-HE-100K.
const LABELED_PER_CLASS: usize = 16;
/// Pixel size every image stage is overridden to.
const IMAGE_SIZE: u32 = 16;

/// The registry `histodiff` itself validates against: built-ins plus every stage kind.
fn registry() -> Registry {
    let mut r = Registry::with_builtins();
    for kind in histodiff_stages::kinds::all() {
        r.insert(kind.spec());
    }
    r
}

/// The pipeline files in `dir`, sorted.
fn pipeline_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Class folders of demo images under `root`, the layout NCT-CRC-HE-100K ships in.
fn write_class_folders(root: &Path, per_class: usize, seed: u64) {
    let classes: Vec<String> = histodiff_stages::data::demo::CRC_CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();
    histodiff_stages::data::demo::write_image_folder(
        root,
        &classes,
        per_class,
        32,
        seed,
        |_, _| {},
    )
    .expect("demo images");
}

/// Stand-ins for every data set a paper pipeline names: the labeled set, the test set and
/// the unlabeled pre-training folders.
struct SmokeData {
    labeled: PathBuf,
    test: PathBuf,
    unlabeled: PathBuf,
}

impl SmokeData {
    fn write(root: &Path) -> Self {
        let data = SmokeData {
            labeled: root.join("crc"),
            test: root.join("crc-test"),
            unlabeled: root.join("pretrain"),
        };
        write_class_folders(&data.labeled, LABELED_PER_CLASS, 1);
        write_class_folders(&data.test, 4, 2);
        write_class_folders(&data.unlabeled, 4, 3);
        data
    }
}

/// `stages.<stage>.with.<key>=<value>`.
fn set(stage: &str, key: &str, value: impl std::fmt::Display) -> String {
    format!("stages.{stage}.with.{key}={value}")
}

/// Smoke-scale parameters of a stage kind: the tiny model preset and a handful of steps.
/// Everything else (methods, ratios, guidance modes, losses) stays as the file wrote it.
fn kind_overrides(kind: &str, params: &Params) -> &'static [(&'static str, &'static str)] {
    let official_guidance =
        params.get("guidance_mode").and_then(|v| v.as_str()) == Some("official");
    const TRAIN: &[(&str, &str)] = &[
        ("preset", "tiny"),
        ("steps", "4"),
        ("batch_size", "4"),
        ("checkpoint_every", "2"),
    ];
    match kind {
        "histodiffusion/train-autoencoder" | "histodiffusion/finetune-decoder" => &[
            ("preset", "tiny"),
            ("steps", "4"),
            ("batch_size", "4"),
            ("checkpoint_every", "2"),
            // LPIPS's VGG weights are the user's: the perceptual term is off at smoke scale.
            ("perceptual_weight", "0.0"),
            ("lpips_weights", "null"),
            // The adversarial term starts within the smoke run, so every loss term runs.
            ("disc_start", "2"),
        ],
        "histodiffusion/train-diffusion"
        | "histodiffusion/train-image-classifier"
        | "histodiffusion/train-latent-classifier" => TRAIN,
        // The official code's guidance indexes its ᾱ table for S = 50 only, so a pool in
        // that mode keeps its 50 steps.
        "histodiffusion/sample" if official_guidance => &[
            ("preset", "tiny"),
            ("per_class", "16"),
            ("batch_size", "48"),
        ],
        "histodiffusion/sample" => &[
            ("preset", "tiny"),
            ("steps", "3"),
            // 300 % of 4 real images per class, with room for the centroid filter.
            ("per_class", "16"),
            ("batch_size", "48"),
        ],
        "histodiffusion/train-classifier" => {
            &[("preset", "tiny"), ("epochs", "1"), ("batch_size", "16")]
        }
        // Four steps reach both lazy regularisers (they run at step 0).
        "stylegan2/train" => &[
            ("preset", "tiny"),
            ("steps", "4"),
            ("batch_size", "4"),
            ("mbstd_group_size", "2"),
            ("checkpoint_every", "2"),
        ],
        "stylegan2/sample" => &[("per_class", "16"), ("batch_size", "48")],
        _ => &[],
    }
}

/// Overrides that point a data stage at the generated stand-ins and shrink its images.
fn data_overrides(stage: &str, kind: &str, params: &Params, data: &SmokeData) -> Vec<String> {
    let folder = |p: &Path| p.display().to_string();
    let given = |k: &str| params.get(k).is_some_and(|v| !v.is_null());
    let reads_files = given("path") || given("paths");
    match kind {
        "data/image-folder" | "data/images" if !reads_files => {
            vec![set(stage, "image_size", IMAGE_SIZE)]
        }
        "data/image-folder" if stage.contains("test") => vec![
            set(stage, "path", folder(&data.test)),
            set(stage, "image_size", IMAGE_SIZE),
        ],
        "data/image-folder" => vec![
            set(stage, "path", folder(&data.labeled)),
            set(stage, "image_size", IMAGE_SIZE),
        ],
        "data/images" => vec![
            set(stage, "paths", format!("[{}]", folder(&data.unlabeled))),
            set(stage, "image_size", IMAGE_SIZE),
        ],
        "data/demo" => vec![
            set(stage, "per_class", LABELED_PER_CLASS),
            set(stage, "image_size", IMAGE_SIZE),
        ],
        // The paper's 5 % of 16 per class would leave no image; a quarter leaves four.
        "data/subset" if stage == "fewshot" => vec![set(stage, "fraction", 0.25)],
        _ => Vec::new(),
    }
}

/// Every `--set` argument that brings `plan` to smoke scale, one stage at a time.
fn smoke_overrides(plan: &Plan, data: &SmokeData) -> Vec<String> {
    let mut sets = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for instance in &plan.instances {
        if !seen.insert(instance.stage.as_str()) {
            continue; // a matrix stage: its `with` is shared by every instance
        }
        let (stage, kind) = (instance.stage.as_str(), instance.kind.as_str());
        sets.extend(data_overrides(stage, kind, &instance.params, data));
        for (key, value) in kind_overrides(kind, &instance.params) {
            sets.push(set(stage, key, value));
        }
    }
    sets
}

/// Runs `file` at smoke scale in a fresh store and checks that every instance executed
/// and that the report came out.
fn runs_end_to_end(file: &Path) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let plan = load(file, &registry(), &SettingsOverrides::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let p = Project::new();
    let data = SmokeData::write(&p.path().join("data"));
    let store = p.path().join("store");
    let mut args: Vec<String> = vec![
        "--store".into(),
        store.display().to_string(),
        "run".into(),
        file.display().to_string(),
        "--device".into(),
        "cpu".into(),
        "--jobs".into(),
        "2".into(),
    ];
    for s in smoke_overrides(&plan, &data) {
        args.push("--set".into());
        args.push(s);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let out = p.run(&args);
    assert_eq!(
        out.code,
        0,
        "{name} at smoke scale failed\n--- command\nhistodiff {}\n--- stderr\n{}",
        args.join(" "),
        out.stderr
    );
    let n = plan.instances.len();
    let done = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("done "))
        .count();
    assert!(
        done == n && out.stderr.contains(", 0 failed, 0 skipped"),
        "{name}: every one of the {n} instances runs, {done} did\n{}",
        out.stderr
    );
    eprintln!("{name}: {n} instances in {:.0?}", started.elapsed());
    for report in plan.instances.iter().filter(|i| i.kind == "report/table") {
        let table = exported_table(&p, &store, &report.name);
        let has_gan = plan.instances.iter().any(|i| i.kind == "stylegan2/train");
        let gan_rows: &[&str] = if has_gan {
            &["StyleGAN2: random 50 %", "StyleGAN2: selective 300 %"]
        } else {
            &[]
        };
        for row in ["baseline", "random 50 %", "selective 300 %"]
            .iter()
            .chain(gan_rows)
        {
            assert!(
                table.contains(row),
                "{name} {}: no `{row}` row\n{table}",
                report.name
            );
        }
    }
    assert!(
        plan.instances.iter().any(|i| i.kind == "report/table"),
        "{name} has no report/table stage"
    );
}

/// `table.md` of the report instance `name`, exported out of the store.
fn exported_table(p: &Project, store: &Path, name: &str) -> String {
    let dest = p.path().join("export").join(name);
    let target = format!("{name}.report");
    let out = p.run(&[
        "--store",
        &store.display().to_string(),
        "export",
        &target,
        &dest.display().to_string(),
    ]);
    assert_eq!(out.code, 0, "export {target}\n{}", out.stderr);
    std::fs::read_to_string(dest.join("table.md"))
        .unwrap_or_else(|e| panic!("{target}: table.md: {e}"))
}

#[test]
fn paper_pipelines_run_at_smoke_scale() {
    let files = pipeline_files("pipelines");
    assert!(files.len() >= 3, "the paper pipelines: {files:?}");
    for file in files {
        runs_end_to_end(&file);
    }
}

#[test]
fn examples_run_at_smoke_scale() {
    let files = pipeline_files("examples");
    assert!(!files.is_empty(), "examples/ holds the quickstart");
    for file in files {
        runs_end_to_end(&file);
    }
}
