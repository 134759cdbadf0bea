//! Command-line settings. Every flag can also be set through the environment variable named
//! in its help (`DFSERVE_*`), which is how container deployments configure dfserve.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::hashlists::cli::{HashesArgs, HashesCommand};
pub use crate::healthcheck::HealthArgs;
use clap::{Args, Parser, Subcommand};

use crate::batcher::BatcherConfig;
use crate::core::{CoreSettings, Mode};
use crate::pipeline::crop::Border;
use crate::runtime::{Device, SessionOptions};
use crate::video::VideoSettings;

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
    /// Fit a calibration (Platt scaling) from the rows of an earlier `dfserve score` run with
    /// labels, report it, and with --write store it in the model's config.
    Calibrate(CalibrateArgs),
    /// Print each file's hashes as JSON Lines: PDQ and its quality (images), MD5 and SHA-256.
    Hash(HashArgs),
    /// Manage the known-content hash lists in --data-dir directly (with the server stopped;
    /// while it runs, use /v1/hashlists).
    Hashes(HashesArgs),
    /// Measure raw ONNX Runtime throughput of one model (no server, no image work).
    BenchModel(BenchModelArgs),
    /// Time the whole image pipeline in-process, one image at a time (no server, no queue):
    /// the latency floor a server's concurrency-1 latency is compared against.
    BenchPipeline(BenchPipelineArgs),
}

/// Where ONNX Runtime and the models are, and how sessions run.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Path to libonnxruntime.so; default: ORT_DYLIB_PATH, else found beside the binary or
    /// under DFSERVE_HOME (see `layout`).
    #[arg(long, env = "DFSERVE_ORT_LIB", default_value_os_t = crate::layout::ort_lib())]
    pub ort_lib: PathBuf,
    /// Directory of model configs (*.toml) and their ONNX files (default: see `layout`).
    #[arg(long, env = "DFSERVE_MODEL_DIR", default_value_os_t = crate::layout::model_dir())]
    pub model_dir: PathBuf,
    /// Execution provider: cpu, cuda[:N] or tensorrt[:N] (GPU ones need the matching cargo feature).
    #[arg(long, env = "DFSERVE_DEVICE", default_value = "cpu")]
    pub device: Device,
    /// ONNX Runtime intra-op threads per session (per instance; see --instances).
    #[arg(long, env = "DFSERVE_INTRA_THREADS", default_value_t = 1)]
    pub intra_threads: usize,
    /// Let ORT threads busy-wait between ops (lower latency, burns idle CPU).
    #[arg(long, env = "DFSERVE_ORT_SPINNING", default_value_t = false)]
    pub ort_spinning: bool,
}

