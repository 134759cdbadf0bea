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
///
/// Storage is reported, not gated on: while the data dir's database fails writes, readiness
/// stays 200 with `storage.writable: false` and the reason, because detection (the traffic a
/// load balancer routes) reads in-memory indexes only and keeps working; list changes and
/// decisions answer 503 `storage_unavailable` meanwhile. Taking the replica out would stop
/// detection too, for a fault that the next successful write clears.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let storage = match state.storage.clone() {
        Some(db) => tokio::task::spawn_blocking(move || db.state()).await.ok().map(|s| json!(s)),
        None => None,
    };
    // Where this replica's hash-list index stands in PostgreSQL's change feed, if it follows
    // one. Reported, not gated on (see `hashlists::feed`): while the database is unreachable,
    // matching goes on against the index as of its last applied change.
    let hashlists = state.detector.hashlists().and_then(|l| l.feed_state());
    if state.core.is_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready", "storage": storage, "hashlists": hashlists })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "error": "models loading or server draining",
                "code": "unavailable",
                "storage": storage,
                "hashlists": hashlists,
            })),
        )
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.core.metrics.render())
}
