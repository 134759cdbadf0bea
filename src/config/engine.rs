//! The inference engine's settings, shared by `serve`, the data tools and the benchmarks:
//! where ONNX Runtime and the models are, and how models, batching and the pipeline run.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::batcher::BatcherConfig;
use crate::core::CoreSettings;
use crate::pipeline::crop::Border;
use crate::runtime::{Device, SessionOptions};
use crate::video::VideoSettings;

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

/// The inference engine: models, batching and the image pipeline. Shared by `serve` and by
/// `score` when it runs in-process.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Load only these models (comma-separated); default: every config in --model-dir.
    #[arg(long, env = "DFSERVE_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    /// Classifier (a model, probe or ensemble) used when a request names none. The default is
    /// the CLIP probe, which generalises beyond FaceForensics++ (README: the default
    /// classifier); name `meso4_df` for a tenth of the cost.
    #[arg(long, env = "DFSERVE_DEFAULT_MODEL", default_value = "clip_probe")]
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
