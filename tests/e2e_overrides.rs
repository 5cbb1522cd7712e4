//! End-to-end: `--set` on the command line acts as the same edit of the file (a run with
//! an override leaves the edited file fully cached), and a bad override exits 2 before
//! any store exists.

mod common;
use common::{Project, SWEEP};

#[test]
fn a_set_override_runs_like_the_edited_file_and_a_bad_one_exits_2() {
    let p = Project::new();
    let pipeline = p.pipeline(SWEEP);
    let pipeline = pipeline.to_str().unwrap();

    let bad = p
        .run(&["plan", pipeline, "--set", "stages.brnch.matrix.n=[1]"])
        .expect_code(2);
    assert!(
        bad.stderr
            .contains("--set stages.brnch.matrix.n=[1]: no stage `brnch`; did you mean `branch`?"),
        "{}",
        bad.stderr
    );
    assert!(!p.path().join(".histodiff").exists(), "no store was made");

    let set = "stages.branch.matrix.n=[1, 2, 4]";
    p.run(&["run", pipeline, "--set", set]).expect_code(0);
    assert!(p.executions().contains(&"branch-4".to_string()));
    p.pipeline(&SWEEP.replace("n: [1, 2, 3]", "n: [1, 2, 4]"));
    let plan = p.run(&["plan", pipeline]).expect_code(0).stdout;
    assert!(plan.contains("0 to run, 5 cached"), "{plan}");
}
