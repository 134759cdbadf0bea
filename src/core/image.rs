//! The image pipeline: decode -> detect -> square crops -> classify -> aggregate, for one picture
//! (an upload or a video frame), with options already validated by the detect layer.
//!
//! CPU stages run on tokio's blocking pool so the async workers stay free to accept and answer
//! requests; model runs happen on the batcher threads, where faces from many requests share one
//! ONNX Runtime call. Every number in [`ImageTimings`] is a span of wall time of this picture's
//! request, stage after stage, so they add up to (about) `total_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use bytes::Bytes;
use image::RgbImage;
use serde::Serialize;

use super::model::LoadedModel;
use super::roles::{Classifier, FaceDetector, MemberScore};
use crate::error::CoreError;
use crate::metrics::Metrics;
use crate::models::InputConfig;
use crate::pipeline::crop::Border;
use crate::pipeline::decode::{decode_rgb, DecodeLimits};
use crate::pipeline::detect::FaceBox;
use crate::pipeline::preprocess::{model_input, Region};
use crate::pipeline::{aggregate, face_rows};
use crate::verdict::{self, Judgement, Label, Reason, Status};

/// How to find what to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Detect faces and score each one.
    #[default]
    Faces,
    /// Score the whole image as one face crop (datasets of pre-cropped faces).
    Whole,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "faces" => Ok(Mode::Faces),
            "whole" => Ok(Mode::Whole),
            other => Err(format!("mode must be 'faces' or 'whole', got '{other}'")),
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Faces => "faces",
            Mode::Whole => "whole",
        }
    }
}

/// Resolved, validated options for scoring one picture.
#[derive(Clone)]
pub struct ImageOptions {
    pub classifier: Arc<Classifier>,
    pub threshold: f32,
    pub mode: Mode,
    /// Hand the decoded pixels back with the result (the detect layer hashes them for
    /// matching).
    pub keep_pixels: bool,
}

/// A picture to score: encoded bytes from a client, or pixels already decoded (video frames).
pub enum Picture {
    Encoded(Bytes),
    Decoded(Arc<RgbImage>),
}

#[derive(Debug, Clone, Serialize)]
pub struct FaceResult {
    /// `[x1, y1, x2, y2]` in pixels of the (EXIF-rotated) image.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detector confidence; 1.0 in `whole` mode.
    pub confidence: f32,
    /// The classifier's score: for an ensemble the combination, calibrated when the classifier
    /// is calibrated.
    pub score: f32,
    pub label: Label,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// The score before calibration (only for a calibrated classifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_score: Option<f32>,
    /// Each member's score (only for an ensemble).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberScore>,
}

/// Wall time of each stage of one picture, in milliseconds. The stages run one after another,
/// so they add up to about `total_ms` (the rest is hand-offs between threads).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImageTimings {
    /// Decoding the upload and preparing the first model's input (for a video frame, only the
    /// latter).
    pub decode_ms: f64,
    /// Face detection: waiting for and running the detector, and decoding its boxes. 0 in
    /// `whole` mode.
    pub detect_ms: f64,
    /// Cutting, resizing and normalising the face crops. 0 in `whole` mode.
    pub crop_ms: f64,
    /// Classification: from queueing the first face until the last face's score came back
    /// (faces are scored side by side, so this is not a sum over faces).
    pub classify_ms: f64,
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
    /// What to act on: from the faces large enough to judge (see `Judgement::image`).
    #[serde(flatten)]
    pub judgement: Judgement,
    pub faces: Vec<FaceResult>,
    pub timings: ImageTimings,
    /// The decoded picture, when asked for (`ImageOptions::keep_pixels`).
    #[serde(skip)]
    pub pixels: Option<Arc<RgbImage>>,
}

impl ImageResult {
    /// `manipulated`, `authentic` or `no_face`.
    pub fn word(&self) -> &'static str {
        verdict::word(self.status, self.label)
    }
}

/// Milliseconds, rounded to the microsecond so JSON stays readable.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The pipeline's fixed parts: the face detector and how pictures are decoded and cropped.
pub struct ImagePipeline {
    pub detector: FaceDetector,
    pub max_image_pixels: u64,
    /// Megapixels of uploads being decoded or scored at once, server-wide
    /// (`--max-decoding-megapixels`): a request takes its image's share (read from the header)
    /// before decoding and holds it until answered, or is refused.
    pub decode_budget: Arc<tokio::sync::Semaphore>,
    pub crop_margin: f32,
    pub crop_border: Border,
    /// Faces (in `whole` mode, images) whose longer side is shorter are `not_applicable`.
    pub min_face_size: u32,
    pub metrics: Arc<Metrics>,
}

