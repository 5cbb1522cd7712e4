//! The worker runtime behind `histodiff worker JOB`: one execution in its own process.
//!
//! Given the [`Job`] (read once from `job.json` by the binary), it installs
//! SIGINT/SIGTERM/SIGUSR1 handlers that only raise the stage's interrupt flag (the stage
//! checkpoints and returns [`StageError::Interrupted`]), runs the stage with panics caught,
//! ingests each declared output `work_dir/out/<name>` into the object store, writes
//! `result.json` atomically and exits 0, 1 or 75. Events go to stdout as JSON lines. The
//! worker never opens the database: only the orchestrator records.
//!
//! [`run_job`] is the part without a process: the local executor calls it in-process for
//! `command` jobs, with a sink that hands events on as values and the result returned.

use crate::command::CommandStage;
use crate::protocol::{exit, Event, Job, JobResult, OutputArtifact, RESULT_FILE};
use crate::registry::COMMAND_KIND;
use crate::stage::{EventSink, JsonLines, Stage, StageContext, StageError};
use crate::store::objects::ObjectStore;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The flag the signal handler raises; set once per process.
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Runs `job` in this worker process with the stage implementing its kind; returns the
/// exit code.
pub fn run_worker(job: &Job, stages: &[Box<dyn Stage>]) -> i32 {
    let interrupt = install_signal_handlers();
    let command = CommandStage {
        die_with_parent: true,
        env: Vec::new(),
    };
    let events = Box::new(JsonLines(std::io::stdout()));
    let (code, result) = run_job(job, stages, &command, interrupt, events);
    if let Err(e) = write_result(job, &result) {
        eprintln!("histodiff worker: cannot write {RESULT_FILE}: {e}");
        return exit::FAILED;
    }
    code
}

/// Reads `job.json`; the text is returned too, for a worker that hands it on unparsed.
pub fn read_job(job_file: &Path) -> Result<(Job, String), String> {
    let text = std::fs::read_to_string(job_file)
        .map_err(|e| format!("cannot read job file {}: {e}", job_file.display()))?;
    let job = serde_json::from_str(&text)
        .map_err(|e| format!("bad job file {}: {e}", job_file.display()))?;
    Ok((job, text))
}

/// Runs a job in this process: the stage with panics caught, then output ingestion.
/// Events go to `events`. Returns the worker exit code and the result (with the last value
/// of each metric). The local executor calls this directly for `command` jobs, whose
/// program is a process of its own anyway.
pub fn run_job(
    job: &Job,
    stages: &[Box<dyn Stage>],
    command: &CommandStage,
    interrupt: Arc<AtomicBool>,
    events: Box<dyn EventSink>,
) -> (i32, JobResult) {
    let metrics = Arc::new(Mutex::new(BTreeMap::new()));
    let keeper = Box::new(LastMetrics {
        next: events,
        metrics: metrics.clone(),
    });
    let (code, result) = execute(job, stages, command, interrupt, keeper);
    let metrics = metrics.lock().map(|m| m.clone()).unwrap_or_default();
    (code, JobResult { metrics, ..result })
}

/// Runs the stage and ingests its outputs; returns the exit code and the result.
fn execute(
    job: &Job,
    stages: &[Box<dyn Stage>],
    command: &CommandStage,
    interrupt: Arc<AtomicBool>,
    events: Box<dyn EventSink>,
) -> (i32, JobResult) {
    let failed = |error: String| (exit::FAILED, result_with_error(error));
    let stage: &dyn Stage = if job.kind == COMMAND_KIND {
        command
    } else {
        match stages.iter().find(|s| s.spec().name == job.kind) {
            Some(s) => s.as_ref(),
            None => return failed(format!("this binary has no stage kind `{}`", job.kind)),
        }
    };
    let spec = stage.spec();
    if spec.version != job.kind_version {
        return failed(format!(
            "kind `{}` is version {} in this binary but the job was planned with version {}",
            job.kind, spec.version, job.kind_version
        ));
    }
    // Only resumable kinds get a checkpoint directory: a sweep of 10,000 commands must
    // not leave 10,000 empty ones behind.
    let mut dirs = vec![job.work_dir.join("out")];
    if spec.resumable {
        dirs.push(job.checkpoint_dir.clone());
    }
    for dir in dirs {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return failed(format!("cannot create {}: {e}", dir.display()));
        }
    }
    let mut ctx = StageContext::new(job.clone(), interrupt, events);
    match catch_unwind(AssertUnwindSafe(|| stage.run(&mut ctx))) {
        Ok(Ok(())) => {}
        Ok(Err(e @ StageError::Interrupted { .. })) => {
            return (exit::RESUMABLE, result_with_error(e.to_string()));
        }
        Ok(Err(e)) => return failed(format!("{}: {e}", job.instance)),
        Err(panic) => {
            return failed(format!(
                "{}: stage `{}` panicked: {}",
                job.instance,
                job.kind,
                panic_message(panic.as_ref())
            ))
        }
    }
    let names: Vec<String> = match &job.command {
        Some(cmd) if job.kind == COMMAND_KIND => cmd.outs.keys().cloned().collect(),
        _ => spec.outputs.clone(),
    };
    match ingest_outputs(job, &names) {
        Ok(outputs) => (
            exit::OK,
            JobResult {
                outputs,
                metrics: BTreeMap::new(),
                error: None,
            },
        ),
        Err(e) => failed(format!("{}: {e}", job.instance)),
    }
}

fn result_with_error(error: String) -> JobResult {
    JobResult {
        outputs: BTreeMap::new(),
        metrics: BTreeMap::new(),
        error: Some(error),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

/// Puts each `work_dir/out/<name>` into the object store; a missing output is an error.
fn ingest_outputs(job: &Job, names: &[String]) -> Result<BTreeMap<String, OutputArtifact>, String> {
    let objects = ObjectStore::create(&job.objects_dir).map_err(|e| e.to_string())?;
    let mut outputs = BTreeMap::new();
    for name in names {
        let path = job.work_dir.join("out").join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(format!("the stage did not write its output `{name}`"));
        }
        let artifact = objects
            .put(&path)
            .map_err(|e| format!("cannot store output `{name}`: {e}"))?;
        outputs.insert(name.clone(), artifact);
    }
    Ok(outputs)
}

/// Writes `result.json` through a temporary file and a rename, so a reader never sees half.
pub fn write_result(job: &Job, result: &JobResult) -> std::io::Result<()> {
    let path = job.work_dir.join(RESULT_FILE);
    let tmp = job.work_dir.join(format!("{RESULT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(result)?)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Installs the handlers once; every later call returns the same flag.
fn install_signal_handlers() -> Arc<AtomicBool> {
    let flag = INTERRUPT
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        if let Some(flag) = INTERRUPT.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only performs an atomic store on a static.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    flag
}

/// Passes events on, keeping the last value of each metric for the job's result.
struct LastMetrics {
    next: Box<dyn EventSink>,
    metrics: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl EventSink for LastMetrics {
    fn emit(&mut self, event: Event) {
        if let Event::Metric { name, value, .. } = &event {
            if let Ok(mut m) = self.metrics.lock() {
                m.insert(name.clone(), *value);
            }
        }
        self.next.emit(event);
    }
}
