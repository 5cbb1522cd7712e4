//! `export provenance` (a Workflow Run RO-Crate, or W3C PROV-JSON) and `export tensorboard`
//! (event files): a run of the store, written out in formats other tools read.
//!
//! Both first read everything they need from the store ([`RunGraph`], and for provenance
//! its [`Records`](super::run_graph::Records)), then write into a staging directory beside
//! DEST that is renamed onto DEST only once complete, so a failed export leaves nothing
//! behind and never a half-written DEST.

mod crate_files;
mod crate_readme;
mod event_file;
mod prov_json;
mod ro_crate;
mod ro_crate_actions;
mod tensorboard;

use super::run_graph::RunGraph;
use crate::cli::{ExportWhat, ProvenanceFormat};
use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use histodiff_engine::store::{RunId, Store};
use std::path::{Path, PathBuf};

pub async fn export(store: &dyn Store, what: ExportWhat) -> Result<i32, CliError> {
    match what {
        ExportWhat::Provenance { run, dest, format } => {
            check_dest(&dest)?;
            let graph = RunGraph::load(store, RunId(run)).await?;
            let records = graph.records(store).await?;
            let written = match format {
                ProvenanceFormat::RoCrate => {
                    let plan = ro_crate::CratePlan::new(store, &graph, &records)?;
                    staged(&dest, |dir| plan.write(dir))?
                }
                ProvenanceFormat::ProvJson => {
                    let doc = prov_json::document(&graph, &records);
                    staged(&dest, |dir| prov_json::write(&doc, dir))?
                }
            };
            eprintln!("wrote {written} for run {run} to {}", dest.display());
        }
        ExportWhat::Tensorboard { run, dest } => {
            check_dest(&dest)?;
            let graph = RunGraph::load(store, RunId(run)).await?;
            let logs = tensorboard::collect(store, &graph).await?;
            if logs.is_empty() {
                return Err(anyhow::anyhow!(
                    "run {run} recorded no metrics: no execution of it reported any"
                ))
                .code(BAD_INPUT);
            }
            let written = staged(&dest, |dir| tensorboard::write(&logs, &graph, dir))?;
            eprintln!("wrote {written} for run {run} to {}", dest.display());
        }
    }
    Ok(OK)
}

/// DEST may be absent or an empty directory; anything else is refused before any work.
fn check_dest(dest: &Path) -> Result<(), CliError> {
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot inspect {}: {e}", dest.display())).code(BAD_INPUT),
        Ok(meta) if !meta.is_dir() => Err(anyhow::anyhow!(
            "{} exists and is not a directory; name a new or empty directory",
            dest.display()
        ))
        .code(BAD_INPUT),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dest)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dest.display()))
                .code(BAD_INPUT)?;
            if entries.next().is_some() {
                return Err(anyhow::anyhow!(
                    "{} is not empty; refusing to write into it (name a new or empty directory)",
                    dest.display()
                ))
                .code(BAD_INPUT);
            }
            Ok(())
        }
    }
}

/// Runs `write` on a fresh staging directory beside `dest`, then moves it onto `dest`
/// (an empty `dest` is replaced). On failure the staging directory is removed.
/// Returns what `write` says it wrote.
fn staged(
    dest: &Path,
    write: impl FnOnce(&Path) -> Result<String, CliError>,
) -> Result<String, CliError> {
    let staging = staging_dir(dest)?;
    let outcome = write(&staging).and_then(|written| {
        if dest.is_dir() {
            std::fs::remove_dir(dest)
                .map_err(|e| anyhow::anyhow!("cannot replace empty {}: {e}", dest.display()))
                .code(BAD_INPUT)?;
        }
        std::fs::rename(&staging, dest)
            .map_err(|e| anyhow::anyhow!("cannot move the export to {}: {e}", dest.display()))
            .code(BAD_INPUT)?;
        Ok(written)
    });
    if outcome.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    outcome
}

/// `.<name>.partial-<pid>` in DEST's parent directory (created if missing), so that the
/// final rename stays on one file system.
fn staging_dir(dest: &Path) -> Result<PathBuf, CliError> {
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{}: name a directory to write", dest.display()))
        .code(BAD_INPUT)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))
        .code(BAD_INPUT)?;
    let staging = parent.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", staging.display()))
        .code(STORE)?;
    Ok(staging)
}

/// Creates `path`'s parent directories and writes `bytes` to it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))
            .code(STORE)?;
    }
    std::fs::write(path, bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
        .code(STORE)
}

/// Milliseconds since the epoch as ISO 8601 UTC with milliseconds and a `+00:00` offset,
/// the form the Process Run Crate profile checks for (`2024-05-01T12:00:00.000+00:00`).
fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        .unwrap_or_else(|| format!("invalid time {ms} ms"))
}