impl ImagePipeline {
    /// Scores one picture. The caller has admitted the request and bounds it with `deadline`;
    /// the batchers drop this picture's entries once the deadline passes.
    pub async fn score(
        &self,
        picture: Picture,
        opts: &ImageOptions,
        deadline: Instant,
    ) -> Result<ImageResult, CoreError> {
        let started = Instant::now();
        let mut t = ImageTimings::default();
        let classifier = &opts.classifier;
        if opts.mode == Mode::Whole {
            // Whole mode feeds the classifier first: refuse before decoding when it is full.
            classifier.check_capacity()?;
        }
        let Prepared { width, height, faces, pixels } =
            self.prepare(picture, classifier.inputs(), opts.mode, opts.keep_pixels, deadline, &mut t).await?;

        // Every face is its own batch entry, so faces of this and other requests batch together.
        let t3 = Instant::now();
        let faces_n = faces.len();
        let futures = faces
            .into_iter()
            .map(|(face, row)| async move { Ok::<_, CoreError>((face, classifier.score(row, deadline).await?)) });
        let small = match opts.mode {
            Mode::Faces => Reason::FaceTooSmall,
            Mode::Whole => Reason::ImageTooSmall,
        };
        let mut per_face = Vec::new();
        let classify = tracing::info_span!("classify", faces = faces_n);
        for r in futures::future::join_all(futures).instrument(classify).await {
            let (face, scored) = r?;
            let longer_side = (face.x2 - face.x1).max(face.y2 - face.y1);
            let judgement = Judgement::face(scored.score, longer_side, self.min_face_size, small, &classifier.bands);
            per_face.push(FaceResult {
                bbox: [face.x1, face.y1, face.x2, face.y2],
                confidence: face.confidence,
                score: scored.score,
                label: Label::for_score(scored.score, opts.threshold),
                judgement,
                raw_score: scored.raw,
                members: scored.members,
            });
        }
        t.classify_ms = ms(t3.elapsed());
        let scores: Vec<f32> = per_face.iter().map(|f| f.score).collect();
        let (status, score, label) = verdict::outcome(aggregate(&scores), opts.threshold);
        let judged: Vec<f32> = per_face.iter().filter(|f| f.judgement.reason.is_none()).map(|f| f.score).collect();
        let unjudged = (!per_face.is_empty()).then_some(small);
        let judgement = Judgement::image(&judged, unjudged, &opts.classifier.bands);
        t.total_ms = ms(started.elapsed());
        Ok(ImageResult {
            width,
            height,
            status,
            score,
            label,
            threshold: opts.threshold,
            judgement,
            faces: per_face,
            timings: t,
            pixels,
        })
    }
}

/// A decoded picture's faces (or the whole picture, in `whole` mode), each with one model row per
/// input spec asked for.
struct Prepared {
    width: u32,
    height: u32,
    faces: Vec<(FaceBox, Vec<Vec<f32>>)>,
    /// The decoded picture, when asked to keep it.
    pixels: Option<Arc<RgbImage>>,
}

