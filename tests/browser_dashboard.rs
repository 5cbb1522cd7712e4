//! The live dashboard in a real browser, during a real run: a pipeline whose autoencoder
//! trains for thousands of steps (a `--set` override of the file's step count) runs in the
//! background, `histodiff serve` watches its store, and tests/browser/check_dashboard.py
//! drives headless Chromium through Playwright: the run in progress, a progress bar with
//! an ETA, a loss curve whose point count grows, lineage links both ways, an image-set
//! preview, no console errors. Screenshots land in target/screenshots/.
//!
//! Needs HISTODIFF_PYTHON (scripts/env.sh) with Playwright and a Chromium
//! (HISTODIFF_CHROMIUM, scripts/services/chromium.sh); without them the test FAILS.

mod common;
mod serve_support;

use common::Project;
use serve_support::Server;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Far more steps than the checks need: the run is interrupted once they are done, so
/// a fast machine cannot finish training before the browser has watched it grow.
const STEPS: u64 = 3000;

const PIPELINE: &str = r#"
version: 1
name: dashboard-demo
settings: { device: cpu, jobs: 1 }
stages:
  demo:
    uses: data/demo
    with: { per_class: 2, image_size: 16, seed: 0 }
  crc:
    uses: data/image-folder
    inputs: { folder: demo }
    with: { image_size: 16 }
  autoencoder:
    uses: histodiffusion/train-autoencoder
    inputs: { images: crc }
    with: { preset: tiny, steps: 10, batch_size: 4, perceptual_weight: 0.0, disc_start: 100000, checkpoint_every: 0, metric_every: 5, seed: 0 }
"#;

/// The background `histodiff run`; interrupted (SIGINT, as Ctrl-C) when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Points of the autoencoder's loss curve once it is running, from the run's JSON.
fn training_points(server: &Server, run: &mut Background, log: &Path) -> Option<u64> {
    if let Ok(Some(status)) = run.0.try_wait() {
        panic!(
            "the run ended ({status}) before the browser checks:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let reply = server.get("/api/runs/1");
    if reply.status != 200 {
        return None;
    }
    let run = reply.json();
    let ae = run["executions"]
        .as_array()?
        .iter()
        .find(|e| e["instance"] == "autoencoder" && e["status"] == "running")?;
    let loss = ae["series"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == "loss")?;
    loss["points"].as_u64().filter(|n| *n >= 2)
}

#[test]
fn the_dashboard_follows_a_training_run_in_a_real_browser() {
    let python = std::env::var("HISTODIFF_PYTHON").unwrap_or_else(|_| {
        panic!("HISTODIFF_PYTHON is not set: `source scripts/env.sh` first (scripts/test.sh does)")
    });
    let p = Project::new();
    let file = p.pipeline(PIPELINE);
    let log = p.path().join("run.log");
    let steps = format!("stages.autoencoder.with.steps={STEPS}");
    let child = p
        .command(&["run", file.to_str().unwrap(), "--set", &steps])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("histodiff run starts");
    let mut run = Background(child);
    let db = p.path().join(".histodiff/histodiff.db");
    wait_for("the store", Duration::from_secs(120), || {
        db.exists().then_some(())
    });
    let server = Server::start(p.path(), &["--bind", "127.0.0.1:0"]);
    let points = wait_for("the training curve", Duration::from_secs(600), || {
        training_points(&server, &mut run, &log)
    });
    println!("training is running with {points} loss points; starting the browser");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("target/screenshots");
    let out = Command::new(&python)
        .arg(root.join("tests/browser/check_dashboard.py"))
        .arg(server.url())
        .arg(&shots)
        .output()
        .unwrap_or_else(|e| panic!("{python} does not start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "check_dashboard.py failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shots.join("dashboard.png").is_file(),
        "the screenshot is saved"
    );
}
