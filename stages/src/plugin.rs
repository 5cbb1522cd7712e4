//! The C entry points through which `histodiff worker` runs this crate's kinds.
//!
//! The CLI and the orchestrator do not link this crate: libtorch's start-up (its
//! operator registry, about 0.25 s and 120 MB per process) would otherwise be paid by
//! every `plan`, `status` and no-op `run`. Only a worker for a non-`command` kind loads
//! this crate, built as the shared library `libhistodiff_stages.so` next to the binary,
//! and calls [`histodiff_stages_run_worker`]. Only plain C types cross the boundary: the
//! library has its own copy of std and of the engine, so no Rust value may.

use crate::kinds;
use histodiff_engine::protocol::exit;
use histodiff_engine::protocol::Job;
use histodiff_engine::protocol::STAGES_ABI_VERSION as ABI_VERSION;
use histodiff_engine::worker::run_worker;
use std::io::Write;
use std::panic::catch_unwind;
use std::sync::OnceLock;

#[no_mangle]
pub extern "C" fn histodiff_stages_abi_version() -> u32 {
    ABI_VERSION
}

/// The kind specs this library implements, as the JSON of [`kinds::specs_json`]; the
/// binary refuses a library whose kinds differ from the ones it validated the plan with.
///
/// # Safety
/// `len` must be valid for one write.
#[no_mangle]
pub unsafe extern "C" fn histodiff_stages_kinds_json(len: *mut usize) -> *const u8 {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(kinds::specs_json);
    // SAFETY: the caller passes a valid pointer (see above).
    unsafe { *len = json.len() };
    json.as_ptr()
}

/// Runs the job whose JSON text is `json[..len]` (the binary read `job.json` once and
/// hands its text over) and returns the worker exit code (`protocol::exit`).
///
/// # Safety
/// `json` must point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn histodiff_stages_run_worker(json: *const u8, len: usize) -> i32 {
    // SAFETY: the caller passes `len` readable bytes (see above).
    let bytes = unsafe { std::slice::from_raw_parts(json, len) };
    let job: Job = match serde_json::from_slice(bytes) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("histodiff worker: the job handed to the stages library is not a job: {e}");
            return exit::FAILED;
        }
    };
    // run_worker catches a stage's panic itself; this catches the rest, since unwinding
    // out of an `extern "C"` function aborts.
    let code = catch_unwind(|| run_worker(&job, &kinds::all())).unwrap_or(exit::FAILED);
    // This std's exit-time flush never runs: the binary's std owns the process exit.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    code
}
