//! Harness for the training kinds' tests: demo image sets written through the artifact
//! writer, and a StageContext whose interrupt flag is raised when the stage reports a
//! given step (as the worker's signal handler would raise it mid-run).

#![allow(dead_code)]

use histodiff_engine::hash::{ArtifactHash, StageKey};
use histodiff_engine::protocol::{Event, InputArtifact, Job};
use histodiff_engine::registry::ParamType;
use histodiff_engine::stage::{EventSink, Stage, StageContext, StageError};
use histodiff_stages::artifact::ImageSetWriter;
use histodiff_stages::data::demo::{render, CRC_CLASSES};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Serialises the tests of one binary: libtorch's global generator is process-wide, and
/// per-step seeding is only deterministic when one training runs at a time (as in a worker).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes `per_class` demo images of the first 3 CRC classes at `size` px as an image set.
pub fn demo_image_set(dir: &Path, per_class: usize, size: usize, labeled: bool) -> PathBuf {
    let out = dir.join(if labeled { "labeled" } else { "unlabeled" });
    let classes: Vec<String> = CRC_CLASSES[..3].iter().map(|c| c.to_string()).collect();
    let names = if labeled { classes.clone() } else { Vec::new() };
    let mut w = ImageSetWriter::create(&out, names, size, 16).unwrap();
    for (c, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            let img = render(class, c, i, size as u32, 3).unwrap();
            let label = labeled.then_some(c as i64);
            w.push_hwc(img.as_raw(), label, format!("{class}/{i}.png"))
                .unwrap();
        }
    }
    w.finish().unwrap();
    out
}

/// Event sink that raises `flag` once a progress event reports step `stop_at`.
#[derive(Clone)]
struct Sink {
    events: Arc<Mutex<Vec<Event>>>,
    flag: Arc<AtomicBool>,
    stop_at: Option<u64>,
}

impl EventSink for Sink {
    fn emit(&mut self, event: Event) {
        if let (Some(stop), Event::Progress { step, .. }) = (self.stop_at, &event) {
            if *step >= stop {
                self.flag.store(true, Ordering::SeqCst);
            }
        }
        self.events.lock().unwrap().push(event);
    }
}

pub struct Ran {
    pub result: Result<(), StageError>,
    pub events: Vec<Event>,
    pub work_dir: PathBuf,
}

impl Ran {
    pub fn out(&self, name: &str) -> PathBuf {
        self.work_dir.join("out").join(name)
    }
}

/// Runs `stage` in `dir/<name>` (its checkpoints in `dir/<name>/checkpoints`, so a second
/// call with the same name resumes); `stop_at` raises the interrupt after that step.
pub fn run_kind(
    stage: &dyn Stage,
    dir: &Path,
    name: &str,
    params: Value,
    inputs: &[(&str, PathBuf)],
    stop_at: Option<u64>,
) -> Ran {
    let spec = stage.spec();
    let mut given: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
    let mut canonical = Map::new();
    let mut external_paths = BTreeMap::new();
    for p in &spec.params {
        let value = given
            .remove(&p.name)
            .or_else(|| p.default.clone())
            .expect("required parameter");
        if let (ParamType::Path, Value::String(s)) = (&p.ty, &value) {
            external_paths.insert(p.name.clone(), dir.join(s));
        }
        canonical.insert(p.name.clone(), value);
    }
    assert!(
        given.is_empty(),
        "unknown parameters {given:?} for {}",
        spec.name
    );
    let work_dir = dir.join(name);
    std::fs::create_dir_all(work_dir.join("out")).unwrap();
    let job = Job {
        execution_id: 1,
        key: StageKey("0".repeat(64)),
        instance: name.into(),
        kind: spec.name.clone(),
        kind_version: spec.version,
        params: canonical,
        external_paths,
        inputs: inputs
            .iter()
            .map(|(slot, path)| {
                let art = InputArtifact {
                    hash: ArtifactHash("0".repeat(64)),
                    path: path.clone(),
                    producer: "test".into(),
                    coords: BTreeMap::new(),
                };
                (slot.to_string(), vec![art])
            })
            .collect(),
        command: None,
        base_dir: dir.to_path_buf(),
        work_dir: work_dir.clone(),
        checkpoint_dir: work_dir.join("checkpoints"),
        objects_dir: dir.join("objects"),
        device: "cpu".into(),
        threads: 1,
    };
    let flag = Arc::new(AtomicBool::new(false));
    let sink = Sink {
        events: Arc::default(),
        flag: flag.clone(),
        stop_at,
    };
    let mut ctx = StageContext::new(job, flag, Box::new(sink.clone()));
    let result = stage.run(&mut ctx);
    let events = sink.events.lock().unwrap().clone();
    Ran {
        result,
        events,
        work_dir,
    }
}
