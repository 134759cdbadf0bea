//! Logs, and OpenTelemetry traces when `--otlp-endpoint` is given.
//!
//! Traces ride on the `tracing` spans the server already makes: one `request` span per HTTP or
//! gRPC call (method, path, `request_id`), and under it `decode`, `detect`, `crop`, `classify`
//! and `queue_wait` (a request's time in a model's queue). A layer turns them into OTLP spans,
//! sent over OTLP/HTTP (protobuf) from the SDK's own batch thread, so exporting never blocks a
//! request; a collector that is down costs dropped spans, not latency.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops the trace exporter when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("dfserve: flushing traces failed: {e}");
            }
        }
    }
}

/// The OTLP/HTTP traces URL for a collector address: `http://collector:4318` gets
/// `/v1/traces`; a URL that already ends with it is kept.
pub fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") {
        e.to_string()
    } else {
        format!("{e}/v1/traces")
    }
}

/// Sets up logging to stderr (JSON or text, filtered by `DFSERVE_LOG`) and, with `otlp`, trace
/// export to that collector.
pub fn init(json: bool, default_filter: &str, otlp: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = || EnvFilter::try_from_env("DFSERVE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json { fmt.json().with_filter(filter()).boxed() } else { fmt.with_filter(filter()).boxed() };
    let Some(endpoint) = otlp else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    let exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(traces_url(endpoint)).build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("dfserve").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    // Spans are kept whatever the log filter says, down to the pipeline's info spans.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("dfserve"))
        .with_filter(EnvFilter::new("info,ort=warn,h2=warn,hyper=warn,tower=warn"));
    tracing_subscriber::registry().with(fmt).with(spans).init();
    Ok(Telemetry { provider: Some(provider) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(super::traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
