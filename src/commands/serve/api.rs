//! The JSON the page polls: recent runs, one run's executions with their progress and
//! ETA, and one execution with its inputs, outputs and metrics. Artifacts and their
//! lineage: `lineage.rs`.

use super::error::{ApiError, ApiResult};
use super::lineage::{self, InputView};
use super::AppState;
use crate::commands::run_graph::source_of;
use axum::extract::{Path, State};
use axum::Json;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::store::liveness::{hostname, now_ms, pid_alive};
use histodiff_engine::store::{
    ExecStatus, ExecutionId, ExecutionRecord, ProgressRecord, RunId, RunRecord, RunStatus, Store,
};
use serde::Serialize;
use std::collections::BTreeMap;

/// Runs the overview lists (newest first).
const RECENT_RUNS: usize = 30;

/// An execution as the page shows it (no fingerprint: that is `histodiff why`'s).
#[derive(Debug, Serialize)]
pub struct ExecutionView {
    pub id: ExecutionId,
    pub run_id: RunId,
    pub instance: String,
    pub stage: String,
    pub kind: String,
    pub stage_key: String,
    pub status: ExecStatus,
    pub attempt: u32,
    pub host: Option<String>,
    pub device: Option<String>,
    pub started: Option<i64>,
    pub finished: Option<i64>,
    pub duration: Option<i64>,
    pub error: Option<String>,
    pub cached_from: Option<ExecutionId>,
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(e: ExecutionRecord) -> Self {
        ExecutionView {
            id: e.id,
            run_id: e.run_id,
            instance: e.instance,
            stage: e.stage,
            kind: e.kind,
            stage_key: e.stage_key.0,
            status: e.status,
            attempt: e.attempt,
            host: e.host,
            device: e.device,
            started: e.started,
            finished: e.finished,
            duration: e.duration,
            error: e.error,
            cached_from: e.cached_from,
        }
    }
}

/// A progress row with the fraction done and, while running, the time left.
#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
    pub updated: i64,
    pub fraction: f64,
    /// Milliseconds left: elapsed since the start × (total − step) / step.
    pub eta_ms: Option<i64>,
}

impl ProgressView {
    fn new(p: ProgressRecord, execution: &ExecutionRecord, now: i64) -> Self {
        let running = matches!(execution.status, ExecStatus::Running | ExecStatus::Pending);
        let eta_ms = match execution.started {
            Some(started) if running && p.step > 0 && p.step < p.total => {
                Some(eta(now.saturating_sub(started).max(0), p.step, p.total))
            }
            _ => None,
        };
        ProgressView {
            fraction: if p.total == 0 {
                0.0
            } else {
                (p.step as f64 / p.total as f64).min(1.0)
            },
            step: p.step,
            total: p.total,
            message: p.message,
            updated: p.updated,
            eta_ms,
        }
    }
}

/// Time left at a constant rate: `elapsed × (total − step) / step`.
pub fn eta(elapsed_ms: i64, step: u64, total: u64) -> i64 {
    let left = total.saturating_sub(step) as f64;
    (elapsed_ms as f64 * left / step.max(1) as f64).round() as i64
}

#[derive(Debug, Serialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: RunRecord,
    /// For a `running` run: `alive`, `gone` (its orchestrator died on this host) or
    /// `elsewhere` (another host: cannot tell).
    pub orchestrator: Option<&'static str>,
    /// Executions by status.
    pub counts: BTreeMap<&'static str, usize>,
    /// In the list of runs, a running run's executions in progress.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<StageView>,
}