impl RuntimeArgs {
    pub fn session(&self) -> SessionOptions {
        SessionOptions { device: self.device, intra_threads: self.intra_threads, spinning: self.ort_spinning }
    }
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
    /// A PDQ hash matches a list entry at this Hamming distance or less (of 256 bits; Meta's
    /// suggested threshold is 31).
    #[arg(long, env = "DFSERVE_PDQ_MAX_DISTANCE", default_value_t = 31)]
    pub pdq_max_distance: u32,
    /// Uploads whose PDQ quality is below this are not matched by PDQ (flat or tiny images give
    /// hashes that match too much; Meta's default is 50).
    #[arg(long, env = "DFSERVE_PDQ_MIN_QUALITY", default_value_t = 50)]
    pub pdq_min_quality: u8,
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

/// The inference engine: models, batching and the image pipeline. Shared by `serve` and by
/// `score` when it runs in-process.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Load only these models (comma-separated); default: every config in --model-dir.
    #[arg(long, env = "DFSERVE_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Classifier (a model or an ensemble) used when a request names none. The default
    /// ensemble covers face swaps and face reenactment; name `meso4_df` for half the cost.
    #[arg(long, env = "DFSERVE_DEFAULT_MODEL", default_value = "meso4_ensemble")]
    pub default_model: String,
    /// Face detector model.
    #[arg(long, env = "DFSERVE_DETECTOR", default_value = "ultraface_rfb320")]
    pub detector: String,
    /// Sessions (worker threads) per model. Default: on CPU one per core the process may use,
    /// at most 8; on GPU 1.
    #[arg(long, env = "DFSERVE_INSTANCES")]
    pub instances: Option<usize>,
    /// Intra-op threads of the extra "solo" session per model, which runs a lone request while
    /// the other workers are idle, so light load gets all cores and heavy load gets one
    /// session per core. 0 (or a value not above --intra-threads) turns it off. Default: on CPU
    /// the cores the process may use, at most 4; on GPU off.
    #[arg(long, env = "DFSERVE_SOLO_THREADS")]
    pub solo_threads: Option<usize>,
    /// Largest batch one model run takes. On CPU batching does not speed MesoNet up (see
    /// bench/RESULTS.md); on GPU raise it.
    #[arg(long, env = "DFSERVE_MAX_BATCH_SIZE", default_value_t = 1)]
    pub max_batch_size: usize,
    /// How long a worker waits for more entries after the first before running the batch (µs).
    #[arg(long, env = "DFSERVE_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Entries (faces or images) a model queue holds before new requests get 429.
    #[arg(long, env = "DFSERVE_MAX_QUEUE_SIZE", default_value_t = 256)]
    pub max_queue_size: usize,
    /// Per-request deadline (e.g. 30s, 500ms); past it the request gets 504.
    #[arg(long, env = "DFSERVE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Most items one request may carry: files in a multipart /v1/detect, rows of a KServe
    /// tensor (413 `too_many_items` above, before any work).
    #[arg(long, env = "DFSERVE_MAX_CLIENT_BATCH_SIZE", default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Largest accepted image, in pixels, checked from the header before decoding (422 above).
    #[arg(long, env = "DFSERVE_MAX_IMAGE_PIXELS", default_value_t = 40_000_000)]
    pub max_image_pixels: u64,
    /// Megapixels of uploaded images being decoded or scored at once, server-wide, as their
    /// headers declare them (429 `busy` above, before decoding). Bounds the memory of decoders
    /// and decoded pixels: about 3 bytes per pixel plus the decoder's buffers. Never below one
    /// image at --max-image-pixels.
    #[arg(long, env = "DFSERVE_MAX_DECODING_MEGAPIXELS", default_value_t = 120)]
    pub max_decoding_megapixels: u32,
    #[command(flatten)]
    pub crop: CropArgs,
    /// Frames sampled from a video, spread evenly over the clip (a request may ask for
    /// another count with `frames`, or a rate with `fps`).
    #[arg(long, env = "DFSERVE_VIDEO_FRAMES", default_value_t = 32)]
    pub video_frames: usize,
    /// Most frames one video request may sample.
    #[arg(long, env = "DFSERVE_MAX_VIDEO_FRAMES", default_value_t = 128)]
    pub max_video_frames: usize,
    /// Longest accepted video (422 above).
    #[arg(long, env = "DFSERVE_MAX_VIDEO_DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub max_video_duration: Duration,
    /// Largest accepted video frame, in pixels (422 above; default 3840x2160).
    #[arg(long, env = "DFSERVE_MAX_VIDEO_PIXELS", default_value_t = 3840 * 2160)]
    pub max_video_pixels: u64,
    /// Wall-clock limit for all FFmpeg work on one video (probe and decode); past it the video
    /// gets 503 (the server is likely busy). Keep it below --request-timeout, which answers 504.
    #[arg(long, env = "DFSERVE_VIDEO_DECODE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub video_decode_timeout: Duration,
    /// Address-space limit of each FFmpeg process, in bytes.
    #[arg(long, env = "DFSERVE_VIDEO_MEMORY_BYTES", default_value_t = 2 << 30)]
    pub video_memory_bytes: u64,
    /// FFmpeg scales sampled frames down so that their longer side is at most this many pixels
    /// (faces are found at 320x240 and classified at 256x256, so more detail is not used).
    #[arg(long, env = "DFSERVE_VIDEO_MAX_SIDE", default_value_t = 1280)]
    pub video_max_side: u32,
    /// Videos decoded at once, server-wide (one FFmpeg process each); more get 429 `busy` at
    /// once. Default: the cores the process may use.
    #[arg(long, env = "DFSERVE_MAX_FFMPEG_PROCESSES")]
    pub max_ffmpeg_processes: Option<usize>,
    /// Faces whose longer side is shorter than this many pixels (in `whole` mode: images) are
    /// scored but get the verdict `not_applicable` (`face_too_small`) and do not count towards
    /// the image's verdict: MesoNet flags half of the authentic faces under 40 px.
    #[arg(long, env = "DFSERVE_MIN_FACE_SIZE", default_value_t = 64)]
    pub min_face_size: u32,
    /// Decoded frames of one video that may wait for or be in scoring at once.
    #[arg(long, env = "DFSERVE_VIDEO_FRAMES_IN_FLIGHT", default_value_t = 4)]
    pub video_frames_in_flight: usize,
}

impl EngineArgs {
    pub fn core_settings(&self) -> CoreSettings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu = self.runtime.device == Device::Cpu;
        let instances = self.instances.unwrap_or(if cpu { cores.min(8) } else { 1 }).max(1);
        let solo_threads = if cpu { self.solo_threads.unwrap_or(cores.min(4)) } else { 0 };
        CoreSettings {
            ort_lib: self.runtime.ort_lib.clone(),
            model_dir: self.runtime.model_dir.clone(),
            models: self.models.clone(),
            default_model: self.default_model.clone(),
            detector: self.detector.clone(),
            session: self.runtime.session(),
            instances,
            solo_threads,
            batcher: BatcherConfig {
                max_batch_size: self.max_batch_size.max(1),
                max_queue_delay: Duration::from_micros(self.max_queue_delay_us),
                max_queue_size: self.max_queue_size.max(1),
            },
            request_timeout: self.request_timeout,
            max_client_batch_size: self.max_client_batch_size.max(1),
            max_image_pixels: self.max_image_pixels,
            max_decoding_megapixels: self.max_decoding_megapixels,
            crop_margin: self.crop.crop_margin,
            crop_border: self.crop.crop_border,
            min_face_size: self.min_face_size,
        }
    }

    /// Limits and defaults for video uploads (the detect layer's, not the core's).
    pub fn video_settings(&self) -> VideoSettings {
        VideoSettings {
            default_frames: self.video_frames.max(1),
            max_frames: self.max_video_frames.max(1),
            max_duration: self.max_video_duration,
            max_pixels: self.max_video_pixels,
            decode_timeout: self.video_decode_timeout,
            ffmpeg_memory: self.video_memory_bytes,
            max_side: self.video_max_side.max(16),
            max_concurrent: self
                .max_ffmpeg_processes
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1),
            frames_in_flight: self.video_frames_in_flight.max(1),
        }
    }
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

