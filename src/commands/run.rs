//! `histodiff run PIPELINE`: execute what is not cached. Ctrl-C once asks workers to
//! checkpoint and waits for them; twice kills them. A run that executed anything ends by
//! writing its HTML report under the store and printing where it is, with a short
//! summary table.

use super::{load_plan_with, open_plan_store, registry, store_opened};
use crate::exit::{CliError, Coded, BAD_INPUT, INTERRUPTED, OK, STAGE_FAILED, STORE};
use crate::progress::Progress;
use histodiff_engine::executor::local::LocalExecutor;
use histodiff_engine::executor::slurm::{self, SlurmExecutor};
use histodiff_engine::executor::{Cancel, Executor};
use histodiff_engine::plan::{ExecutorKind, Settings};
use histodiff_engine::scheduler::resources::Capacity;
use histodiff_engine::scheduler::{RunSummary, Scheduler};
use histodiff_engine::spec::SettingsOverrides;
use histodiff_engine::store::{self, Store, StoreError, StoreResult};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// `overrides`: the settings flags and `--set`s of the command line.
pub async fn run(pipeline: &Path, overrides: SettingsOverrides) -> Result<i32, CliError> {
    let mut opening = None;
    let plan = Arc::new(load_plan_with(
        pipeline,
        &registry(),
        &overrides,
        &mut |settings, base_dir| opening = open_early(settings, base_dir),
    )?);
    let executor: Arc<dyn Executor> = match plan.settings.executor {
        ExecutorKind::Local => {
            Arc::new(LocalExecutor::new(std::env::current_exe().code(BAD_INPUT)?))
        }
        ExecutorKind::Slurm => Arc::new(
            SlurmExecutor::from_settings(
                std::env::current_exe().code(BAD_INPUT)?,
                &plan.settings.slurm,
            )
            .code(BAD_INPUT)?,
        ),
    };
    let store = match opening {
        Some(opening) => {
            let opened = opening.await.unwrap_or_else(|e| {
                Err(StoreError::Unsupported(format!(
                    "opening the store ended abnormally: {e}"
                )))
            });
            store_opened(opened, &plan.settings.store)?
        }
        None => open_plan_store(&plan).await?,
    };
    let capacity = match plan.settings.executor {
        ExecutorKind::Local => Capacity::detect(plan.settings.jobs, &plan.settings.device),
        ExecutorKind::Slurm => slurm::cluster_capacity(plan.settings.jobs),
    };
    let (report_store, report_plan) = (store.clone(), plan.clone());
    let scheduler = Scheduler {
        plan,
        store,
        executor,
        observer: Arc::new(Progress::new()),
        capacity,
    };
    let (tx, rx) = watch::channel(Cancel::Keep);
    tokio::spawn(watch_ctrl_c(tx));
    let summary = scheduler.run(rx).await.code(STORE)?;
    print_summary(&summary);
    if ran_anything(&summary) {
        super::report::after_run(&*report_store, summary.run_id, report_plan.clone()).await;
    } else {
        eprintln!(
            "nothing ran, so no report was written (`histodiff report {} --html FILE` writes one)",
            summary.run_id
        );
    }
    // The process ends next. Freeing a 10,000-member plan one allocation at a time and
    // closing the store's connections one by one took longer than a third of the run's
    // layers; everything is committed, and SQLite needs no close to find it again.
    std::mem::forget((report_plan, report_store));
    Ok(if summary.interrupted {
        INTERRUPTED
    } else if !summary.failed.is_empty() {
        STAGE_FAILED
    } else {
        OK
    })
}

/// Starts opening an existing SQLite store while the stages are still being expanded
/// (8 of the 200 ms of a no-op run of a 10,000-member sweep). Only a store already on
/// disk: opening it creates nothing, so a plan that then turns out invalid still leaves
/// no store behind. (Opening applies pending migrations, as any command would.)
fn open_early(
    settings: &Settings,
    base_dir: &Path,
) -> Option<tokio::task::JoinHandle<StoreResult<Arc<dyn Store>>>> {
    let objects = settings.objects.as_deref();
    if !store::exists(&settings.store, objects, base_dir) {
        return None;
    }
    let (name, objects) = (settings.store.clone(), objects.map(Path::to_path_buf));
    let base_dir = base_dir.to_path_buf();
    Some(tokio::spawn(async move {
        store::open(&name, objects.as_deref(), &base_dir).await
    }))
}

/// Whether the run has anything new to report. A run that only found its results in the
/// cache writes no report: the page would repeat the runs that made them, and for a
/// 10,000-member sweep it costs more than the no-op run itself.
fn ran_anything(s: &RunSummary) -> bool {
    s.executed > 0 || !s.failed.is_empty() || s.skipped > 0 || s.interrupted
}

/// First Ctrl-C (or SIGTERM): interrupt (workers checkpoint); second: kill.
async fn watch_ctrl_c(tx: watch::Sender<Cancel>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    for level in [Cancel::Interrupt, Cancel::Kill] {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        match level {
            Cancel::Interrupt => {
                eprintln!("interrupting: workers checkpoint and stop (Ctrl-C again to kill them)")
            }
            _ => eprintln!("killing workers"),
        }
        let _ = tx.send(level);
    }
}

fn print_summary(s: &RunSummary) {
    eprintln!(
        "run {}: {} executed, {} cached, {} failed, {} skipped{}",
        s.run_id,
        s.executed,
        s.cached,
        s.failed.len(),
        s.skipped,
        if s.interrupted { " (interrupted)" } else { "" }
    );
    for (instance, error) in &s.failed {
        eprintln!("failed: {instance}");
        for line in error.lines() {
            eprintln!("    {line}");
        }
    }
}
