//! `GET /runs/{run}/report`: the run's self-contained HTML report (`histodiff report`),
//! rendered on request from the store as it is now.

use super::api::find_run;
use super::error::{ApiError, ApiResult};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

pub async fn html(State(app): State<AppState>, Path(run): Path<String>) -> ApiResult<Response> {
    let store = app.store.as_ref();
    let run = find_run(store, &run).await?;
    let html = crate::commands::report::render_html(store, run.id)
        .await
        .map_err(|e| ApiError::store(format!("report of run {}: {}", run.id, e.error)))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response())
}
