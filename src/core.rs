//! The one inference core every front end calls.
//!
//! It owns the loaded models (each behind its own batcher) and runs the image pipeline:
//! decode -> detect -> square crops -> classify -> aggregate. CPU stages run on tokio's blocking
//! pool so the async workers stay free to accept and answer requests; model runs happen on the
//! batcher threads, where faces from many requests share one ONNX Runtime call.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use image::RgbImage;
use serde::Serialize;

use crate::batcher::{Batcher, BatcherConfig, EntryOutput};
use crate::error::CoreError;
use crate::metrics::Metrics;
use crate::models::{ModelConfig, ModelKind, ScoreDirection};
use crate::pipeline::crop::Border;
use crate::pipeline::decode::{decode_rgb, DecodeLimits};
use crate::pipeline::detect::FaceBox;
use crate::pipeline::preprocess::{model_input, Region};
use crate::pipeline::{aggregate, detected_faces, face_rows};
use crate::runtime::{OrtBackend, SessionOptions, TensorSpec};
use crate::stats::ModelStats;

/// Everything the core needs to load and run models, gathered from the CLI.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub ort_lib: PathBuf,
    pub model_dir: PathBuf,
    /// Load only these models (all configs in `model_dir` when empty).
    pub models: Vec<String>,
    pub default_model: String,
    pub detector: String,
    pub session: SessionOptions,
    pub instances: usize,
    /// Intra-op threads of each model's solo session; none unless above `session.intra_threads`.
    pub solo_threads: usize,
    pub batcher: BatcherConfig,
    pub request_timeout: Duration,
    pub max_image_pixels: u64,
    pub crop_margin: f32,
    pub crop_border: Border,
    pub video: crate::video::VideoSettings,
}

/// How to find what to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Detect faces and score each one.
    #[default]
    Faces,
    /// Score the whole image as one face crop (datasets of pre-cropped faces).
    Whole,
}

#[derive(Debug, Clone, Default)]
pub struct DetectOptions {
    pub model: Option<String>,
    pub threshold: Option<f32>,
    pub mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Manipulated,
    Authentic,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Manipulated => "manipulated",
            Label::Authentic => "authentic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NoFace,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoFace => "no_face",
        }
    }
}

