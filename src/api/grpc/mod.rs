//! gRPC front end (tonic): KServe v2 `inference.GRPCInferenceService`, dfserve's own
//! `dfserve.v1.Detector`, the standard `grpc.health.v1` health service and server reflection,
//! all on one port.

mod bodies;
pub mod codec;
mod dfserve;
mod kserve;
mod metrics;
pub mod pb;
mod status;

pub use kserve::infer_request_from_proto;
pub use status::{status_of, to_status, ERROR_CODE_KEY};

use std::future::Future;
use std::sync::Arc;

use tonic::Status;

use crate::auth::KeyStore;
use crate::detect::Detector;

/// Rejects calls without a valid API key (when keys are on) with UNAUTHENTICATED, and leaves the
/// key's id for the access log.
#[derive(Clone)]
struct RequireKey(Option<Arc<KeyStore>>);

impl tonic::service::Interceptor for RequireKey {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let Some(keys) = &self.0 else { return Ok(req) };
        let presented = keys.check_presented(
            req.metadata().get("authorization").map(|v| v.as_bytes()),
            req.metadata().get("x-api-key").map(|v| v.as_bytes()),
        );
        match presented {
            Some(id) => {
                if let Some(slot) = req.extensions().get::<metrics::KeySlot>() {
                    let _ = slot.0.set(id);
                }
                Ok(req)
            }
            None => Err(Status::unauthenticated(
                "missing or invalid API key: send `authorization: Bearer <key>` or `x-api-key: <key>` metadata",
            )),
        }
    }
}

/// Serves every gRPC service on `listener` until `shutdown` resolves. With `keys`, every
/// service but `grpc.health.v1.Health` needs an API key.
/// Limits of the gRPC listener.
pub struct GrpcLimits {
    pub max_message_bytes: usize,
    /// Calls open at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// A `DetectStream` with no message for this long is ended.
    pub stream_idle_timeout: std::time::Duration,
    /// Shared with HTTP: bytes of request bodies held at once, and the time to receive one.
    pub bodies: crate::api::body::BodyBudget,
}

pub async fn serve(
    detector: Arc<Detector>,
    listener: tokio::net::TcpListener,
    limits: GrpcLimits,
    keys: Option<Arc<KeyStore>>,
    tls: Option<&(Vec<u8>, Vec<u8>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use pb::dfserve_v1::detector_server::DetectorServer;
    use pb::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
    use tonic::service::interceptor::InterceptedService;

    let core = detector.core().clone();
    let (health, health_service) = tonic_health::server::health_reporter();
    // Health follows readiness: SERVING once warmed up, NOT_SERVING while loading or draining.
    let mut readiness = core.readiness();
    tokio::spawn(async move {
        loop {
            let ready = *readiness.borrow_and_update();
            let status =
                if ready { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
            for service in ["", "inference.GRPCInferenceService", "dfserve.v1.Detector"] {
                health.set_service_status(service, status).await;
            }
            if readiness.changed().await.is_err() {
                break;
            }
        }
    });
    // Reflection v1 for current tools (grpcurl), v1alpha for older clients.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let auth = RequireKey(keys);
    let kserve = GrpcInferenceServiceServer::new(kserve::KServe { core: core.clone(), detector: detector.clone() })
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let kserve = InterceptedService::new(kserve, auth.clone());
    let detector =
        DetectorServer::new(dfserve::DetectorApi { detector, stream_idle_timeout: limits.stream_idle_timeout })
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes);
    let detector = InterceptedService::new(detector, auth.clone());
    let reflection_v1 = InterceptedService::new(reflection_v1, auth.clone());
    let reflection_v1alpha = InterceptedService::new(reflection_v1alpha, auth);
    // Per connection: a bounded number of calls, and pings so dead peers are noticed.
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_concurrent_streams.max(1)))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    if let Some((cert, key)) = tls {
        let identity = tonic::transport::Identity::from_pem(cert, key);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        // Outermost, so it sees the status the client gets.
        .layer(metrics::MetricsLayer::new(core.metrics.clone()))
        .layer(tower::util::MapResponseLayer::new(too_large_is_resource_exhausted))
        .layer(bodies::BodyBudgetLayer(limits.bodies.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(kserve)
        .add_service(detector)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY small responses wait on delayed ACKs (~40 ms per unary call).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

/// tonic answers a request message over `--grpc-max-message-bytes` with OUT_OF_RANGE; gRPC's
/// own convention (and dfserve's contract) for "message too large" is RESOURCE_EXHAUSTED.
/// Rewrites exactly that case, which tonic reports as a trailers-only response.
fn too_large_is_resource_exhausted<B>(mut resp: axum::http::Response<B>) -> axum::http::Response<B> {
    let h = resp.headers_mut();
    let too_large = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("message length too large") || m.contains("message%20length%20too%20large"));
    if too_large {
        h.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
    }
    resp
}
