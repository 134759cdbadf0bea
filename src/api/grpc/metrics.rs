//! One tower layer that counts every gRPC call in the same request metrics as HTTP: endpoint =
//! the full method path, status = the gRPC code name, latency = from the request until the
//! response's last frame.
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

use axum::http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

use crate::metrics::Metrics;

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
    started: Instant,
    done: bool,
}

impl Recorder {
    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let m = &self.metrics;
        m.requests.with_label_values(&[self.method.as_str(), &format!("{code:?}")]).inc();
        m.request_seconds.with_label_values(&[self.method.as_str()]).observe(self.started.elapsed().as_secs_f64());
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let mut recorder = Recorder {
            metrics: self.metrics.clone(),
            method: req.uri().path().to_string(),
            started: Instant::now(),
            done: false,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            recorder.record_from(resp.headers());
            Ok(resp.map(|inner| MetricsBody { inner, recorder }))
        })
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
