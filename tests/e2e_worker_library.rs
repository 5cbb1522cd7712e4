//! The CLI does not load libtorch; a worker loads the stages library only for a libtorch
//! kind. These tests drive the binary: a libtorch kind runs through the library, `plan`
//! and `kinds` work without it, and a missing library is a clear, located failure.

mod common;
use common::Project;

const DEMO: &str = r#"
version: 1
stages:
  demo:
    uses: data/demo
    with: { per_class: 1, image_size: 8, classes: [ADI, TUM] }
"#;

#[test]
fn a_libtorch_kind_runs_through_the_stages_library() {
    let p = Project::new();
    let pipeline = p.pipeline(DEMO);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    let listing = p.run(&["ls"]).expect_code(0).stdout;
    assert!(listing.contains("demo"), "{listing}");
}

/// `histodiff ARGS` with the stages library pointed at a file that does not exist.
fn without_library(p: &Project, args: &[&str]) -> common::Outcome {
    let missing = p.path().join("no-such-library.so");
    let out = p
        .command(args)
        .env("HISTODIFF_STAGES_LIB", &missing)
        .output()
        .unwrap();
    common::Outcome::from(out)
}

#[test]
fn plan_and_kinds_need_no_stages_library() {
    let p = Project::new();
    let pipeline = p.pipeline(DEMO);
    let plan = without_library(&p, &["plan", pipeline.to_str().unwrap()]).expect_code(0);
    assert!(
        plan.stdout.contains("run     demo  (new)"),
        "{}",
        plan.stdout
    );
    let kinds = without_library(&p, &["kinds"]).expect_code(0);
    assert!(kinds.stdout.contains("histodiffusion/train-diffusion"));
}

#[test]
fn a_missing_stages_library_fails_the_stage_and_names_the_file() {
    let p = Project::new();
    let pipeline = p.pipeline(DEMO);
    let out = without_library(&p, &["run", pipeline.to_str().unwrap()]).expect_code(1);
    assert!(
        out.stderr.contains("cannot load the stages library")
            && out.stderr.contains("no-such-library.so"),
        "{}",
        out.stderr
    );
}