impl RunView {
    fn new(run: RunRecord, executions: &[ExecutionRecord]) -> Self {
        let mut counts = BTreeMap::new();
        for e in executions {
            *counts.entry(e.status.as_str()).or_insert(0) += 1;
        }
        let orchestrator = (run.status == RunStatus::Running).then(|| {
            if run.host != hostname() {
                "elsewhere"
            } else if pid_alive(run.pid) {
                "alive"
            } else {
                "gone"
            }
        });
        RunView {
            run,
            orchestrator,
            counts,
            active: Vec::new(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunsView {
    pub now: i64,
    pub runs: Vec<RunView>,
}

/// `GET /api/runs`: the newest runs with their execution counts.
pub async fn runs(State(app): State<AppState>) -> ApiResult<Json<RunsView>> {
    let store = app.store.as_ref();
    let now = now_ms();
    let mut runs = Vec::new();
    for run in store
        .runs()
        .await
        .map_err(ApiError::store)?
        .into_iter()
        .take(RECENT_RUNS)
    {
        let executions = store
            .executions(Some(run.id))
            .await
            .map_err(ApiError::store)?;
        let mut view = RunView::new(run, &executions);
        if view.run.status == RunStatus::Running {
            let active = executions
                .into_iter()
                .filter(|e| matches!(e.status, ExecStatus::Running | ExecStatus::Pending))
                .collect();
            view.active = stages(store, view.run.id, active, now, false).await?;
        }
        runs.push(view);
    }
    Ok(Json(RunsView { now, runs }))
}

#[derive(Debug, Serialize)]
pub struct StageView {
    #[serde(flatten)]
    pub execution: ExecutionView,
    pub progress: Option<ProgressView>,
    /// The curves of an execution that reports progress (a training stage).
    pub series: Vec<SeriesView>,
}

#[derive(Debug, Serialize)]
pub struct RunDetail {
    pub now: i64,
    pub run: RunView,
    pub executions: Vec<StageView>,
}

fn run_id(text: &str) -> ApiResult<RunId> {
    text.parse()
        .map(RunId)
        .map_err(|_| ApiError::BadRequest("a run is named by its number".into()))
}

/// The run a request names (400 if malformed, 404 if unknown).
pub async fn find_run(store: &dyn Store, text: &str) -> ApiResult<RunRecord> {
    let id = run_id(text)?;
    let runs = store.runs().await.map_err(ApiError::store)?;
    runs.into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))
}

/// Executions of a run with their newest progress reports, and (`with_curves`) the
/// curves of those that report progress.
async fn stages(
    store: &dyn Store,
    run: RunId,
    executions: Vec<ExecutionRecord>,
    now: i64,
    with_curves: bool,
) -> ApiResult<Vec<StageView>> {
    let mut progress: BTreeMap<ExecutionId, ProgressRecord> = store
        .progress(run)
        .await
        .map_err(ApiError::store)?
        .into_iter()
        .map(|p| (p.execution_id, p))
        .collect();
    let mut stages = Vec::with_capacity(executions.len());
    for e in executions {
        let progress = progress
            .remove(&e.id)
            .map(|p| ProgressView::new(p, &e, now));
        let series = match progress {
            Some(_) if with_curves => {
                metric_summary(store.metrics(e.id).await.map_err(ApiError::store)?).0
            }
            _ => Vec::new(),
        };
        stages.push(StageView {
            progress,
            series,
            execution: e.into(),
        });
    }
    Ok(stages)
}

/// `GET /api/runs/{run}`: the run's executions, each with its newest progress report.
pub async fn run(
    State(app): State<AppState>,
    Path(run): Path<String>,
) -> ApiResult<Json<RunDetail>> {
    let store = app.store.as_ref();
    let run = find_run(store, &run).await?;
    let executions = store
        .executions(Some(run.id))
        .await
        .map_err(ApiError::store)?;
    let now = now_ms();
    let view = RunView::new(run, &executions);
    let stages = stages(store, view.run.id, executions, now, true).await?;
    Ok(Json(RunDetail {
        now,
        run: view,
        executions: stages,
    }))
}

#[derive(Debug, Serialize)]
pub struct SeriesView {
    pub name: String,
    pub points: usize,
    pub last: (u64, f64),
}

#[derive(Debug, Serialize)]
pub struct ExecutionDetail {
    pub now: i64,
    pub execution: ExecutionView,
    /// The execution whose edges and metrics are shown (a cache hit's source).
    pub source: ExecutionId,
    pub progress: Option<ProgressView>,
    pub inputs: Vec<InputView>,
    pub more_inputs: usize,
    pub outputs: BTreeMap<String, ArtifactHash>,
    /// Metrics recorded per step (curves), and final values.
    pub series: Vec<SeriesView>,
    pub finals: BTreeMap<String, f64>,
}

/// The execution a request names.
pub async fn find_execution(store: &dyn Store, text: &str) -> ApiResult<ExecutionRecord> {
    let id = text
        .parse()
        .map(ExecutionId)
        .map_err(|_| ApiError::BadRequest("an execution is named by its number".into()))?;
    store
        .execution(id)
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::NotFound(format!("no execution {id}")))
}

/// `GET /api/executions/{id}`: what it read (with producers) and wrote, and its metrics.
pub async fn execution(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ExecutionDetail>> {
    let store = app.store.as_ref();
    let record = find_execution(store, &id).await?;
    let source = source_of(&record);
    let edges = store
        .execution_edges(source)
        .await
        .map_err(ApiError::store)?;
    let (inputs, more_inputs) = lineage::inputs_of(store, &record, edges.inputs).await?;
    let now = now_ms();
    let progress = store
        .progress(record.run_id)
        .await
        .map_err(ApiError::store)?
        .into_iter()
        .find(|p| p.execution_id == record.id)
        .map(|p| ProgressView::new(p, &record, now));
    let (series, finals) = metric_summary(store.metrics(source).await.map_err(ApiError::store)?);
    Ok(Json(ExecutionDetail {
        now,
        execution: record.into(),
        source,
        progress,
        inputs,
        more_inputs,
        outputs: edges.outputs,
        series,
        finals,
    }))
}

/// Stepped metrics grouped into series (with their point counts), and final values.
fn metric_summary(
    metrics: Vec<(String, Option<u64>, f64)>,
) -> (Vec<SeriesView>, BTreeMap<String, f64>) {
    let mut series: BTreeMap<String, SeriesView> = BTreeMap::new();
    let mut finals = BTreeMap::new();
    for (name, step, value) in metrics {
        match step {
            None => {
                finals.insert(name, value);
            }
            Some(step) => {
                let s = series.entry(name.clone()).or_insert(SeriesView {
                    name,
                    points: 0,
                    last: (step, value),
                });
                s.points += 1;
                if step >= s.last.0 {
                    s.last = (step, value);
                }
            }
        }
    }
    let mut series: Vec<SeriesView> = series.into_values().collect();
    // `loss` first: it is the curve people look for.
    series.sort_by_key(|s| s.name != "loss");
    (series, finals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_extrapolates_the_rate_so_far() {
        assert_eq!(eta(10_000, 25, 100), 30_000);
        assert_eq!(eta(10_000, 100, 100), 0);
        assert_eq!(eta(5_000, 0, 10), 50_000, "no division by zero");
    }

    #[test]
    fn metrics_group_into_series_and_finals() {
        let m = vec![
            ("loss".to_string(), Some(1), 2.0),
            ("loss".to_string(), Some(2), 1.5),
            ("accuracy".to_string(), None, 0.9),
        ];
        let (series, finals) = metric_summary(m);
        assert_eq!(series.len(), 1);
        assert_eq!((series[0].points, series[0].last), (2, (2, 1.5)));
        assert_eq!(finals["accuracy"], 0.9);
    }
}
