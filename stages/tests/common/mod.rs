//! Test harness for stage kinds: builds a `Job` and a `StageContext` directly (as the
//! worker runtime does), fills parameter defaults from the kind's schema the way the
//! engine does, runs the stage and captures its events.

#![allow(dead_code)]

use histodiff_engine::hash::{ArtifactHash, StageKey};
use histodiff_engine::protocol::{Event, InputArtifact, Job};
use histodiff_engine::registry::ParamType;
use histodiff_engine::stage::{EventSink, Stage, StageContext, StageError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Events emitted by a stage, shared with the test; optionally raises the interrupt flag
/// once a progress event reaches a given step (as a SIGTERM would).
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<Event>>>, Option<(u64, Arc<AtomicBool>)>);

impl EventSink for EventLog {
    fn emit(&mut self, event: Event) {
        if let (Some((at, flag)), Event::Progress { step, .. }) = (&self.1, &event) {
            if step >= at {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        self.0.lock().unwrap().push(event);
    }
}

impl EventLog {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

/// The result of one harness run.
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

/// Runs `stage` in `dir/<name>` with `params` (defaults filled) and `inputs`
/// (slot → paths); path parameters resolve against `base`.
pub fn run_stage(
    stage: &dyn Stage,
    dir: &Path,
    name: &str,
    params: Value,
    inputs: &[(&str, Vec<PathBuf>)],
    base: &Path,
) -> Ran {
    let inputs = inputs
        .iter()
        .map(|(slot, paths)| {
            let arts = paths
                .iter()
                .map(|p| InputArtifact {
                    hash: ArtifactHash("0".repeat(64)),
                    path: p.clone(),
                    producer: "test".into(),
                    coords: BTreeMap::new(),
                })
                .collect();
            (*slot, arts)
        })
        .collect();
    run_in(stage, dir, name, params, inputs, base, None)
}

/// Options of [`run_with_options`].
#[derive(Default)]
pub struct Options {
    /// Shared checkpoint directory (default: one per run).
    pub checkpoint_dir: Option<PathBuf>,
    /// Raise the interrupt flag once progress reaches this step.
    pub interrupt_at: Option<u64>,
}

/// [`run_stage`] with a chosen checkpoint directory and a simulated interrupt.
pub fn run_with_options(
    stage: &dyn Stage,
    dir: &Path,
    name: &str,
    params: Value,
    inputs: &[(&str, Vec<PathBuf>)],
    options: Options,
) -> Ran {
    let inputs = inputs
        .iter()
        .map(|(slot, paths)| {
            let arts = paths
                .iter()
                .map(|p| InputArtifact {
                    hash: ArtifactHash("0".repeat(64)),
                    path: p.clone(),
                    producer: "test".into(),
                    coords: BTreeMap::new(),
                })
                .collect();
            (*slot, arts)
        })
        .collect();
    run_in(stage, dir, name, params, inputs, dir, Some(options))
}

/// [`run_stage`] with fully described input artifacts (producer, coordinates); the
/// pipeline folder is `dir`.
pub fn run_stage_with(
    stage: &dyn Stage,
    dir: &Path,
    name: &str,
    params: Value,
    inputs: Vec<(&str, Vec<InputArtifact>)>,
) -> Ran {
    run_in(stage, dir, name, params, inputs, dir, None)
}

fn run_in(
    stage: &dyn Stage,
    dir: &Path,
    name: &str,
    params: Value,
    inputs: Vec<(&str, Vec<InputArtifact>)>,
    base: &Path,
    options: Option<Options>,
) -> Ran {
    let options = options.unwrap_or_default();
    let spec = stage.spec();
    let mut given: Map<String, Value> = params.as_object().cloned().unwrap_or_default();
    let mut canonical = Map::new();
    let mut external_paths = BTreeMap::new();
    for p in &spec.params {
        let value = given
            .remove(&p.name)
            .or_else(|| p.default.clone())
            .unwrap_or_else(|| panic!("test omits required `{}`", p.name));
        match (&p.ty, &value) {
            (ParamType::Path, Value::String(s)) => {
                external_paths.insert(p.name.clone(), base.join(s));
            }
            (ParamType::List { item }, Value::Array(items)) if **item == ParamType::Path => {
                for (i, s) in items.iter().enumerate() {
                    external_paths
                        .insert(format!("{}.{i}", p.name), base.join(s.as_str().unwrap()));
                }
            }
            _ => {}
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
            .into_iter()
            .map(|(slot, arts)| (slot.to_string(), arts))
            .collect(),
        command: None,
        base_dir: base.to_path_buf(),
        work_dir: work_dir.clone(),
        checkpoint_dir: options
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| work_dir.join("checkpoints")),
        objects_dir: dir.join("objects"),
        device: "cpu".into(),
        threads: 2,
    };
    let flag = Arc::new(AtomicBool::new(false));
    let log = EventLog(
        Arc::default(),
        options.interrupt_at.map(|at| (at, flag.clone())),
    );
    let mut ctx = StageContext::new(job, flag, Box::new(log.clone()));
    let result = stage.run(&mut ctx);
    Ran {
        result,
        events: log.events(),
        work_dir,
    }
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("histodiff-{tag}-"))
        .tempdir()
        .unwrap()
}
