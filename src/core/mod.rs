//! The inference core: the loaded models (each behind its own batcher), their roles, readiness
//! and admission. The image pipeline itself is in [`image`]; the detect layer (`crate::detect`)
//! and the KServe semantics (`crate::api::kserve`) are the two ways in.

pub mod image;
pub mod model;
pub mod roles;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::sync::watch;

use crate::batcher::BatcherConfig;
use crate::error::CoreError;
use crate::metrics::Metrics;
use crate::models::{ModelConfig, ModelKind};
use crate::pipeline::crop::Border;
use crate::runtime::SessionOptions;
use crate::stats::ModelStats;
use image::ImagePipeline;
pub use image::{Embedded, FaceResult, ImageOptions, ImageResult, ImageTimings, Mode, Picture};
pub use model::LoadedModel;
use model::Sessions;
pub use roles::{Classifier, FaceDetector};

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
    /// Most items (multipart files, KServe rows) one request may carry.
    pub max_client_batch_size: usize,
    pub max_image_pixels: u64,
    /// Megapixels of uploads being decoded at once, server-wide.
    pub max_decoding_megapixels: u32,
    pub crop_margin: f32,
    pub crop_border: Border,
    /// Faces smaller than this (longer side, pixels) are not judged.
    pub min_face_size: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    #[serde(flatten)]
    pub config: ModelConfig,
    pub default: bool,
    pub instances: usize,
    pub queue_depth: usize,
}

pub struct InferCore {
    models: BTreeMap<String, Arc<LoadedModel>>,
    classifiers: BTreeMap<String, Arc<Classifier>>,
    pipeline: ImagePipeline,
    default_model: String,
    settings: CoreSettings,
    ready: AtomicBool,
    draining: AtomicBool,
    /// `is_ready()`, published whenever it changes (gRPC health follows it).
    readiness: watch::Sender<bool>,
    pub metrics: Arc<Metrics>,
    device: String,
    /// Totals for the whole image pipeline (the KServe `dfserve` model and /v1/detect).
    pipeline_stats: ModelStats,
}

