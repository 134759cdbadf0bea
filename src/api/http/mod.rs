//! HTTP front end (axum): the dfserve JSON API under `/v1`, health probes and `/metrics`.

mod decisions;
mod error;
mod hashlists;
mod health;
mod json_tensor;
mod refusals;
mod state;
mod ui;
mod v1;
mod v2;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{status_of, ApiError};
pub use state::AppState;
pub use v2::parse_infer_body;

use crate::auth::{KeyId, KeyStore};
use crate::detect::Detector;

/// Front-end settings of the HTTP server.
pub struct HttpOptions {
    pub max_body_bytes: usize,
    /// A request body that delivers nothing for this long fails (400).
    pub body_idle_timeout: std::time::Duration,
    pub keys: Option<Arc<KeyStore>>,
    pub public_metrics: bool,
    pub bodies: crate::api::body::BodyBudget,
    /// Where reviewers' decisions are kept (`/v1/decisions`); off when `None`.
    pub decisions: Option<Arc<crate::decisions::Decisions>>,
    /// The data dir's database, whose write health readiness reports.
    pub storage: Option<Arc<crate::datastore::DataStore>>,
}

pub fn router(detector: Arc<Detector>, opts: HttpOptions) -> Router {
    let max_body_bytes = opts.max_body_bytes;
    let core = detector.core().clone();
    let state = AppState {
        detector,
        core,
        keys: opts.keys,
        public_metrics: opts.public_metrics,
        bodies: opts.bodies,
        decisions: opts.decisions,
        storage: opts.storage,
        max_body_bytes,
    };
    Router::new()
        .route("/v1/detect", post(v1::detect))
        .route("/v1/models", get(v1::models))
        .route("/v1/openapi.json", get(v1::openapi))
        .route("/v1/hashlists", get(hashlists::summaries))
        .route("/v1/hashlists/{list}", get(hashlists::export).post(hashlists::import).delete(hashlists::delete_list))
        .route("/v1/hashlists/{list}/entries/{id}", axum::routing::delete(hashlists::delete_entry))
        .route("/v1/decisions", get(decisions::export).post(decisions::record))
        .route("/v1/decisions/summary", get(decisions::summary))
        .route("/v1/decisions/{sha256}", get(decisions::of_item))
        .route("/v1/whoami", get(decisions::whoami))
        .route("/ui", get(ui::page))
        .route("/ui/", get(ui::page))
        .route("/ui/{asset}", get(ui::file))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/stats", get(v2::all_stats))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(v2::model_metadata))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/config", get(v2::model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(v2::model_config))
        .route("/v2/models/{model}/stats", get(v2::model_stats))
        .route("/v2/models/{model}/versions/{version}/stats", get(v2::model_stats))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(v2::infer))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(opts.body_idle_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), budget_body))
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(refusals::json_errors))
        .layer(middleware::from_fn(refusals::linger))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    let msg = format!("no route for {} {}", req.method(), req.uri().path());
    (StatusCode::NOT_FOUND, Json(json!({ "error": msg, "code": "not_found" }))).into_response()
}

/// With API keys on, every route but the health probes, the API description and the reviewer
/// page's static files (and, if public, /metrics) needs one: the page asks for the key and
/// sends it with every API call it makes.
/// The matching key's id travels back on the response for the access log.
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(keys) = &state.keys else { return next.run(req).await };
    let path = req.uri().path();
    let open =
        matches!(path, "/health/live" | "/health/ready" | "/v2/health/live" | "/v2/health/ready" | "/v1/openapi.json")
            || path == "/ui"
            || path.starts_with("/ui/")
            || (state.public_metrics && path == "/metrics");
    if open {
        return next.run(req).await;
    }
    if let Some(id) = keys.check_headers(req.headers()) {
        let mut req = req;
        // For handlers that check the key's role (hash-list changes need an admin key).
        req.extensions_mut().insert(id);
        let mut resp = next.run(req).await;
        resp.extensions_mut().insert(id);
        return resp;
    }
    let body = json!({
        "error": "missing or invalid API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        "code": "unauthenticated",
    });
    let mut resp = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dfserve\""));
    resp
}

/// Puts the body on the shared budget (`api::body`). A body cut off by the budget or its
/// deadline fails whatever was reading it; the answer is then that refusal (429 or 408), not
/// the reader's generic "bad body".
async fn budget_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let (body, reservation) = state.bodies.wrap(body, |e| Box::new(e));
    let resp = next.run(Request::from_parts(parts, axum::body::Body::new(body))).await;
    match reservation.refusal() {
        Some(err) => error::ApiError(err).into_response(),
        None => resp,
    }
}

/// Counts requests by route template and status, observes their latency, and writes one
/// access-log line per request at info level (target `dfserve::access`): request id, method,
/// route, status, latency, and the key's id (never the key). Refused keys are logged too.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let latency = started.elapsed();
    let m = &state.core.metrics;
    m.requests.with_label_values(&[&endpoint, resp.status().as_str()]).inc();
    m.request_seconds.with_label_values(&[&endpoint]).observe(latency.as_secs_f64());
    let key = resp.extensions().get::<KeyId>().map(|k| k.to_string());
    tracing::info!(
        target: "dfserve::access",
        protocol = "http",
        request_id = %request_id,
        method = %method,
        route = %endpoint,
        status = resp.status().as_u16(),
        latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
        key = key.as_deref().unwrap_or("-"),
    );
    resp
}