impl ImagePipeline {
    /// Decode, detect and crop: everything before the classifier, shared by scoring and by
    /// `dfserve embed`, so a head is trained on exactly the crops it is served. In `whole` mode
    /// the caller has checked the capacity of the queues the rows go to.
    async fn prepare(
        &self,
        picture: Picture,
        inputs: &[InputConfig],
        mode: Mode,
        keep_pixels: bool,
        deadline: Instant,
        t: &mut ImageTimings,
    ) -> Result<Prepared, CoreError> {
        let started = Instant::now();
        // Refuse at once, before decoding, when the detector's queue is already full.
        let first_inputs: Vec<InputConfig> = match mode {
            Mode::Faces => {
                self.detector.model.batcher.check_capacity()?;
                vec![self.detector.model.config.input.clone()]
            }
            Mode::Whole => inputs.to_vec(),
        };
        let permit = match &picture {
            Picture::Encoded(bytes) => Some(self.admit_decode(bytes)?),
            Picture::Decoded(_) => None,
        };

        // Decode, plus the first model input (detector, or classifier in whole mode).
        let limits = DecodeLimits { max_pixels: self.max_image_pixels };
        let metrics = self.metrics.clone();
        let first_stage = if mode == Mode::Faces { "detect_preprocess" } else { "classify_preprocess" };
        // The permit stays with this request until it is answered: it covers the decoder's
        // buffers and then the decoded pixels, which live until the last crop is cut.
        let (img, mut first_rows, _permit) = blocking(move || {
            let img = match picture {
                Picture::Encoded(bytes) => {
                    let t0 = Instant::now();
                    let img = Arc::new(decode_rgb(&bytes, limits)?);
                    metrics.stage_seconds.with_label_values(&["decode"]).observe(t0.elapsed().as_secs_f64());
                    img
                }
                Picture::Decoded(img) => img,
            };
            let t1 = Instant::now();
            let rows: Vec<Vec<f32>> = first_inputs.iter().map(|i| model_input(&img, Region::whole(&img), i)).collect();
            metrics.stage_seconds.with_label_values(&[first_stage]).observe(t1.elapsed().as_secs_f64());
            Ok::<_, CoreError>((img, rows, permit))
        })
        .instrument(tracing::info_span!("decode"))
        .await?;
        t.decode_ms = ms(started.elapsed());
        let (width, height) = img.dimensions();
        let pixels = keep_pixels.then(|| img.clone());

        let faces: Vec<(FaceBox, Vec<Vec<f32>>)> = match mode {
            Mode::Whole => {
                let whole = FaceBox { x1: 0.0, y1: 0.0, x2: width as f32, y2: height as f32, confidence: 1.0 };
                vec![(whole, first_rows)]
            }
            Mode::Faces => {
                let t0 = Instant::now();
                let detect = self.detector.model.batcher.infer(first_rows.pop().unwrap_or_default(), deadline);
                let det = detect.instrument(tracing::info_span!("detect")).await?;
                let t1 = Instant::now();
                let boxes = self.detector.faces(&det, width, height);
                let decoded = t1.elapsed();
                self.metrics.stage_seconds.with_label_values(&["detect_postprocess"]).observe(decoded.as_secs_f64());
                t.detect_ms = ms(t0.elapsed());
                self.metrics.faces.inc_by(boxes.len() as u64);

                let t2 = Instant::now();
                let cls_inputs = inputs.to_vec();
                let (margin, border) = (self.crop_margin, self.crop_border);
                let metrics = self.metrics.clone();
                let crops = blocking(move || {
                    let t0 = Instant::now();
                    let crops = face_rows(&img, boxes, &cls_inputs, margin, border);
                    metrics.stage_seconds.with_label_values(&["crop"]).observe(t0.elapsed().as_secs_f64());
                    Ok::<_, CoreError>(crops)
                })
                .instrument(tracing::info_span!("crop"))
                .await?;
                t.crop_ms = ms(t2.elapsed());
                crops
            }
        };
        Ok(Prepared { width, height, faces, pixels })
    }

    /// The embedding `encoder` gives each face of a picture (or the whole picture), from the
    /// same decode, detection and crops as scoring: what `dfserve embed` writes for training.
    pub async fn embed(
        &self,
        picture: Picture,
        encoder: &LoadedModel,
        output: usize,
        mode: Mode,
        deadline: Instant,
    ) -> Result<Embedded, CoreError> {
        let mut t = ImageTimings::default();
        let inputs = [encoder.config.input.clone()];
        if mode == Mode::Whole {
            encoder.batcher.check_capacity()?;
        }
        let Prepared { width, height, faces, .. } =
            self.prepare(picture, &inputs, mode, false, deadline, &mut t).await?;
        let runs = faces.into_iter().map(|(face, mut rows)| async move {
            let out = encoder.batcher.infer(rows.pop().unwrap_or_default(), deadline).await?;
            Ok::<_, CoreError>((face, out.rows[output].clone()))
        });
        let faces = futures::future::try_join_all(runs).await?;
        Ok(Embedded { width, height, faces })
    }
}

/// A picture's faces with their embeddings (see [`ImagePipeline::embed`]).
pub struct Embedded {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<(FaceBox, Vec<f32>)>,
}

impl ImagePipeline {
    /// Takes this upload's share of the decode budget: its megapixels as its header declares
    /// them (at least 1, at most the per-image limit), or 429 `busy` when they are not free.
    /// The permit is held until the request is answered, and until the decode ends even if the
    /// request goes away first.
    fn admit_decode(&self, bytes: &[u8]) -> Result<tokio::sync::OwnedSemaphorePermit, CoreError> {
        let pixels = crate::pipeline::decode::dimensions(bytes).map_or(0, |(w, h)| w as u64 * h as u64);
        let units = pixels.min(self.max_image_pixels).div_ceil(1_000_000).max(1) as u32;
        self.decode_budget.clone().try_acquire_many_owned(units).map_err(|_| {
            CoreError::Busy(
                "too many images are being decoded at once (--max-decoding-megapixels); retry shortly".into(),
            )
        })
    }
}

/// Runs CPU-bound work on the blocking pool. A panic in image code becomes a 500-class error
/// for this request only.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(CoreError::Inference(format!("image processing task failed: {e}"))))
}
