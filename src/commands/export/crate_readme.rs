//! The crate's README.md: what the crate holds, for a person opening the directory (the
//! Workflow RO-Crate profile recommends one, `about` the crate).

use super::crate_files::Placement;
use super::iso_time;
use super::ro_crate::CratePlan;
use std::fmt::Write;

pub const NAME: &str = "README.md";

pub fn text(plan: &CratePlan) -> String {
    let graph = plan.graph;
    let run = &graph.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Provenance of run {} of pipeline `{}`\n",
        run.id, run.pipeline
    );
    let _ = writeln!(
        out,
        "Written by histodiff {}. The run started {} and is `{}`. Its pipeline file, \
         `{}`, is this crate's main entity (copied from `{}`).\n",
        env!("CARGO_PKG_VERSION"),
        iso_time(run.started),
        run.status,
        plan.workflow_id(),
        run.file
    );
    let _ = writeln!(
        out,
        "| execution | instance | kind | status | started | seconds |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for e in &graph.executions {
        let r = &e.record;
        let started = r.started.map(iso_time).unwrap_or_default();
        let seconds = r
            .duration
            .map(|d| format!("{:.3}", d as f64 / 1000.0))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {started} | {seconds} |",
            r.id, r.instance, r.kind, r.status
        );
    }
    let copied = plan
        .placements
        .values()
        .filter(|p| matches!(p, Placement::Copied { .. }))
        .count();
    let _ = writeln!(
        out,
        "\nArtifacts are named by their blake3 content hash (`identifier`: `blake3:<hex>`). \
         {copied} of {} are copied under `artifacts/` (small JSON, CSV, Markdown, text or \
         image files); the others (model weights, image sets, anything over 1 MiB) are \
         described in `ro-crate-metadata.json` by hash and size and stay in the store: \
         `histodiff export HASH DEST` copies one out.",
        plan.placements.len()
    );
    out
}
