//! OpenTelemetry traces: a server started with --otlp-endpoint sends, to a local OTLP/HTTP
//! receiver this test runs, one `request` span per call carrying the request id, with the
//! pipeline's `decode`, `detect`, `queue_wait` and `classify` spans under it in the same trace.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{body::Bytes, extract::State, routing::post, Router};
use common::{sample, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

type Spans = Arc<Mutex<Vec<Span>>>;

async fn receive(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("the exporter sends OTLP protobuf");
    let mut all = spans.lock().unwrap();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            all.extend(ss.spans);
        }
    }
    ""
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| match a.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    })
}

#[tokio::test]
async fn requests_are_traced_with_their_pipeline_stages() {
    let spans: Spans = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Export every 100 ms instead of every 5 s (the SDK reads this variable); set before the
    // server process starts, in this file's only test.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let s = Server::start(&["--otlp-endpoint", &format!("http://{addr}")]).await;
    let r = s
        .client
        .post(s.url("/v1/detect"))
        .header("x-request-id", "trace-me-1")
        .body(sample("mesonet/df/df00204.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let wanted = ["request", "decode", "detect", "queue_wait", "classify"];
    let deadline = Instant::now() + Duration::from_secs(15);
    let request = loop {
        let found =
            spans.lock().unwrap().iter().find(|s| attribute(s, "request_id").as_deref() == Some("trace-me-1")).cloned();
        let names: Vec<String> = spans.lock().unwrap().iter().map(|s| s.name.clone()).collect();
        if let Some(req) = found.filter(|_| wanted.iter().all(|w| names.iter().any(|n| n == w))) {
            break req;
        }
        assert!(Instant::now() < deadline, "spans received: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(request.name, "request");
    let all = spans.lock().unwrap().clone();
    let in_trace: Vec<&Span> = all.iter().filter(|s| s.trace_id == request.trace_id).collect();
    let child = |name: &str| in_trace.iter().find(|s| s.name == name).copied();
    for name in ["decode", "detect", "classify"] {
        let span = child(name).unwrap_or_else(|| panic!("no {name} span in the request's trace"));
        assert_eq!(span.parent_span_id, request.span_id, "{name} is a child of the request");
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    // Queue waits hang under the model call that queued (detect, or a face's classify).
    let queue = child("queue_wait").expect("a queue_wait span in the request's trace");
    assert!(in_trace.iter().any(|s| s.span_id == queue.parent_span_id && s.name != "request"));
    assert!(attribute(queue, "model").is_some());
}
