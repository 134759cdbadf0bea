//! `/ui`: the reviewer page (issue: people who decide do not read JSON). Plain HTML, CSS and
//! JavaScript from `ui/`, compiled into the binary, so the page works offline and cannot drift
//! from the server it talks to. No build step, no framework: the page is a few hundred lines
//! and every dependency would be one more thing to vet for a tool that handles abuse material.
//!
//! The assets need no key (they hold no data); the page asks for one and sends it with each
//! API call. The Content-Security-Policy lets the page load and connect to this server only,
//! so nothing on it can come from, or leak to, anywhere else, and media it shows are local
//! `blob:` copies of the reviewer's own files.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::error::CoreError;

const INDEX: &str = include_str!("../../../ui/index.html");
const APP_JS: &str = include_str!("../../../ui/app.js");
const APP_CSS: &str = include_str!("../../../ui/app.css");
const FAVICON: &str = include_str!("../../../ui/favicon.svg");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   media-src 'self' blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The assets change with the binary: revalidate rather than run a stale page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /ui`.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/{asset}`: the page's script, style sheet and icon.
pub async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => asset("text/javascript; charset=utf-8", APP_JS),
        "app.css" => asset("text/css; charset=utf-8", APP_CSS),
        "favicon.svg" => asset("image/svg+xml", FAVICON),
        _ => ApiError(CoreError::NotFound(format!("no file '{name}' in /ui"))).into_response(),
    }
}
