//! `histodiff status` (runs and executions) and `histodiff why` (what changed since an
//! instance's previous execution).

use super::rerun::key_change;
use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use histodiff_engine::store::{ExecStatus, ExecutionRecord, Store};
use std::fmt::Write;

pub async fn status(store: &dyn Store, recent: usize) -> Result<i32, CliError> {
    let overview = store.status().await.code(STORE)?;
    let runs = store.runs().await.code(STORE)?;
    let mut out = String::new();
    let counts: Vec<String> = overview
        .executions
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    let _ = writeln!(
        out,
        "{} runs; executions: {}; {} artifacts ({} bytes); {} cached keys",
        overview.runs,
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        },
        overview.artifacts,
        overview.artifact_bytes,
        overview.cached_keys
    );
    for run in runs.iter().take(recent) {
        let _ = writeln!(
            out,
            "\nrun {} {} [{}] {} (pid {} on {})",
            run.id, run.pipeline, run.status, run.file, run.pid, run.host
        );
        for e in store.executions(Some(run.id)).await.code(STORE)? {
            let _ = writeln!(out, "  {}", execution_line(&e));
        }
    }
    if !overview.reservations.is_empty() {
        let _ = writeln!(out, "\nreservations:");
        for r in &overview.reservations {
            let _ = writeln!(
                out,
                "  {} held by pid {} on {}",
                r.stage_key.short(),
                r.holder.pid,
                r.holder.host
            );
        }
    }
    crate::exit::print_out(&out);
    Ok(OK)
}

/// One line per record; a cache hit has no id of its own and names the one it reused.
fn execution_line(e: &ExecutionRecord) -> String {
    if e.status == ExecStatus::Cached {
        return format!(
            "{:<6} {:<11} {} [{}] reused #{}",
            "-",
            e.status.as_str(),
            e.instance,
            e.stage_key.short(),
            e.id
        );
    }
    let duration = e
        .duration
        .map(|ms| format!(" {:.2}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    let attempt = if e.attempt > 1 {
        format!(" attempt {}", e.attempt)
    } else {
        String::new()
    };
    let error = e
        .error
        .as_deref()
        .and_then(|m| m.lines().next())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!(
        "#{:<5} {:<11} {} [{}]{attempt}{duration}{error}",
        e.id,
        e.status.as_str(),
        e.instance,
        e.stage_key.short()
    )
}

/// For each matching instance: its latest execution and what differs from the previous
/// execution with another key.
pub async fn why(store: &dyn Store, target: &str) -> Result<i32, CliError> {
    let all = store.executions(None).await.code(STORE)?;
    let mut instances: Vec<&str> = all
        .iter()
        .filter(|e| matches(e, target))
        .map(|e| e.instance.as_str())
        .collect();
    instances.sort();
    instances.dedup();
    if instances.is_empty() {
        return Err(anyhow::anyhow!(
            "no execution of a stage or instance named `{target}` in the store"
        ))
        .code(BAD_INPUT);
    }
    let mut out = String::new();
    for instance in instances {
        let history: Vec<&ExecutionRecord> =
            all.iter().filter(|e| e.instance == instance).collect();
        let last = history[history.len() - 1];
        let _ = writeln!(out, "{instance}: {}", execution_line(last));
        match key_change(&history, last) {
            None if last.status == ExecStatus::Cached => {
                let _ = writeln!(out, "    cached: same key as an earlier execution");
            }
            None => {
                let _ = writeln!(out, "    first execution of this instance");
            }
            Some(change) => {
                let _ = writeln!(out, "    changed since execution #{}:", change.previous.id);
                match change.changes {
                    Some(changes) => changes.iter().for_each(|c| {
                        let _ = writeln!(out, "      {c}");
                    }),
                    None => {
                        let _ = writeln!(out, "      (fingerprint not recorded)");
                    }
                }
            }
        }
        if let Some(error) = &last.error {
            for line in error.lines() {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
    crate::exit::print_out(&out);
    Ok(OK)
}

fn matches(e: &ExecutionRecord, target: &str) -> bool {
    e.instance == target || e.stage == target
}