impl InferCore {
    /// Loads every selected model (checking file checksums and tensor specs), starts its
    /// batcher and resolves its role. Blocking: call before serving or from a blocking thread.
    pub fn load(settings: CoreSettings, metrics: Arc<Metrics>) -> anyhow::Result<InferCore> {
        let env = crate::runtime::init_environment(&settings.ort_lib)?;
        let dir = crate::models::read_dir(&settings.model_dir)?;
        let (mut configs, mut ensembles, mut probes) = (dir.models, dir.ensembles, dir.probes);
        if !settings.models.is_empty() {
            // What each name brings: an ensemble its members, a probe its encoder.
            let mut wanted: Vec<String> = Vec::new();
            let mut todo: Vec<String> = settings.models.clone();
            while let Some(name) = todo.pop() {
                if wanted.contains(&name) {
                    continue;
                }
                if let Some(e) = ensembles.get(&name) {
                    todo.extend(e.members.iter().cloned());
                } else if let Some(p) = probes.get(&name) {
                    todo.push(p.encoder.clone());
                } else if !configs.contains_key(&name) {
                    bail!(
                        "--models names '{name}', which has no config in {} (have: {})",
                        settings.model_dir.display(),
                        configs
                            .keys()
                            .chain(ensembles.keys())
                            .chain(probes.keys())
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                wanted.push(name);
            }
            configs.retain(|name, _| wanted.contains(name));
            probes.retain(|name, p| wanted.contains(name) || configs.contains_key(&p.encoder));
            ensembles.retain(|name, e| {
                wanted.contains(name) || e.members.iter().all(|m| configs.contains_key(m) || probes.contains_key(m))
            });
        }
        match configs.get(&settings.default_model) {
            // `dfserve embed` loads an encoder and the detector, and no classifier.
            _ if settings.default_model.is_empty() => {}
            Some(c) if c.kind == ModelKind::Classifier => {}
            Some(_) => bail!("--default-model '{}' is not a classifier", settings.default_model),
            None if ensembles.contains_key(&settings.default_model) || probes.contains_key(&settings.default_model) => {
            }
            None => bail!("--default-model '{}' is not among the loaded models", settings.default_model),
        }
        match configs.get(&settings.detector) {
            Some(c) if c.kind == ModelKind::Detector => {}
            Some(_) => bail!("--detector '{}' is not a detector model", settings.detector),
            None => bail!("--detector '{}' is not among the loaded models", settings.detector),
        }
        let sessions = Sessions {
            options: &settings.session,
            instances: settings.instances,
            solo_threads: settings.solo_threads,
            batcher: &settings.batcher,
        };
        let mut models = BTreeMap::new();
        let mut classifiers = BTreeMap::new();
        let mut detector = None;
        for (name, config) in configs {
            let model = Arc::new(LoadedModel::load(&env, &settings.model_dir, config, &sessions, &metrics)?);
            match model.config.kind {
                ModelKind::Classifier => {
                    classifiers.insert(name.clone(), Arc::new(Classifier::resolve(model.clone())?));
                }
                ModelKind::Detector if name == settings.detector => {
                    detector = Some(FaceDetector::resolve(model.clone())?);
                }
                ModelKind::Detector | ModelKind::Encoder => {}
            }
            models.insert(name, model);
        }
        for (name, cfg) in &probes {
            classifiers.insert(name.clone(), Arc::new(Classifier::probe(cfg, &models)?));
        }
        for (name, cfg) in &ensembles {
            let ensemble = Classifier::ensemble(cfg, &classifiers)?;
            classifiers.insert(name.clone(), Arc::new(ensemble));
        }
        let detector = detector.context("the --detector model was checked above")?;
        let pipeline = ImagePipeline {
            detector,
            max_image_pixels: settings.max_image_pixels,
            decode_budget: Arc::new(tokio::sync::Semaphore::new(
                settings.max_decoding_megapixels.max((settings.max_image_pixels.div_ceil(1_000_000)) as u32) as usize,
            )),
            crop_margin: settings.crop_margin,
            crop_border: settings.crop_border,
            min_face_size: settings.min_face_size,
            metrics: metrics.clone(),
        };
        Ok(InferCore {
            models,
            classifiers,
            pipeline,
            default_model: settings.default_model.clone(),
            device: settings.session.device.to_string(),
            settings,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            readiness: watch::channel(false).0,
            metrics,
            pipeline_stats: ModelStats::default(),
        })
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
        self.readiness.send_replace(self.is_ready());
        tracing::info!(models = self.models.len(), "all models warmed up; ready");
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    /// Readiness as a channel: the current value, then every change.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Stop admitting new work (readiness turns false, new requests get 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.readiness.send_replace(false);
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

    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        self.models
            .values()
            .map(|m| ModelInfo {
                config: m.config.clone(),
                default: m.config.name == self.default_model
                    || m.config.name == self.pipeline.detector.model.config.name,
                instances: self.settings.instances,
                queue_depth: m.batcher.queue_depth(),
            })
            .collect()
    }

    /// Every classifier a request may name (models and ensembles), by name.
    pub fn classifiers(&self) -> impl Iterator<Item = &Arc<Classifier>> {
        self.classifiers.values()
    }

    /// The face detector's model.
    pub fn face_detector(&self) -> &Arc<LoadedModel> {
        &self.pipeline.detector.model
    }

    /// A loaded model by name.
    pub fn model(&self, name: &str) -> Option<&Arc<LoadedModel>> {
        self.models.get(name)
    }

    /// Every loaded model, by name.
    pub fn loaded_models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values()
    }

    /// The classifier a request names, or the default one.
    pub fn classifier(&self, name: Option<&str>) -> Result<Arc<Classifier>, CoreError> {
        let name = name.unwrap_or(&self.default_model);
        match self.classifiers.get(name) {
            Some(c) => Ok(c.clone()),
            None if self.models.contains_key(name) => {
                Err(CoreError::ModelNotFound(format!("'{name}' as a classifier (it is a face detector)")))
            }
            None => Err(CoreError::ModelNotFound(format!("'{name}'"))),
        }
    }

    /// Each face's (or the whole picture's) embedding from encoder `encoder` (see
    /// [`ImagePipeline::embed`]).
    pub async fn embed_picture(
        &self,
        picture: Picture,
        encoder: &str,
        mode: Mode,
        deadline: Instant,
    ) -> Result<Embedded, CoreError> {
        let model = self.models.get(encoder).ok_or_else(|| CoreError::ModelNotFound(format!("'{encoder}'")))?;
        let output = model
            .config
            .encoder
            .as_ref()
            .and_then(|e| model.output_index(&e.output))
            .ok_or_else(|| CoreError::BadRequest(format!("'{encoder}' is not an encoder (kind = \"encoder\")")))?;
        self.pipeline.embed(picture, model, output, mode, deadline).await
    }

    /// Scores one picture (see [`ImagePipeline::score`]).
    pub async fn score_picture(
        &self,
        picture: Picture,
        opts: &ImageOptions,
        deadline: Instant,
    ) -> Result<ImageResult, CoreError> {
        self.pipeline.score(picture, opts, deadline).await
    }

    pub fn pipeline_stats(&self) -> &ModelStats {
        &self.pipeline_stats
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// Refuses a request that carries more than `--max-client-batch-size` items, before any
    /// work on them. `what` names the items ("files", "rows of input 'IMAGE'").
    pub fn check_items(&self, count: usize, what: &str) -> Result<(), CoreError> {
        let max = self.settings.max_client_batch_size;
        if count > max {
            return Err(CoreError::TooManyItems(format!(
                "the request carries {count} {what}, over the limit of {max} (--max-client-batch-size); split it"
            )));
        }
        Ok(())
    }

    pub fn request_deadline(&self) -> Instant {
        Instant::now() + self.settings.request_timeout
    }
}
