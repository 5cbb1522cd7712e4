//! `serve`: the read-only live dashboard. An axum server over the store (SQLite or
//! PostgreSQL, through the `Store` trait): runs in progress with per-stage progress and
//! ETA, live training curves, the lineage of any artifact both ways, and previews.
//!
//! Safety rules, kept by construction: there is no route that writes; objects are named
//! by hash only (64 hex digits or a unique prefix of a recorded artifact) and a path from
//! a request is never joined onto a directory (a directory member is looked up by its
//! exact path in the directory's manifest); off loopback a token is required, and with a
//! token every request must carry it.

mod api;
mod artifacts;
mod auth;
mod curves;
mod error;
mod image_set;
mod lineage;
mod report;

use super::Global;
use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use histodiff_engine::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
}

pub async fn serve(
    global: &Global,
    bind: SocketAddr,
    token: Option<String>,
) -> Result<i32, CliError> {
    let token = auth::Token::checked(bind, token).code(BAD_INPUT)?;
    let store = global.open().await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))
        .code(BAD_INPUT)?;
    let bound = listener.local_addr().code(BAD_INPUT)?;
    // The first line of stdout, so a caller that asked for port 0 learns the port.
    crate::exit::print_out(&format!("listening on http://{bound}\n"));
    let app = router(AppState { store }, token);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("the dashboard server on {bound} failed: {e}"))
        .code(STORE)?;
    Ok(OK)
}

/// Every route; all of them GET.
fn router(state: AppState, token: Option<auth::Token>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{run}", get(api::run))
        .route("/api/executions/{id}", get(api::execution))
        .route("/api/executions/{id}/curve.svg", get(curves::curve))
        .route("/api/artifacts/{hash}", get(lineage::artifact))
        .route("/artifact/{hash}", get(artifacts::raw))
        .route("/artifact/{hash}/member/{*path}", get(artifacts::member))
        .route("/artifact/{hash}/image/{n}", get(artifacts::image))
        .route("/runs/{run}/report", get(report::html))
        .layer(axum::middleware::from_fn_with_state(token, auth::require))
        .with_state(state)
}

/// The page: a small client that polls the JSON API (`assets/`).
async fn index() -> impl IntoResponse {
    asset(
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    )
}

async fn script() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/dashboard.js"),
    )
}

async fn style() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/dashboard.css"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight, exit 0.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
