//! `/v1`: the dfserve JSON API. Wire translation only: the query string becomes
//! [`DetectParams`], each uploaded file goes to the detect layer, and its [`Detection`] or error
//! is rendered as JSON.

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{body_error, status_of, ApiError};
use super::state::AppState;
use crate::detect::audit::{self, AuditRecord};
use crate::detect::{DetectParams, Detection};
use crate::error::CoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectQuery {
    model: Option<String>,
    threshold: Option<f32>,
    mode: Option<String>,
    /// Videos: frames to sample, spread evenly.
    frames: Option<usize>,
    /// Videos: frames to sample per second of video (instead of `frames`).
    fps: Option<f64>,
    /// Videos: max, mean or confident.
    aggregation: Option<String>,
    /// Attach an audit record to each result.
    #[serde(default)]
    audit: bool,
}

impl From<DetectQuery> for DetectParams {
    fn from(q: DetectQuery) -> DetectParams {
        DetectParams {
            model: q.model,
            threshold: q.threshold,
            mode: q.mode,
            frames: q.frames,
            fps: q.fps,
            aggregation: q.aggregation,
            audit: q.audit,
        }
    }
}

#[derive(Serialize)]
struct ItemResult {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    /// "image" or "video"; absent for errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(flatten)]
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<AuditRecord>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Ok(Detection),
    Err { status: &'static str, error: String, code: &'static str, http_status: u16 },
}

/// `POST /v1/detect`: a raw image or video body, or multipart/form-data whose every part is
/// one. Answers one result per file, in order; in a multipart request a bad file fails only its
/// own entry.
pub async fn detect(
    State(state): State<AppState>,
    query: Result<Query<DetectQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| CoreError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let detector = &state.detector;
    let opts = detector.options(&q.into())?;
    let deadline = detector.core().request_deadline();

    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let multipart = content_type.starts_with("multipart/form-data");
    let files: Vec<(Option<String>, Bytes)> = if multipart {
        read_multipart(req, &state).await?
    } else if content_type.is_empty()
        || content_type.starts_with("image/")
        || content_type.starts_with("video/")
        || content_type.starts_with("application/octet-stream")
        // curl's default for --data-binary; the format is sniffed from the bytes anyway.
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let body = Bytes::from_request(req, &state)
            .await
            .map_err(|e| body_error(e.status(), "request body", e.body_text()))?;
        if body.is_empty() {
            return Err(
                CoreError::BadRequest("empty body: send image or video bytes, or multipart/form-data".into()).into()
            );
        }
        vec![(None, body)]
    } else {
        return Err(CoreError::UnsupportedMediaType(content_type).into());
    };

    let futures = files.into_iter().map(|(filename, bytes)| {
        let opts = &opts;
        async move {
            let audit = opts.audit.then(|| audit::record(&bytes, opts, detector.core()));
            (filename, audit, detector.detect(bytes, opts, deadline).await)
        }
    });
    let outcomes = futures::future::join_all(futures).await;

    // A raw single-file request reports its failure as the response status; a multipart
    // request reports each file's failure in its own entry. Overload and deadline errors fail
    // the request either way, so clients back off.
    let mut results = Vec::with_capacity(outcomes.len());
    for (index, (filename, audit, outcome)) in outcomes.into_iter().enumerate() {
        let (kind, outcome) = match outcome {
            Ok(d) => (Some(d.kind()), Outcome::Ok(d)),
            Err(e) if !multipart || e.fails_whole_request() => return Err(e.into()),
            Err(e) => {
                let http_status = status_of(&e).as_u16();
                (None, Outcome::Err { status: "error", error: e.to_string(), code: e.code(), http_status })
            }
        };
        results.push(ItemResult { index, filename, kind, outcome, audit });
    }
    let (name, version) = opts.model();
    let model = json!({ "name": name, "version": version });
    Ok(Json(json!({ "model": model, "mode": opts.image.mode, "results": results })))
}

async fn read_multipart(req: Request, state: &AppState) -> Result<Vec<(Option<String>, Bytes)>, ApiError> {
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| CoreError::BadRequest(format!("bad multipart request: {}", e.body_text())))?;
    let mut out = Vec::new();
    let part_error =
        |e: axum::extract::multipart::MultipartError| body_error(e.status(), "multipart request", e.body_text());
    while let Some(field) = mp.next_field().await.map_err(part_error)? {
        // Refused at the first part over the cap, before its bytes are read.
        state.core.check_items(out.len() + 1, "files or more")?;
        let filename = field.file_name().map(str::to_string).or_else(|| field.name().map(str::to_string));
        let bytes = field.bytes().await.map_err(part_error)?;
        out.push((filename, bytes));
    }
    if out.is_empty() {
        return Err(CoreError::BadRequest("multipart request has no parts; send one file per part".into()).into());
    }
    Ok(out)
}

/// `GET /v1/models`: every loaded model with its config.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let classifiers: Vec<Value> = state
        .core
        .classifiers()
        .map(|c| {
            json!({
                "name": c.name(),
                "version": c.version(),
                "kind": c.kind,
                "members": c.members().iter().map(|m| m.name().to_string()).collect::<Vec<_>>(),
                "encoder": c.members().iter().find_map(|m| m.probe_config().map(|p| p.encoder.clone())),
                "provenance": c.members().iter().find_map(|m| m.probe_config().and_then(|p| p.provenance.clone())),
                "threshold": c.threshold,
                "calibration": c.calibration(),
                "verdict": c.bands,
                "default": c.name() == state.core.default_model(),
            })
        })
        .collect();
    Json(json!({ "device": state.core.device(), "models": state.core.models(), "classifiers": classifiers }))
}

/// The OpenAPI 3.1 description of `/v1` (generated by `openapi/make_v1.py`; tests check real
/// responses against it).
const OPENAPI: &str = include_str!("../../../openapi/v1.json");

/// `GET /v1/openapi.json`.
pub async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}
