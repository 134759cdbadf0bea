//! The one place HTTP status codes are chosen for core errors.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::CoreError;

pub fn status_of(err: &CoreError) -> StatusCode {
    match err {
        CoreError::BadRequest(_) => StatusCode::BAD_REQUEST,
        CoreError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        CoreError::PayloadTooLarge(_) | CoreError::TooManyItems(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CoreError::UndecodableImage(_)
        | CoreError::ImageTooLarge { .. }
        | CoreError::UndecodableVideo(_)
        | CoreError::VideoTooLong(_)
        | CoreError::VideoTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
        CoreError::ModelNotFound(_) | CoreError::NotFound(_) => StatusCode::NOT_FOUND,
        CoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        CoreError::QueueFull(_) | CoreError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        CoreError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        CoreError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        CoreError::Unavailable(_) | CoreError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        CoreError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A request body that could not be read: over `--max-body-bytes` (413) or broken (400).
/// `what` names the body ("request body", "multipart request"), `detail` is axum's text.
pub fn body_error(status: StatusCode, what: &str, detail: String) -> CoreError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        CoreError::PayloadTooLarge(format!("{what} is over the limit (--max-body-bytes): {detail}"))
    } else {
        CoreError::BadRequest(format!("bad {what}: {detail}"))
    }
}

/// The status for a body that `axum::body::to_bytes` could not read: 413 when it hit the
/// length limit, 400 otherwise.
pub fn status_of_body(e: &axum::Error) -> StatusCode {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        source = err.source();
    }
    StatusCode::BAD_REQUEST
}

/// `{"error": message, "code": stable_code}` with the mapped status.
pub struct ApiError(pub CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let mut resp = (status, Json(json!({ "error": self.0.to_string(), "code": self.0.code() }))).into_response();
        if matches!(
            self.0,
            CoreError::QueueFull(_) | CoreError::Busy(_) | CoreError::Unavailable(_) | CoreError::Storage(_)
        ) {
            resp.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_core_error_has_its_status() {
        let cases = [
            (CoreError::BadRequest("x".into()), 400),
            (CoreError::UnsupportedMediaType("text/plain".into()), 415),
            (CoreError::PayloadTooLarge("x".into()), 413),
            (CoreError::TooManyItems("x".into()), 413),
            (CoreError::UndecodableImage("x".into()), 422),
            (CoreError::ImageTooLarge { width: 1, height: 1, pixels: 1, max_pixels: 0 }, 422),
            (CoreError::ModelNotFound("m".into()), 404),
            (CoreError::Forbidden("x".into()), 403),
            (CoreError::QueueFull("m".into()), 429),
            (CoreError::Busy("ffmpeg".into()), 429),
            (CoreError::UndecodableVideo("x".into()), 422),
            (CoreError::VideoTooLong("x".into()), 422),
            (CoreError::VideoTooLarge("x".into()), 422),
            (CoreError::DeadlineExceeded(Duration::from_secs(1)), 504),
            (CoreError::BodyTimeout(Duration::from_secs(1)), 408),
            (CoreError::Unavailable("draining".into()), 503),
            (CoreError::Storage("disk full".into()), 503),
            (CoreError::Inference("boom".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(status_of(&err).as_u16(), status, "{err:?}");
            let resp = ApiError(err.clone()).into_response();
            assert_eq!(resp.status().as_u16(), status);
            let retry = resp.headers().contains_key("retry-after");
            assert_eq!(retry, matches!(status, 429 | 503), "{err:?}");
        }
    }
}
