//! `/v1`: the dfserve JSON API.

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{status_of, ApiError, AppState};
use crate::core::{DetectOptions, ImageResult, Mode};
use crate::error::CoreError;
use crate::video::{self, Aggregation, Sampling, VideoOptions, VideoResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectQuery {
    model: Option<String>,
    threshold: Option<f32>,
    mode: Option<Mode>,
    /// Videos: frames to sample, spread evenly.
    frames: Option<usize>,
    /// Videos: frames to sample per second of video (instead of `frames`).
    fps: Option<f64>,
    /// Videos: max, mean or confident.
    aggregation: Option<String>,
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
}

#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Ok(ImageResult),
    Video(VideoResult),
    Err { status: &'static str, error: String, code: &'static str, http_status: u16 },
}

/// `POST /v1/detect`: a raw image body, or multipart/form-data whose every part is an image.
/// Answers one result per image, in order; in a multipart request a bad image fails only its
/// own entry.
pub async fn detect(
    State(state): State<AppState>,
    query: Result<Query<DetectQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| CoreError::BadRequest(format!("bad query string: {}", e.body_text())))?;
    let opts = DetectOptions { model: q.model, threshold: q.threshold, mode: q.mode.unwrap_or_default() };
    let sampling = match (q.frames, q.fps) {
        (Some(_), Some(_)) => return Err(CoreError::BadRequest("give either frames or fps, not both".into()).into()),
        (Some(0), _) => return Err(CoreError::BadRequest("frames must be at least 1".into()).into()),
        (Some(n), None) => Some(Sampling::Count(n)),
        (None, Some(r)) if r > 0.0 && r.is_finite() => Some(Sampling::Rate(r)),
        (None, Some(r)) => return Err(CoreError::BadRequest(format!("fps must be positive, got {r}")).into()),
        (None, None) => None,
    };
    let aggregation = match q.aggregation.as_deref() {
        None => Aggregation::default(),
        Some(a) => a.parse().map_err(CoreError::BadRequest)?,
    };
    let video_opts = VideoOptions { image: opts.clone(), sampling, aggregation };
    let core = &state.core;
    core.check_options(&opts)?;
    let deadline = core.request_deadline();

    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let images: Vec<(Option<String>, Bytes)> = if content_type.starts_with("multipart/form-data") {
        read_multipart(req, &state).await?
    } else if content_type.is_empty()
        || content_type.starts_with("image/")
        || content_type.starts_with("application/octet-stream")
        // curl's default for --data-binary; the format is sniffed from the bytes anyway.
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        let body = Bytes::from_request(req, &state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                CoreError::PayloadTooLarge(format!(
                    "request body is over the limit (--max-body-bytes): {}",
                    e.body_text()
                ))
            } else {
                CoreError::BadRequest(format!("reading the request body: {}", e.body_text()))
            }
        })?;
        if body.is_empty() {
            return Err(CoreError::BadRequest("empty body: send image bytes or multipart/form-data".into()).into());
        }
        vec![(None, body)]
    } else {
        return Err(CoreError::UnsupportedMediaType(content_type).into());
    };
    let single = images.len() == 1 && !content_type.starts_with("multipart/");

    // Each part is an image or a video, told apart by its bytes.
    let futures = images.into_iter().map(|(filename, bytes)| {
        let (opts, video_opts) = (&opts, &video_opts);
        async move {
            let outcome = if video::is_video(&bytes) {
                video::detect_video(core, bytes, video_opts, deadline).await.map(Outcome::Video)
            } else {
                core.detect(bytes, opts, deadline).await.map(Outcome::Ok)
            };
            (filename, outcome)
        }
    });
    let outcomes = futures::future::join_all(futures).await;

    // A raw single-image request reports its failure as the response status; a multipart
    // request reports each image's failure in its own entry. Overload and deadline errors fail
    // the request either way, so clients back off.
    let mut results = Vec::with_capacity(outcomes.len());
    for (index, (filename, outcome)) in outcomes.into_iter().enumerate() {
        let (kind, outcome) = match outcome {
            Ok(Outcome::Video(v)) => (Some("video"), Outcome::Video(v)),
            Ok(o) => (Some("image"), o),
            Err(e) if single || is_request_level(&e) => return Err(e.into()),
            Err(e) => (
                None,
                Outcome::Err {
                    status: "error",
                    error: e.to_string(),
                    code: e.code(),
                    http_status: status_of(&e).as_u16(),
                },
            ),
        };
        results.push(ItemResult { index, filename, kind, outcome });
    }
    let (name, version) = core.classifier_identity(opts.model.as_deref())?;
    let model = json!({ "name": name, "version": version });
    Ok(Json(json!({ "model": model, "mode": opts.mode, "results": results })))
}

fn is_request_level(e: &CoreError) -> bool {
    matches!(e, CoreError::QueueFull(_) | CoreError::DeadlineExceeded(_) | CoreError::Unavailable(_))
}

async fn read_multipart(req: Request, state: &AppState) -> Result<Vec<(Option<String>, Bytes)>, ApiError> {
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| CoreError::BadRequest(format!("bad multipart request: {}", e.body_text())))?;
    let mut out = Vec::new();
    loop {
        let field = mp.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        let filename = field.file_name().map(str::to_string).or_else(|| field.name().map(str::to_string));
        let bytes = field.bytes().await.map_err(multipart_error)?;
        out.push((filename, bytes));
    }
    if out.is_empty() {
        return Err(CoreError::BadRequest("multipart request has no parts; send one image per part".into()).into());
    }
    Ok(out)
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        CoreError::PayloadTooLarge(format!("request body is over the limit (--max-body-bytes): {}", e.body_text()))
            .into()
    } else {
        CoreError::BadRequest(format!("bad multipart request: {}", e.body_text())).into()
    }
}

/// `GET /v1/models`: every loaded model with its config.
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "device": state.core.device(), "models": state.core.models() }))
}