/// One word for an outcome: `manipulated`, `authentic` or `no_face`. Used for metrics, the
/// KServe `LABEL` output and the video verdict alike.
pub fn verdict(status: Status, label: Option<Label>) -> &'static str {
    match (status, label) {
        (Status::NoFace, _) | (_, None) => "no_face",
        (_, Some(l)) => l.as_str(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaceResult {
    /// `[x1, y1, x2, y2]` in pixels of the (EXIF-rotated) image.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detector confidence; 1.0 in `whole` mode.
    pub confidence: f32,
    pub score: f32,
    pub label: Label,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub decode_ms: f64,
    /// Time waiting in model queues (detector + classifier).
    pub queue_ms: f64,
    /// Time in model runs this image's entries were part of.
    pub inference_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub width: u32,
    pub height: u32,
    pub status: Status,
    /// Image-level manipulation score (max over faces); null when no face was found.
    pub score: Option<f32>,
    pub label: Option<Label>,
    pub threshold: f32,
    pub faces: Vec<FaceResult>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    #[serde(flatten)]
    pub config: ModelConfig,
    pub default: bool,
    pub instances: usize,
    pub queue_depth: usize,
}

/// A model with its running batcher, as the front ends see it.
pub struct LoadedModel {
    pub config: ModelConfig,
    pub batcher: Batcher,
    /// The float32 outputs every run returns, in order (`EntryOutput::rows` follows it).
    pub outputs: Vec<TensorSpec>,
}

impl LoadedModel {
    /// Position of output `name` in `outputs` (and so in `EntryOutput::rows`).
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }

    /// Shape of one batch row of the input (without the batch dimension).
    pub fn input_shape(&self) -> Vec<i64> {
        self.config.input.item_shape().iter().map(|d| *d as i64).collect()
    }

    async fn infer(&self, row: Vec<f32>, deadline: Instant, t: &mut Timings) -> Result<EntryOutput, CoreError> {
        let out = self.batcher.infer(row, deadline).await?;
        t.queue_ms += ms(out.queue);
        t.inference_ms += ms(out.inference);
        Ok(out)
    }
}

pub struct InferCore {
    models: BTreeMap<String, Arc<LoadedModel>>,
    default_model: String,
    detector: String,
    settings: CoreSettings,
    ready: AtomicBool,
    draining: AtomicBool,
    pub metrics: Arc<Metrics>,
    device: String,
    /// Totals for the whole image pipeline (the KServe `dfserve` model and /v1/detect).
    pipeline_stats: ModelStats,
}

impl InferCore {
    /// Loads every selected model (checking file checksums and tensor specs), starts its
    /// batcher, and runs one warm-up batch through it. Blocking: call before serving or from a
    /// blocking thread.
    pub fn load(settings: CoreSettings, metrics: Arc<Metrics>) -> anyhow::Result<InferCore> {
        let env = crate::runtime::init_environment(&settings.ort_lib)?;
        let mut configs = crate::models::load_dir(&settings.model_dir)?;
        if !settings.models.is_empty() {
            for name in &settings.models {
                if !configs.contains_key(name) {
                    bail!(
                        "--models names '{name}', which has no config in {} (have: {})",
                        settings.model_dir.display(),
                        configs.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            configs.retain(|name, _| settings.models.contains(name));
        }
        match configs.get(&settings.default_model) {
            Some(c) if c.kind == ModelKind::Classifier => {}
            Some(_) => bail!("--default-model '{}' is not a classifier", settings.default_model),
            None => bail!("--default-model '{}' is not among the loaded models", settings.default_model),
        }
        match configs.get(&settings.detector) {
            Some(c) if c.kind == ModelKind::Detector => {}
            Some(_) => bail!("--detector '{}' is not a detector model", settings.detector),
            None => bail!("--detector '{}' is not among the loaded models", settings.detector),
        }
        let mut models = BTreeMap::new();
        for (name, config) in configs {
            let path = settings.model_dir.join(&config.file);
            if !path.is_file() {
                bail!(
                    "model '{name}': {} is missing; run scripts/setup.sh (it copies the models from DFSERVE_MODEL_SOURCE, default ../shared/models)",
                    path.display()
                );
            }
            let sha = crate::models::sha256_file(&path)?;
            if sha != config.sha256.to_lowercase() {
                bail!(
                    "model '{name}': {} has sha256 {sha}, but {} expects {}; re-run scripts/setup.sh or fix the config",
                    path.display(),
                    config.config_path.display(),
                    config.sha256
                );
            }
            let started = Instant::now();
            let backends = (0..settings.instances.max(1))
                .map(|_| OrtBackend::load(&env, &path, &config, &settings.session))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let solo = if settings.solo_threads > settings.session.intra_threads {
                let opts = SessionOptions { intra_threads: settings.solo_threads, ..settings.session.clone() };
                Some(OrtBackend::load(&env, &path, &config, &opts)?)
            } else {
                None
            };
            let outputs = backends[0].outputs().to_vec();
            let batcher = Batcher::spawn(
                &name,
                backends,
                solo,
                config.input.item_shape().to_vec(),
                settings.batcher.clone(),
                metrics.clone(),
            );
            tracing::info!(model = %name, version = %config.version, kind = ?config.kind, instances = settings.instances, solo_threads = settings.solo_threads, elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
            metrics
                .model_info
                .with_label_values(&[
                    name.as_str(),
                    config.version.as_str(),
                    match config.kind {
                        ModelKind::Classifier => "classifier",
                        ModelKind::Detector => "detector",
                    },
                    settings.session.device.to_string().as_str(),
                    config.sha256.as_str(),
                ])
                .set(1);
            models.insert(name, Arc::new(LoadedModel { config, batcher, outputs }));
        }
        let core = InferCore {
            models,
            default_model: settings.default_model.clone(),
            detector: settings.detector.clone(),
            device: settings.session.device.to_string(),
            settings,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            metrics,
            pipeline_stats: ModelStats::default(),
        };
        Ok(core)
    }

    /// Runs one batch of a mid-grey image through every model, so the first real request does
    /// not pay for ORT's lazy initialisation, then marks the core ready.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        for (name, m) in &self.models {
            let row = vec![0.5f32; m.batcher.item_len()];
            m.batcher.infer(row, deadline).await.with_context(|| format!("warm-up run of model '{name}'"))?;
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(models = self.models.len(), "all models warmed up; ready");
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Stop admitting new work (readiness turns false, new requests get 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        self.models
            .values()
            .map(|m| ModelInfo {
                config: m.config.clone(),
                default: m.config.name == self.default_model || m.config.name == self.detector,
                instances: self.settings.instances,
                queue_depth: m.batcher.queue_depth(),
            })
            .collect()
    }

    /// A loaded model by name.
    pub fn model(&self, name: &str) -> Option<&Arc<LoadedModel>> {
        self.models.get(name)
    }

    /// Every loaded model, by name.
    pub fn loaded_models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values()
    }

    pub fn pipeline_stats(&self) -> &ModelStats {
        &self.pipeline_stats
    }

    pub fn video_settings(&self) -> &crate::video::VideoSettings {
        &self.settings.video
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    pub fn request_deadline(&self) -> Instant {
        Instant::now() + self.settings.request_timeout
    }

    fn classifier(&self, name: Option<&str>) -> Result<&Arc<LoadedModel>, CoreError> {
        let name = name.unwrap_or(&self.default_model);
        match self.models.get(name) {
            Some(m) if m.config.kind == ModelKind::Classifier => Ok(m),
            Some(_) => Err(CoreError::ModelNotFound(format!("'{name}' as a classifier (it is a face detector)"))),
            None => Err(CoreError::ModelNotFound(format!("'{name}'"))),
        }
    }

    /// Name and version of the classifier a request would use.
    pub fn classifier_identity(&self, name: Option<&str>) -> Result<(String, String), CoreError> {
        let m = self.classifier(name)?;
        Ok((m.config.name.clone(), m.config.version.clone()))
    }

    /// Refuses work while models warm up or the server drains.
    pub fn admit(&self) -> Result<(), CoreError> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(CoreError::Unavailable("server is shutting down".into()));
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Err(CoreError::Unavailable("models are still loading; retry shortly".into()));
        }
        Ok(())
    }

    /// Resolves and validates options without doing any work, so a bad option fails the whole
    /// request up front instead of every image in it.
    pub fn check_options(&self, opts: &DetectOptions) -> Result<(), CoreError> {
        self.classifier(opts.model.as_deref())?;
        if let Some(t) = opts.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(CoreError::BadRequest(format!("threshold must be in [0, 1], got {t}")));
            }
        }
        Ok(())
    }

    /// Scores one encoded image. The whole call is bounded by `deadline`.
    pub async fn detect(
        &self,
        bytes: Bytes,
        opts: &DetectOptions,
        deadline: Instant,
    ) -> Result<ImageResult, CoreError> {
        self.admit()?;
        self.check_options(opts)?;
        let timeout = self.settings.request_timeout;
        let started = Instant::now();
        let result =
            tokio::time::timeout_at(deadline.into(), self.detect_inner(ImageSource::Encoded(bytes), opts, deadline))
                .await
                .unwrap_or(Err(CoreError::DeadlineExceeded(timeout)));
        // For the pipeline, one image is one inference and one execution.
        self.pipeline_stats.record_request(result.is_ok(), started.elapsed());
        if result.is_ok() {
            self.pipeline_stats.record_execution(1, started.elapsed());
        }
        let label = result.as_ref().map_or("error", |r| verdict(r.status, r.label));
        self.metrics.images.with_label_values(&[label]).inc();
        result
    }

    /// Scores one already-decoded picture (a video frame) through the same batchers. The
    /// caller has admitted the request and bounds it with its deadline.
    pub async fn detect_frame(
        &self,
        img: Arc<RgbImage>,
        opts: &DetectOptions,
        deadline: Instant,
    ) -> Result<ImageResult, CoreError> {
        self.detect_inner(ImageSource::Decoded(img), opts, deadline).await
    }

    async fn detect_inner(
        &self,
        source: ImageSource,
        opts: &DetectOptions,
        deadline: Instant,
    ) -> Result<ImageResult, CoreError> {
        let started = Instant::now();
        let classifier = self.classifier(opts.model.as_deref())?.clone();
        let out_cfg = classifier.config.output.clone().expect("classifier configs have an [output] table");
        let score_index = classifier.output_index(&out_cfg.score).expect("checked at load");
        let threshold = opts.threshold.unwrap_or(out_cfg.threshold);
        let mut t = Timings::default();

        // Decode, plus the first model input (detector, or classifier in whole mode).
        let limits = DecodeLimits { max_pixels: self.settings.max_image_pixels };
        let first_model = match opts.mode {
            Mode::Faces => self.models.get(&self.detector).expect("detector checked at load").clone(),
            Mode::Whole => classifier.clone(),
        };
        // Refuse at once, before decoding, when the first queue is already full.
        first_model.batcher.check_capacity()?;
        let metrics = self.metrics.clone();
        let fm = first_model.clone();
        let (img, first_row, decode_time) = blocking(move || {
            let t0 = Instant::now();
            let img = match source {
                ImageSource::Encoded(bytes) => {
                    let img = Arc::new(decode_rgb(&bytes, limits)?);
                    metrics.stage_seconds.with_label_values(&["decode"]).observe(t0.elapsed().as_secs_f64());
                    img
                }
                ImageSource::Decoded(img) => img,
            };
            let decode_time = t0.elapsed();
            let t1 = Instant::now();
            let row = model_input(&img, Region::whole(&img), &fm.config.input);
            let stage = if fm.config.kind == ModelKind::Detector { "detect_preprocess" } else { "classify_preprocess" };
            metrics.stage_seconds.with_label_values(&[stage]).observe(t1.elapsed().as_secs_f64());
            Ok::<_, CoreError>((img, row, decode_time))
        })
        .await?;
        t.decode_ms = ms(decode_time);
        let (width, height) = img.dimensions();

        let faces: Vec<(FaceBox, Vec<f32>)> = match opts.mode {
            Mode::Whole => {
                let whole = FaceBox { x1: 0.0, y1: 0.0, x2: width as f32, y2: height as f32, confidence: 1.0 };
                vec![(whole, first_row)]
            }
            Mode::Faces => {
                let mut det = first_model.infer(first_row, deadline, &mut t).await?;
                let det_cfg = first_model.config.detector.clone().expect("detector configs have a [detector] table");
                let scores =
                    std::mem::take(&mut det.rows[first_model.output_index(&det_cfg.scores).expect("checked at load")]);
                let boxes =
                    std::mem::take(&mut det.rows[first_model.output_index(&det_cfg.boxes).expect("checked at load")]);
                let cls_input = classifier.config.input.clone();
                let (margin, border) = (self.settings.crop_margin, self.settings.crop_border);
                let metrics = self.metrics.clone();
                let img = img.clone();
                blocking(move || {
                    let t0 = Instant::now();
                    let boxes = detected_faces(&det_cfg, &scores, &boxes, width, height);
                    metrics
                        .stage_seconds
                        .with_label_values(&["detect_postprocess"])
                        .observe(t0.elapsed().as_secs_f64());
                    let t1 = Instant::now();
                    let crops = face_rows(&img, boxes, &cls_input, margin, border);
                    metrics.stage_seconds.with_label_values(&["crop"]).observe(t1.elapsed().as_secs_f64());
                    Ok::<_, CoreError>(crops)
                })
                .await?
            }
        };
        self.metrics.faces.inc_by(if opts.mode == Mode::Faces { faces.len() as u64 } else { 0 });

        // Every face is its own batch entry, so faces of this and other requests batch together.
        let mut per_face = Vec::with_capacity(faces.len());
        let futures = faces.into_iter().map(|(face, row)| {
            let classifier = classifier.clone();
            async move {
                let mut t = Timings::default();
                let out = classifier.infer(row, deadline, &mut t).await?;
                Ok::<_, CoreError>((face, out, t))
            }
        });
        for r in futures::future::join_all(futures).await {
            let (face, out, ft) = r?;
            t.queue_ms += ft.queue_ms;
            t.inference_ms += ft.inference_ms;
            let raw = out.rows[score_index][0];
            let score = match out_cfg.direction {
                ScoreDirection::HigherIsManipulated => raw,
                ScoreDirection::HigherIsAuthentic => 1.0 - raw,
            };
            per_face.push(FaceResult {
                bbox: [face.x1, face.y1, face.x2, face.y2],
                confidence: face.confidence,
                score,
                label: label_for(score, threshold),
            });
        }
        let scores: Vec<f32> = per_face.iter().map(|f| f.score).collect();
        let score = aggregate(&scores);
        t.total_ms = ms(started.elapsed());
        // Sums of rounded values pick up float noise; round once more.
        t.queue_ms = (t.queue_ms * 1e3).round() / 1e3;
        t.inference_ms = (t.inference_ms * 1e3).round() / 1e3;
        Ok(ImageResult {
            width,
            height,
            status: if score.is_some() { Status::Ok } else { Status::NoFace },
            score,
            label: score.map(|s| label_for(s, threshold)),
            threshold,
            faces: per_face,
            timings: t,
        })
    }
}

/// An image to score: encoded bytes from a client, or pixels already decoded (video frames).
enum ImageSource {
    Encoded(Bytes),
    Decoded(Arc<RgbImage>),
}

/// Milliseconds, rounded to the microsecond so JSON stays readable.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn label_for(score: f32, threshold: f32) -> Label {
    if score >= threshold {
        Label::Manipulated
    } else {
        Label::Authentic
    }
}

/// Runs CPU-bound work on the blocking pool. A panic in image code becomes a 500-class error
/// for this request only.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(CoreError::Inference(format!("image processing task failed: {e}"))))
}
