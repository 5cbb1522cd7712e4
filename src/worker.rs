//! `histodiff worker JOB`: runs one execution. A `command` job runs here; any other kind
//! runs in the stages library (libtorch), which only this path loads.

use crate::registry::STAGES_KINDS_JSON;
use histodiff_engine::protocol::exit;
// The ABI this binary speaks; `stages/src/plugin.rs` exports the library's.
use histodiff_engine::protocol::STAGES_ABI_VERSION as ABI_VERSION;
use histodiff_engine::registry::COMMAND_KIND;
use histodiff_engine::worker::{read_job, run_worker};
use std::path::{Path, PathBuf};

/// The file name of the stages library beside the binary (`libhistodiff_stages.so`).
const LIBRARY_STEM: &str = "histodiff_stages";
/// Overrides where the stages library is looked for.
pub const LIBRARY_ENV: &str = "HISTODIFF_STAGES_LIB";

/// Runs the job file and returns the worker exit code. The file is read once here; the
/// stages library gets its text.
pub fn run(job_file: &Path) -> i32 {
    let (job, text) = match read_job(job_file) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("histodiff worker: {message}");
            return exit::FAILED;
        }
    };
    if job.kind == COMMAND_KIND {
        return run_worker(&job, &[]);
    }
    match run_in_library(&text) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("histodiff worker: {message}");
            exit::FAILED
        }
    }
}

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type KindsJsonFn = unsafe extern "C" fn(*mut usize) -> *const u8;
type RunWorkerFn = unsafe extern "C" fn(*const u8, usize) -> i32;

fn run_in_library(job_json: &str) -> Result<i32, String> {
    let path = library_path()?;
    // libloading's message is only "dlopen failed"; the loader's own reason (a missing
    // libtorch, say) is its source.
    let loading = |e: libloading::Error| {
        let why = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        format!(
            "cannot load the stages library {}: {e}{why}",
            path.display()
        )
    };
    // SAFETY: loading runs the library's initialisers (libtorch's); the library is ours,
    // built from this workspace, and checked for its ABI and kinds before any call.
    let library = unsafe { libloading::Library::new(&path) }.map_err(loading)?;
    unsafe {
        let abi: libloading::Symbol<AbiVersionFn> = library
            .get(b"histodiff_stages_abi_version\0")
            .map_err(loading)?;
        if abi() != ABI_VERSION {
            return Err(format!(
                "the stages library {} speaks ABI {}, this binary {ABI_VERSION}; rebuild both \
                 with `cargo build --workspace`",
                path.display(),
                abi()
            ));
        }
        let kinds: libloading::Symbol<KindsJsonFn> = library
            .get(b"histodiff_stages_kinds_json\0")
            .map_err(loading)?;
        let mut len = 0usize;
        let ptr = kinds(&mut len);
        if std::slice::from_raw_parts(ptr, len) != STAGES_KINDS_JSON.as_bytes() {
            return Err(format!(
                "the stages library {} implements other kinds than this binary was built \
                 with; rebuild both with `cargo build --workspace`",
                path.display()
            ));
        }
        let run: libloading::Symbol<RunWorkerFn> = library
            .get(b"histodiff_stages_run_worker\0")
            .map_err(loading)?;
        let code = run(job_json.as_ptr(), job_json.len());
        // Unloading libtorch while its threads may still exist is unsafe; the process
        // exits right after anyway.
        std::mem::forget(library);
        Ok(code)
    }
}

/// `$HISTODIFF_STAGES_LIB`, else the library beside this executable, else in `deps/`
/// beside it (where `cargo test` leaves it without copying it up).
fn library_path() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let name = libloading::library_filename(LIBRARY_STEM);
    let path = dir.join(&name);
    if path.exists() {
        Ok(path)
    } else if dir.join("deps").join(&name).exists() {
        Ok(dir.join("deps").join(&name))
    } else {
        Err(format!(
            "the stages library {} is missing; build it with `cargo build --workspace` (or \
             point {LIBRARY_ENV} at it)",
            path.display()
        ))
    }
}
