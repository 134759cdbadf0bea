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
        CoreError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        CoreError::UndecodableImage(_) | CoreError::ImageTooLarge { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        CoreError::ModelNotFound(_) => StatusCode::NOT_FOUND,
        CoreError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
        CoreError::DeadlineExceeded(_) => StatusCode::GATEWAY_TIMEOUT,
        CoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CoreError::Inference(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
        let mut resp = (
            status,
            Json(json!({ "error": self.0.to_string(), "code": self.0.code() })),
        )
            .into_response();
        if matches!(self.0, CoreError::QueueFull(_) | CoreError::Unavailable(_)) {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        resp
    }
}
