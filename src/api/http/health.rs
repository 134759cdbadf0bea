//! Liveness, readiness and the Prometheus scrape endpoint.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::state::AppState;

/// The process is up and answering.
pub async fn live() -> impl IntoResponse {
    Json(json!({ "status": "live" }))
}

/// Ready once every model has loaded and run a warm-up batch; not ready while draining.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    if state.core.is_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "error": "models loading or server draining", "code": "unavailable" })),
        )
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.core.metrics.render())
}
