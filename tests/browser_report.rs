//! The HTML report in a real browser: a small pipeline with a training stage and a
//! report/table stage runs, `report RUN --html` writes the page, and
//! `tests/browser/check_report.py` loads it from file:// in headless Chromium (Playwright
//! on Debian's chromium, `scripts/services/chromium.sh`). It checks that Table 1, the
//! figures, the DAG and the timeline render, that the console stays free of errors, that a
//! lineage link brings its producer's section into view, and saves screenshots under
//! `target/screenshots/report/`. Never skipped: without Python or Chromium it fails.

mod common;

use common::Project;
use std::path::PathBuf;
use std::process::Command;

const TINY: &str = include_str!("pipelines/report.yaml");

/// The venv's Python (`scripts/env.sh` exports HISTODIFF_PYTHON), else the checkout's venv.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HISTODIFF_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "browser tests need Python with Playwright: set HISTODIFF_PYTHON (source scripts/env.sh)"
    );
    venv
}

/// `target/screenshots/report/`, beside the test binaries' scratch directory.
fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("screenshots/report")
}

#[test]
fn the_report_renders_in_chromium_and_its_lineage_links_lead_to_producers() {
    let p = Project::new();
    let pipeline = p.pipeline(TINY);
    p.run(&["run", pipeline.to_str().unwrap()]).expect_code(0);
    let html = p.path().join("report.html");
    p.run(&["report", "1", "--html", html.to_str().unwrap()])
        .expect_code(0);
    let shots = screenshot_dir();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_report.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(&html)
        .arg(&shots)
        .output()
        .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_report.py failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("report renders"), "{stdout}");
    for shot in ["report-full.png", "report-dag.png", "report-timeline.png"] {
        let size = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 10_000, "screenshot {shot}: {size} bytes");
    }
}
