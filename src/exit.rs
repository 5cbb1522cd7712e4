//! Exit codes (docs/cli.md) and errors that carry one.

use std::fmt;

pub const OK: i32 = 0;
/// A stage failed (independent stages still ran).
pub const STAGE_FAILED: i32 = 1;
/// Bad pipeline file or bad arguments; nothing ran.
pub const BAD_INPUT: i32 = 2;
/// The store is unreachable, damaged, or an object failed verification.
pub const STORE: i32 = 3;
/// Interrupted by Ctrl-C (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;

/// An error and the exit code it maps to.
pub struct CliError {
    pub code: i32,
    pub error: anyhow::Error,
}

impl fmt::Debug for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (exit {})", self.error, self.code)
    }
}

/// Bad arguments unless said otherwise.
impl From<anyhow::Error> for CliError {
    fn from(error: anyhow::Error) -> Self {
        CliError {
            code: BAD_INPUT,
            error,
        }
    }
}

/// Attaches an exit code to a fallible call.
pub trait Coded<T> {
    fn code(self, code: i32) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> Coded<T> for Result<T, E> {
    fn code(self, code: i32) -> Result<T, CliError> {
        self.map_err(|e| CliError {
            code,
            error: e.into(),
        })
    }
}

/// Prints `error: …` and each cause on its own line.
pub fn report(err: &CliError) {
    eprintln!("error: {}", err.error);
    for cause in err.error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Writes a command's output to stdout. A reader that stops early (`| head`) closes the
/// pipe; that ends the output quietly, where `print!` would panic on the write error.
pub fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to stdout: {e}");
        }
    }
}

/// Ends the orchestrator's process with `code` once its output is flushed, skipping the
/// C library's teardown: the shared libraries' destructors (libtorch's among them) and
/// the allocator handing every page back to the kernel. Nothing the orchestrator keeps
/// needs them: the store has committed everything, and the only open files are its own.
/// That teardown was 14 ms at the end of a no-op run of a 10,000-member sweep.
/// Not for the worker, whose stage code may leave work to libtorch's destructors.
pub fn without_teardown(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit(2) ends the process; it touches no memory of this one.
    unsafe { libc::_exit(code) }
}
