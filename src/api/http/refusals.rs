//! Refusals a client can read: every error answer is JSON, and a request refused before its
//! body was read has that body drained (within bounds) before the answer goes out.
//!
//! Why drain: when the server answers early (413 on a declared length, 401, 403, 429) and closes
//! the connection while the client is still writing, the client's kernel gets a reset and most
//! HTTP clients (Python's urllib and requests among them) report a broken pipe instead of the
//! answer. nginx solves this with a "lingering close"; here the rest of the body is read and
//! dropped, up to [`LINGER_BYTES`] and [`LINGER_TIME`] (and while it keeps coming), then the
//! answer is sent. Nothing is
//! buffered, and clients that asked `Expect: 100-continue` are not drained (they have not sent
//! the body, and stop when the answer arrives).
//!
//! Why rewrite: a few refusals are made by axum itself (a body over `--max-body-bytes` read by an
//! extractor, an unknown method) with a `text/plain` body; the README promises
//! `{"error", "code"}` for every refusal.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::json;

/// Most bytes of an unread body drained before answering.
pub const LINGER_BYTES: usize = 64 << 20;
/// Longest time spent draining one.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Draining stops when the client sends nothing for this long (a stalled body is not waited
/// for: its refusal is sent at once).
pub const LINGER_IDLE: Duration = Duration::from_secs(1);

/// A request body the handler reads through, while the middleware keeps hold of what is left.
#[derive(Clone)]
struct Shared(Arc<Mutex<Option<Body>>>);

impl http_body::Body for Shared {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// Drains what the handler left of the body before its answer is sent.
pub async fn linger(req: Request, next: Next) -> Response {
    let expects_continue =
        req.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    if expects_continue || http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let shared = Shared(Arc::new(Mutex::new(Some(body))));
    let resp = next.run(Request::from_parts(parts, Body::new(shared.clone()))).await;
    let rest = shared.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rest) = rest.filter(|b| !http_body::Body::is_end_stream(b)) {
        drain(rest).await;
    }
    resp
}

async fn drain(mut body: Body) {
    let until = tokio::time::Instant::now() + LINGER_TIME;
    let mut drained = 0usize;
    loop {
        let by = until.min(tokio::time::Instant::now() + LINGER_IDLE);
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(by, body.frame()).await else { break };
        drained += frame.data_ref().map_or(0, |d| d.len());
        if drained > LINGER_BYTES {
            break;
        }
    }
}

/// The stable code for an error status that has no [`CoreError`](crate::error::CoreError)
/// behind it.
fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "body_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        429 => "busy",
        503 => "unavailable",
        504 => "deadline_exceeded",
        _ => "error",
    }
}

/// Rewrites an error answer whose body is not JSON as `{"error", "code"}`.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let mut error = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error = format!("request body is over the limit (--max-body-bytes): {error}");
    }
    let mut out = (status, Json(json!({ "error": error, "code": code_of(status) }))).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name, value.clone());
        }
    }
    *out.extensions_mut() = parts.extensions;
    out
}
