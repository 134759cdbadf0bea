//! The request-body budget of `api::body` as a tower layer on the gRPC server. Unary calls
//! draw their message bytes on the shared budget and must arrive within `--body-timeout`.
//! `DetectStream` is left out: a stream lives as long as its client likes and carries any
//! number of messages, each bounded by `--grpc-max-message-bytes`, a few at a time, and ended by
//! `--grpc-stream-idle-timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{Request, Response};

use super::status::to_status;
use crate::api::body::{BodyBudget, BoxError};
use crate::error::CoreError;

const STREAMING: &[&str] = &["/dfserve.v1.Detector/DetectStream"];

#[derive(Clone)]
pub struct BodyBudgetLayer(pub BodyBudget);

impl<S> tower::Layer<S> for BodyBudgetLayer {
    type Service = BodyBudgetService<S>;
    fn layer(&self, inner: S) -> BodyBudgetService<S> {
        BodyBudgetService { inner, budget: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct BodyBudgetService<S> {
    inner: S,
    budget: BodyBudget,
}

fn as_status(err: CoreError) -> BoxError {
    Box::new(to_status(err))
}

impl<S, RB> tower::Service<Request<tonic::body::Body>> for BodyBudgetService<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        if STREAMING.contains(&req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let (parts, body) = req.into_parts();
        let (body, reservation) = self.budget.wrap(body, as_status);
        let fut = self.inner.call(Request::from_parts(parts, tonic::body::Body::new(body)));
        Box::pin(async move {
            let resp = fut.await;
            // The message and its decoded form are dropped once the handler has answered.
            drop(reservation);
            resp
        })
    }
}