/// How a detected face becomes the classifier's crop; shared by the server and bench-pipeline.
#[derive(Debug, Clone, Args)]
pub struct CropArgs {
    /// Face crop side as a multiple of the detected box's longer side.
    #[arg(long, env = "DFSERVE_CROP_MARGIN", default_value_t = 1.0)]
    pub crop_margin: f32,
    /// Crops past the image border: clamp (slide inside) or pad (fill black).
    #[arg(long, env = "DFSERVE_CROP_BORDER", default_value = "clamp")]
    pub crop_border: Border,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Image files or folders (walked recursively; JPEG, PNG, WebP, BMP, GIF by extension).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Score against a running dfserve (e.g. http://gpu-box:8000) instead of in-process.
    #[arg(long)]
    pub server: Option<String>,
    /// API key sent to --server (`x-api-key`).
    #[arg(long, env = "DFSERVE_API_KEY", hide_env_values = true, requires = "server")]
    pub api_key: Option<String>,
    /// File holding the API key for --server (first line), kept out of the process list.
    #[arg(long, requires = "server", conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// Give up on one --server request after this long (then the file's row records the error).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub server_timeout: Duration,
    /// Also match every file against the hash lists in this data directory (Meta's default
    /// thresholds), with no server using it (redb takes one process at a time).
    #[arg(long, conflicts_with = "server")]
    pub hash_lists: Option<PathBuf>,
    /// PEM file of C2PA trust anchors (as `serve --c2pa-trust-anchors`).
    #[arg(long, env = "DFSERVE_C2PA_TRUST_ANCHORS", conflicts_with = "server")]
    pub c2pa_trust_anchors: Option<PathBuf>,
    /// Classifier(s) to run, comma-separated; default: the engine's --default-model.
    #[arg(long = "model", value_delimiter = ',')]
    pub score_models: Vec<String>,
    /// faces: detect and score each face; whole: score each image as one face crop.
    #[arg(long, value_enum, default_value_t = Mode::Faces)]
    pub mode: Mode,
    /// Decision threshold (default: each model's own).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Write rows here (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Row format (default: csv for *.csv outputs, else jsonl).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Skip images already present in --output and append the rest.
    #[arg(long)]
    pub resume: bool,
    /// Ground truth: `dirs` (from folder names) or a CSV file of `path,label`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Folder names meaning "authentic" for --labels dirs.
    #[arg(long, value_delimiter = ',', default_value = "real,reals,original,originals,authentic,pristine")]
    pub real_names: Vec<String>,
    /// Folder names meaning "manipulated" for --labels dirs.
    #[arg(long, value_delimiter = ',', default_value = "fake,fakes,df,deepfake,deepfakes,manipulated,synthetic")]
    pub fake_names: Vec<String>,
    /// Also write the summary (JSON), ROC curves and score histograms (PNG) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Images in flight at once (reading, decoding, queued for the model).
    #[arg(long, default_value_t = 32)]
    pub jobs: usize,
    /// With labels: also report the metrics of each sub-folder's fakes against all reals (e.g.
    /// one folder per manipulation method), and the reals' folders on their own.
    #[arg(long)]
    pub by_folder: bool,
    /// With labels: fit a calibration (Platt scaling) for each model on this run's scores and
    /// write it into the model's config in --model-dir; the server serves calibrated scores
    /// after a restart.
    #[arg(long)]
    pub calibrate: bool,
    /// Add each result's audit record (upload SHA-256, models and their file hashes, bands) to
    /// the JSON Lines rows.
    #[arg(long)]
    pub audit: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HashArgs {
    /// Files to hash.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The decoding limits (`--max-image-pixels`, `--max-video-*`, `--video-max-side`) are the
    /// server's, so a file hashes here as it does on upload.
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Rows written by `dfserve score --labels ... --output FILE` (JSONL, or CSV by extension).
    pub scores: PathBuf,
    /// The model (column) to calibrate.
    #[arg(long)]
    pub model: String,
    /// Store the calibration in the model's config in --model-dir.
    #[arg(long)]
    pub write: bool,
    /// Directory of model configs.
    #[arg(long, env = "DFSERVE_MODEL_DIR", default_value_os_t = crate::layout::model_dir())]
    pub model_dir: PathBuf,
    /// Print the fit as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
