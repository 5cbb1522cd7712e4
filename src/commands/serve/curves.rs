//! Live training curves: one metric of one execution, read from the `metrics` table as
//! the worker writes it, drawn on the server as a labelled SVG (`histodiff_plot`). The
//! page asks again every couple of seconds, so the curve grows while the stage trains.

use super::api::find_execution;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::commands::run_graph::source_of;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use histodiff_plot::{LineChart, Series};
use serde::Deserialize;

/// Points drawn per curve at most; longer series are thinned evenly (the last point kept).
const MAX_DRAWN: usize = 2_000;
const WIDTH: u32 = 520;
const HEIGHT: u32 = 320;

#[derive(Debug, Deserialize)]
pub struct CurveQuery {
    /// The metric; `loss` (or the first metric recorded per step) when absent.
    metric: Option<String>,
}

/// `GET /api/executions/{id}/curve.svg?metric=NAME`.
pub async fn curve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<CurveQuery>,
) -> ApiResult<Response> {
    let store = app.store.as_ref();
    let execution = find_execution(store, &id).await?;
    let source = source_of(&execution);
    let metrics = store.metrics(source).await.map_err(ApiError::store)?;
    let stepped: Vec<(String, u64, f64)> = metrics
        .into_iter()
        .filter_map(|(name, step, value)| step.map(|s| (name, s, value)))
        .collect();
    let name = match query.metric {
        Some(name) => name,
        None if stepped.iter().any(|(n, ..)| n == "loss") => "loss".to_string(),
        None => stepped
            .first()
            .map(|(n, ..)| n.clone())
            .ok_or_else(|| ApiError::NotFound(format!("execution {id} has no curves")))?,
    };
    let points: Vec<(f64, f64)> = stepped
        .iter()
        .filter(|(n, ..)| *n == name)
        .map(|(_, step, value)| (*step as f64, *value))
        .collect();
    if points.is_empty() {
        return Err(ApiError::NotFound(format!(
            "execution {id} has no metric `{name}` per step"
        )));
    }
    let count = points.len();
    let chart = LineChart {
        title: format!("{}: {name}", execution.instance),
        x_label: "step".into(),
        y_label: name.clone(),
        series: vec![Series {
            name,
            points: thin(points, MAX_DRAWN),
            error: None,
        }],
        x_log: false,
    };
    let svg = chart.svg(WIDTH, HEIGHT).map_err(ApiError::store)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml".to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (
                header::HeaderName::from_static("x-points"),
                count.to_string(),
            ),
        ],
        svg,
    )
        .into_response())
}

/// At most `max` points, evenly spaced, always keeping the first and the last.
fn thin(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points;
    }
    let last = points.len() - 1;
    (0..max).map(|i| points[i * last / (max - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends() {
        let points: Vec<(f64, f64)> = (0..10_001).map(|i| (i as f64, 0.0)).collect();
        let thinned = thin(points, 2_000);
        assert_eq!(thinned.len(), 2_000);
        assert_eq!(thinned[0].0, 0.0);
        assert_eq!(thinned[1_999].0, 10_000.0);
        assert_eq!(thin(vec![(1.0, 1.0)], 2_000).len(), 1);
    }
}
