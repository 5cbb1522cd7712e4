//! Command-line arguments (clap). Parsing only; each subcommand lives in `commands/`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "histodiff",
    version,
    about = "Synthetic-augmentation experiments for histopathology as a content-hashed DAG"
)]
pub struct Cli {
    /// The store: a directory (SQLite + objects) or postgres://… [default: the pipeline's
    /// `settings.store`, else .histodiff in the current directory]
    #[arg(long, global = true, env = "HISTODIFF_STORE")]
    pub store: Option<String>,
    /// Shared object directory (with a postgres:// store).
    #[arg(long, global = true)]
    pub objects: Option<PathBuf>,
    /// Where stages run: local processes or Slurm jobs [default: settings.executor].
    #[arg(long, global = true, value_enum, env = "HISTODIFF_EXECUTOR")]
    pub executor: Option<ExecutorArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: execute every stage whose result is not cached.
    Run {
        pipeline: PathBuf,
        /// Concurrent stages on this machine [default: settings.jobs].
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// auto | cpu | cuda | cuda:N [default: settings.device].
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        set: SetArgs,
    },
    /// Show what `run` would execute, and why.
    Plan {
        pipeline: PathBuf,
        /// Print a line for cached instances too.
        #[arg(long, short = 'a')]
        all: bool,
        #[command(flatten)]
        set: SetArgs,
    },
    /// Runs and executions recorded in the store.
    Status {
        /// How many recent runs to show.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Why an instance (or every instance of a stage) last executed: what changed.
    Why { target: String },
    /// Where an artifact or an instance's outputs came from.
    Lineage {
        target: String,
        #[arg(long, value_enum, default_value_t = LineageFormat::Tree)]
        format: LineageFormat,
    },
    /// Artifacts of the last run of each instance.
    Ls,
    /// Print an artifact: INSTANCE[.output] or HASH (a prefix is enough).
    Cat { target: String },
    /// Copy an artifact out of the store (INSTANCE[.output] or HASH, to DEST), or export a
    /// run's provenance or metrics.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Export {
        #[command(subcommand)]
        what: Option<ExportWhat>,
        /// INSTANCE[.output] or HASH (a prefix of at least 6 hex digits).
        #[arg(required = true)]
        target: Option<String>,
        #[arg(required = true)]
        dest: Option<PathBuf>,
    },
    /// Write a run's self-contained HTML report (Table 1, figures, timeline, DAG, keys).
    Report {
        /// A pipeline file (its latest run) or a run id.
        target: String,
        /// The HTML file to write.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
    /// Serve a read-only live dashboard of the store over HTTP.
    Serve {
        /// Address to listen on; any other than loopback needs --token.
        #[arg(long, default_value = "127.0.0.1:8050")]
        bind: std::net::SocketAddr,
        /// Bearer token every request must carry (required off loopback).
        #[arg(long, env = "HISTODIFF_SERVE_TOKEN")]
        token: Option<String>,
    },
    /// Re-hash every object; exit 3 if any is damaged or missing.
    Verify,
    /// Delete objects no recorded artifact refers to, and stale scratch directories.
    Gc,
    /// Registered stage kinds and their parameters.
    Kinds,
    /// Run one job (internal: started by the orchestrator).
    #[command(hide = true)]
    Worker { job: PathBuf },
}

/// What `export` writes besides one artifact.
#[derive(Debug, Subcommand)]
pub enum ExportWhat {
    /// A run's provenance: a Workflow Run RO-Crate (Provenance Run Crate profile).
    Provenance {
        /// Run id (`histodiff status` lists them).
        run: i64,
        /// Directory to write the crate into (created; must be empty if it exists).
        dest: PathBuf,
        #[arg(long, value_enum, default_value_t = ProvenanceFormat::RoCrate)]
        format: ProvenanceFormat,
    },
    /// A run's metrics as TensorBoard event files, one run directory per stage instance.
    Tensorboard {
        /// Run id.
        run: i64,
        /// Log directory to write into.
        dest: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvenanceFormat {
    RoCrate,
    ProvJson,
}

/// `--set`, shared by the commands that read a pipeline.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetArgs {
    /// Override a value of the pipeline file, as if written there (repeatable):
    /// `params.image_size=64`, `stages.train.with.steps=10`, `settings.device=cpu`.
    /// VALUE is YAML: `5` an integer, `0.5` a float, `true` a boolean, `[a, b]` a list.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorArg {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LineageFormat {
    Tree,
    Json,
    Dot,
}
