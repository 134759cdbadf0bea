//! One tower layer that counts every gRPC call in the same request metrics as HTTP (endpoint =
//! the full method path, status = the gRPC code name, latency = from the request until the
//! response's last frame) and writes its access-log line: request id (the client's
//! `x-request-id`, or a new one, returned in the response headers), method, code, latency and
//! the API key's id.
//!
//! A gRPC call's status is known only at its end: in the trailers of a normal response, or in
//! the headers of a trailers-only one (how tonic answers errors raised before any message).
//! So the response body is wrapped and the call is recorded when its trailers pass, which for a
//! stream means when the stream ends. A body dropped before that (the client went away) counts
//! as `Cancelled`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower_http::request_id::{MakeRequestId, MakeRequestUuid};

use crate::auth::KeyId;
use crate::metrics::Metrics;

/// Where the key check (an interceptor deeper in the stack) leaves the id of the key a call
/// presented, for this layer's access log. Travels in the request's extensions.
#[derive(Clone, Default)]
pub struct KeySlot(pub Arc<OnceLock<KeyId>>);

#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> MetricsLayer {
        MetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// Records one call exactly once: when its status is seen, or as cancelled when dropped first.
struct Recorder {
    metrics: Arc<Metrics>,
    method: String,
    request_id: String,
    key: KeySlot,
    started: Instant,
    done: bool,
}

impl Recorder {
    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (m, latency, status) = (&self.metrics, self.started.elapsed(), format!("{code:?}"));
        m.requests.with_label_values(&[self.method.as_str(), &status]).inc();
        m.request_seconds.with_label_values(&[self.method.as_str()]).observe(latency.as_secs_f64());
        let key = self.key.0.get().map(|k| k.to_string());
        tracing::info!(
            target: "dfserve::access",
            protocol = "grpc",
            request_id = %self.request_id,
            method = %self.method,
            status = %status,
            latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
            key = key.as_deref().unwrap_or("-"),
        );
    }

    /// Records the call if `headers` (trailers, or a trailers-only response's headers) carry its status.
    fn record_from(&mut self, headers: &HeaderMap) {
        if let Some(status) = headers.get("grpc-status") {
            self.record(Code::from_bytes(status.as_bytes()));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for MetricsService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let request_id = match req.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.to_string(),
            _ => MakeRequestUuid
                .make_request_id(&req)
                .and_then(|id| id.header_value().to_str().ok().map(str::to_string))
                .unwrap_or_default(),
        };
        let key = KeySlot::default();
        req.extensions_mut().insert(key.clone());
        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            method: req.uri().path().to_string(),
            request_id,
            key,
            started: Instant::now(),
            done: false,
        };
        // One span per call, the parent of the pipeline's (decode, detect, classify, queue_wait).
        let span = tracing::info_span!("request", method = %recorder.method, request_id = %recorder.request_id);
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut resp = fut.await?;
                if let Ok(v) = HeaderValue::from_str(&recorder.request_id) {
                    resp.headers_mut().insert("x-request-id", v);
                }
                recorder.record_from(resp.headers());
                Ok(resp.map(|inner| MetricsBody { inner, recorder }))
            },
            span,
        ))
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers pass (or it is dropped).
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        recorder: Recorder,
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.recorder.record_from(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => this.recorder.record(Code::Internal),
            Poll::Ready(None) => this.recorder.record(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
