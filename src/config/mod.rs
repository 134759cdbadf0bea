//! Command-line settings. Every flag can also be set through the environment variable named
//! in its help (`DFSERVE_*`), which is how container deployments configure dfserve.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::hashlists::cli::{HashesArgs, HashesCommand};
pub use crate::healthcheck::HealthArgs;
pub use crate::store::{StoreArgs, StoreCommand};
use clap::{Args, Parser, Subcommand};

use crate::core::Mode;

mod engine;
mod tools;
pub use engine::{CropArgs, EngineArgs, RuntimeArgs};
pub use tools::{CalibrateArgs, EmbedArgs, HashArgs, OutputFormat, ScoreArgs};

#[derive(Debug, Parser)]
#[command(name = "dfserve", version, about = "Deepfake (face-manipulation) detection server on ONNX Runtime")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Check and list the model configs (and files) in the model directory.
    Models(RuntimeArgs),
    /// Ask the local server whether it is ready (exit 0) or not (container health checks).
    Health(HealthArgs),
    /// Score files and folders of images in-process (or against a server), optionally with
    /// labels for evaluation.
    Score(ScoreArgs),
    /// Write each face's embedding from an encoder model (JSON Lines), from the crops scoring
    /// uses: what a probe head is trained on (scripts/train_probe.py).
    Embed(EmbedArgs),
    /// Fit a calibration (Platt scaling) from the rows of an earlier `dfserve score` run with
    /// labels, report it, and with --write store it in the model's config.
    Calibrate(CalibrateArgs),
    /// Print each file's hashes as JSON Lines: PDQ and its quality (images), MD5 and SHA-256.
    Hash(HashArgs),
    /// Manage the known-content hash lists in --data-dir directly (with the server stopped;
    /// while it runs, use /v1/hashlists).
    Hashes(HashesArgs),
    /// The PostgreSQL store of a fleet (--database-url): bring its schema up to date, or copy a
    /// data dir's hash lists into it.
    Store(StoreArgs),
    /// List the execution providers (CPU, CUDA, TensorRT): whether the ONNX Runtime library and
    /// this build have each, and whether a model loads on it (one JSON line each).
    Providers(ProvidersArgs),
    /// Measure raw ONNX Runtime throughput of one model (no server, no image work).
    BenchModel(BenchModelArgs),
    /// Time the whole image pipeline in-process, one image at a time (no server, no queue):
    /// the latency floor a server's concurrency-1 latency is compared against.
    BenchPipeline(BenchPipelineArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on.
    #[arg(long, env = "DFSERVE_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// HTTP port (0 picks a free one; the chosen address is logged).
    #[arg(long, env = "DFSERVE_HTTP_PORT", default_value_t = 8000)]
    pub http_port: u16,
    /// gRPC port (KServe v2 GRPCInferenceService, dfserve.v1.Detector, health, reflection).
    #[arg(long, env = "DFSERVE_GRPC_PORT", default_value_t = 8001)]
    pub grpc_port: u16,
    /// Largest gRPC message accepted or sent, in bytes (RESOURCE_EXHAUSTED above).
    #[arg(long, env = "DFSERVE_GRPC_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub grpc_max_message_bytes: usize,
    /// Largest accepted request body, in bytes (413 above).
    #[arg(long, env = "DFSERVE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// A client must send a request's headers within this time of connecting or of its
    /// previous request, or the connection is closed (slow-header clients; this also ends idle
    /// keep-alive connections).
    #[arg(long, env = "DFSERVE_HTTP_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// A request body that delivers no data for this long fails with 400 (stalled uploads).
    #[arg(long, env = "DFSERVE_HTTP_BODY_IDLE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_body_idle_timeout: Duration,
    /// Bytes of request bodies (HTTP bodies, unary gRPC messages) held in memory at once,
    /// across all clients; a body that would go over is refused with 429 `busy`. Never below
    /// one body of --max-body-bytes / --grpc-max-message-bytes.
    #[arg(long, env = "DFSERVE_MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,
    /// A request body (or unary gRPC message) still arriving after this long is refused (408 /
    /// DEADLINE_EXCEEDED): a total bound, where --http-body-idle-timeout bounds stalls.
    #[arg(long, env = "DFSERVE_BODY_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,
    /// Where state that must last lives: the hash lists and reviewers' decisions (`dfserve.redb`).
    #[arg(long, env = "DFSERVE_DATA_DIR", default_value_os_t = crate::layout::data_dir())]
    pub data_dir: PathBuf,
    /// PostgreSQL for the hash lists and decisions, shared by every replica
    /// (`postgres://user@host/db?sslmode=verify-full&sslrootcert=ca.pem`, or libpq's key=value
    /// form). Each replica keeps its in-memory index current from the database's change log.
    /// Without it, both live in --data-dir (one server).
    #[arg(long, env = "DFSERVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// With --database-url: how long the hash lists' change log keeps a change (`24h`, `7d`;
    /// `never` keeps all). A replica cut off for longer reloads every list when it is back.
    #[arg(long, env = "DFSERVE_HASHLIST_LOG_RETENTION", default_value = "24h")]
    pub hashlist_log_retention: Retention,
    /// Memory that hash-list imports in progress may take at once; an import takes about 7x
    /// its body (16x into PostgreSQL), and one beyond the budget is refused with 429 `busy`
    /// (one import always runs).
    #[arg(long, env = "DFSERVE_MAX_IMPORT_MEMORY_BYTES", default_value_t = 768 * 1024 * 1024)]
    pub max_import_memory_bytes: usize,
    /// Bytes of decisions one API key (reviewer) may have stored; past it, its new decisions
    /// are refused with 403 (replacing its own with smaller ones still works).
    #[arg(long, env = "DFSERVE_MAX_DECISION_BYTES_PER_KEY", default_value_t = 128 * 1024 * 1024)]
    pub max_decision_bytes_per_key: u64,
    /// A PDQ hash matches a list entry at this Hamming distance or less (of 256 bits; Meta's
    /// suggested threshold is 31).
    #[arg(long, env = "DFSERVE_PDQ_MAX_DISTANCE", default_value_t = 31)]
    pub pdq_max_distance: u32,
    /// Uploads whose PDQ quality is below this are not matched by PDQ (flat or tiny images give
    /// hashes that match too much; Meta's default is 50).
    #[arg(long, env = "DFSERVE_PDQ_MIN_QUALITY", default_value_t = 50)]
    pub pdq_min_quality: u8,
    /// An image also matches a PDQ entry through its rotations by 90°, 180° and 270° and its
    /// mirror images (the eight dihedral variants, from one DCT), so a flipped or turned
    /// re-upload is found; `false` matches the image only as uploaded.
    #[arg(long, env = "DFSERVE_PDQ_DIHEDRAL", default_value_t = true, action = clap::ArgAction::Set)]
    pub pdq_dihedral: bool,
    /// A listed video matches when this percent of the upload's vPDQ frame hashes are near one
    /// of its frames (ThreatExchange's default: 80).
    #[arg(long, env = "DFSERVE_VPDQ_QUERY_MATCH", default_value_t = 80.0)]
    pub vpdq_query_match: f32,
    /// ... and this percent of its frames are near one of the upload's (default 0: clips match).
    #[arg(long, env = "DFSERVE_VPDQ_LIST_MATCH", default_value_t = 0.0)]
    pub vpdq_list_match: f32,
    /// PEM file of C2PA trust anchors (root certificates). Without it, an intact C2PA
    /// signature reports `valid`, never `trusted`.
    #[arg(long, env = "DFSERVE_C2PA_TRUST_ANCHORS")]
    pub c2pa_trust_anchors: Option<PathBuf>,
    /// Send OpenTelemetry traces to this OTLP/HTTP collector (e.g. http://otel-collector:4318).
    #[arg(long, env = "DFSERVE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log format.
    #[arg(long, env = "DFSERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Require an API key from this file (one per line; re-read on SIGHUP) on every endpoint
    /// except the health probes.
    #[arg(long, env = "DFSERVE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT, keep listening this long answering 503 (readiness fails, so load
    /// balancers move traffic away) before closing the listeners; in-flight requests finish
    /// either way.
    #[arg(long, env = "DFSERVE_SHUTDOWN_GRACE", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// After the grace period the listeners close and in-flight requests get this long to
    /// finish; whatever is still running then is cancelled (and logged) and the process exits.
    #[arg(long, env = "DFSERVE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
    /// gRPC streams (calls) open at once on one HTTP/2 connection.
    #[arg(long, env = "DFSERVE_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 64)]
    pub grpc_max_concurrent_streams: u32,
    /// A `DetectStream` whose client sends nothing for this long is ended (DEADLINE_EXCEEDED).
    #[arg(long, env = "DFSERVE_GRPC_STREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub grpc_stream_idle_timeout: Duration,
    /// Serve HTTPS and gRPC over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "DFSERVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "DFSERVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --api-key-file, still serve /metrics without a key (for Prometheus scrapers).
    #[arg(long, env = "DFSERVE_PUBLIC_METRICS", default_value_t = false)]
    pub public_metrics: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchModelArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Model to run.
    #[arg(long, default_value = "meso4_df")]
    pub model: String,
    /// Batch sizes to try.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16,32")]
    pub batch_sizes: Vec<usize>,
    /// Seconds per batch size.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Sessions running side by side, each on its own thread with --intra-threads threads (the
    /// server's --instances layout); images/s is their total.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Print one JSON object per batch size instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ProvidersArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Model loaded on each provider to prove it works (its libraries load, a device answers).
    #[arg(long, default_value = "meso4_df")]
    pub model: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchPipelineArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub crop: CropArgs,
    /// Classifier.
    #[arg(long, default_value = "meso4_df")]
    pub model: String,
    /// Face detector (faces mode).
    #[arg(long, default_value = "ultraface_rfb320")]
    pub detector: String,
    /// `faces` detects and crops first; `whole` scores each image as one face crop.
    #[arg(long, value_enum, default_value_t = Mode::Faces)]
    pub mode: Mode,
    /// Encoded images, taken in turn.
    #[arg(long, value_delimiter = ',', required = true)]
    pub images: Vec<PathBuf>,
    /// Seconds to run (after one warm-up pass over the images).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A retention: a duration, or `never`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention(pub Option<Duration>);

impl std::str::FromStr for Retention {
    type Err = String;
    fn from_str(s: &str) -> Result<Retention, String> {
        match s {
            "never" => Ok(Retention(None)),
            _ => humantime::parse_duration(s).map(|d| Retention(Some(d))).map_err(|e| format!("{e} (or `never`)")),
        }
    }
}
