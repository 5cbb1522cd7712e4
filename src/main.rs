//! The `histodiff` binary: the CLI of the orchestrator and, as `histodiff worker JOB`,
//! the worker process that runs one stage. Exit codes: docs/cli.md.

mod cli;
mod commands;
mod exit;
mod progress;
mod registry;
mod worker;

use clap::Parser;
use cli::{Cli, Command};
use exit::CliError;

fn main() {
    let args = match Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // The worker runs stage code synchronously; everything else is the async orchestrator.
    if let Command::Worker { job } = &args.command {
        std::process::exit(worker::run(job));
    }
    install_panic_hook();
    init_tracing();
    histodiff_engine::huge_pages::off_while_planning();
    let code = match tokio_main(args) {
        Ok(code) => code,
        Err(err) => {
            exit::report(&err);
            err.code
        }
    };
    exit::without_teardown(code);
}

fn tokio_main(args: Cli) -> Result<i32, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError {
            code: exit::STORE,
            error: e.into(),
        })?;
    runtime.block_on(commands::dispatch(args))
}

/// Logs to stderr, filtered by RUST_LOG (warnings by default).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A bug must still end with a clean message and a documented code, not a backtrace dump.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error{place}: {message}");
        eprintln!("  this is a bug in histodiff; please report it with the command you ran");
    }));
}

// The orchestrator allocates millions of small strings and maps for a 10,000-member
// sweep (instances, fingerprints, store rows). glibc's allocator hands large freed blocks
// back to the kernel and faults them in again (37,000 page faults for a `plan` at
// N = 10,000, against 6,800 with mimalloc), which made `plan` about 1.5x slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
