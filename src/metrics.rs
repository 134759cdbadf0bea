//! Prometheus metrics: one registry, one struct of handles, shared by every front end and the
//! batcher workers. `GET /metrics` renders the registry in the text exposition format.

use prometheus::{
    exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Requests by front-end endpoint (route template) and status code.
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    /// Time entries wait in a model's queue before their batch runs.
    pub queue_seconds: HistogramVec,
    /// Duration of each batch's model run.
    pub inference_seconds: HistogramVec,
    pub batch_size: HistogramVec,
    /// Model runs taken on the solo session (a lone entry on otherwise idle cores).
    pub solo_runs: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    /// Entries dropped before inference, by reason (cancelled, deadline).
    pub dropped_entries: IntCounterVec,
    pub inference_errors: IntCounterVec,
    /// CPU stages of the image pipeline (decode, detect_preprocess, detect_postprocess, crop).
    pub stage_seconds: HistogramVec,
    /// Images scored, by label (manipulated, authentic, no_face, error).
    pub images: IntCounterVec,
    pub faces: IntCounter,
    /// Videos scored, by outcome (manipulated, authentic, no_face, error).
    pub videos: IntCounterVec,
    /// Video frames decoded and scored.
    pub video_frames: IntCounter,
    /// Constant 1 per loaded model, with its identity as labels.
    pub model_info: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let latency = exponential_buckets(0.0005, 2.0, 16).expect("valid buckets"); // 0.5 ms .. 16 s
        let requests = IntCounterVec::new(
            Opts::new("dfserve_requests_total", "Requests by endpoint and HTTP status"),
            &["endpoint", "status"],
        )
        .expect("metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("dfserve_request_duration_seconds", "Request latency by endpoint")
                .buckets(latency.clone()),
            &["endpoint"],
        )
        .expect("metric");
        let queue_seconds = HistogramVec::new(
            HistogramOpts::new("dfserve_queue_duration_seconds", "Time an entry waited in a model queue")
                .buckets(exponential_buckets(0.00005, 2.0, 18).expect("valid buckets")),
            &["model"],
        )
        .expect("metric");
        let inference_seconds = HistogramVec::new(
            HistogramOpts::new("dfserve_inference_duration_seconds", "Model run time per batch")
                .buckets(latency.clone()),
            &["model"],
        )
        .expect("metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("dfserve_batch_size", "Entries per model run")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["model"],
        )
        .expect("metric");
        let solo_runs = IntCounterVec::new(
            Opts::new("dfserve_solo_runs_total", "Model runs on the solo session (one entry, idle cores)"),
            &["model"],
        )
        .expect("metric");
        let queue_depth =
            IntGaugeVec::new(Opts::new("dfserve_queue_depth", "Entries waiting in a model queue"), &["model"])
                .expect("metric");
        let dropped_entries = IntCounterVec::new(
            Opts::new("dfserve_dropped_entries_total", "Queue entries dropped before inference"),
            &["model", "reason"],
        )
        .expect("metric");
        let inference_errors = IntCounterVec::new(
            Opts::new("dfserve_inference_errors_total", "Batches whose model run failed"),
            &["model"],
        )
        .expect("metric");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new("dfserve_stage_duration_seconds", "CPU pipeline stage time per image")
                .buckets(exponential_buckets(0.00005, 2.0, 18).expect("valid buckets")),
            &["stage"],
        )
        .expect("metric");
        let images = IntCounterVec::new(Opts::new("dfserve_images_total", "Images scored, by label"), &["label"])
            .expect("metric");
        let faces = IntCounter::new("dfserve_faces_detected_total", "Faces found by the detector").expect("metric");
        let videos = IntCounterVec::new(Opts::new("dfserve_videos_total", "Videos scored, by outcome"), &["label"])
            .expect("metric");
        let video_frames =
            IntCounter::new("dfserve_video_frames_total", "Video frames sampled and scored").expect("metric");
        let model_info = IntGaugeVec::new(
            Opts::new("dfserve_model_info", "Loaded models (value is always 1)"),
            &["model", "version", "kind", "device", "sha256"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(queue_seconds.clone()),
            Box::new(inference_seconds.clone()),
            Box::new(batch_size.clone()),
            Box::new(solo_runs.clone()),
            Box::new(queue_depth.clone()),
            Box::new(dropped_entries.clone()),
            Box::new(inference_errors.clone()),
            Box::new(stage_seconds.clone()),
            Box::new(images.clone()),
            Box::new(faces.clone()),
            Box::new(model_info.clone()),
            Box::new(videos.clone()),
            Box::new(video_frames.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...: what
        // capacity planning and leak hunting start from.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("metric names are unique");
        Metrics {
            registry,
            requests,
            request_seconds,
            queue_seconds,
            inference_seconds,
            batch_size,
            solo_runs,
            queue_depth,
            dropped_entries,
            inference_errors,
            stage_seconds,
            images,
            faces,
            model_info,
            videos,
            video_frames,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut out)
            .expect("encoding metrics to a String cannot fail");
        out
    }
}
