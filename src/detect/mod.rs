//! The detect layer: one protocol-neutral entry point under every front end that scores media
//! (HTTP `/v1/detect`, the dfserve gRPC API, the KServe pipeline model, `dfserve score`).
//!
//! A front end translates its wire format into [`DetectParams`], has them validated once
//! ([`Detector::options`]), and hands each upload to [`Detector::detect`], which tells images
//! from videos by their bytes, admits the request, bounds it by its deadline and returns one
//! [`Detection`]. Front ends then only render that result or its error. Signals that later
//! hang off a detection (ensembles, hash matches, provenance) are added here, once.

pub mod audit;
mod request;
mod video;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::core::{ImageResult, InferCore, Picture};
use crate::error::CoreError;
use crate::hashing::{pdq::Pdq, vpdq};
use crate::hashlists::{HashLists, Match, Probe};
use crate::provenance::{Provenance, ProvenanceReader};
use crate::verdict::{Label, Status};
use crate::video::{Container, Sniffed, VideoDecoder};
pub use request::{DetectOptions, DetectParams};
pub use video::{VideoResult, VideoTimings};

/// The result for one upload: an image or a video.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Detection {
    Image(DetectedImage),
    Video(VideoResult),
}

/// An image as the core scored it, with the signals this layer adds: hash-list matches and
/// provenance. (The core knows nothing of either; it only hands back the decoded pixels when
/// asked, for the PDQ hash.) Reads as its [`ImageResult`] through `Deref`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectedImage {
    #[serde(flatten)]
    pub scored: ImageResult,
    /// Known content this upload matched (hash lists).
    pub matches: Vec<Match>,
    /// With lists in PostgreSQL: the change-feed position of the index the matches were found
    /// in (the matches hold as of that change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashlist_position: Option<i64>,
    /// C2PA Content Credentials of the upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Box<Provenance>>,
}

impl std::ops::Deref for DetectedImage {
    type Target = ImageResult;
    fn deref(&self) -> &ImageResult {
        &self.scored
    }
}

impl Detection {
    /// `image` or `video`.
    pub fn kind(&self) -> &'static str {
        match self {
            Detection::Image(_) => "image",
            Detection::Video(_) => "video",
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Detection::Image(r) => r.status,
            Detection::Video(v) => v.status,
        }
    }

    pub fn score(&self) -> Option<f32> {
        match self {
            Detection::Image(r) => r.score,
            Detection::Video(v) => v.score,
        }
    }

    pub fn label(&self) -> Option<Label> {
        match self {
            Detection::Image(r) => r.label,
            Detection::Video(v) => v.label,
        }
    }

    pub fn judgement(&self) -> crate::verdict::Judgement {
        match self {
            Detection::Image(r) => r.judgement,
            Detection::Video(v) => v.judgement,
        }
    }
}

/// The detect layer: the inference core plus what only uploads need (video decoding).
pub struct Detector {
    core: Arc<InferCore>,
    video: VideoDecoder,
    /// Known-content lists every upload is matched against (none in `dfserve score`).
    hashlists: Option<Arc<HashLists>>,
    /// Reads C2PA manifests of every upload, beside (never into) the score.
    provenance: Option<Arc<ProvenanceReader>>,
}

impl Detector {
    pub fn new(core: Arc<InferCore>, video: VideoDecoder) -> Detector {
        Detector { core, video, hashlists: None, provenance: None }
    }

    /// Matches every upload against `lists` too.
    pub fn with_hashlists(mut self, lists: Arc<HashLists>) -> Detector {
        self.hashlists = Some(lists);
        self
    }

    /// Reports every upload's C2PA provenance too.
    pub fn with_provenance(mut self, reader: Arc<ProvenanceReader>) -> Detector {
        self.provenance = Some(reader);
        self
    }

    pub fn hashlists(&self) -> Option<&Arc<HashLists>> {
        self.hashlists.as_ref()
    }

    pub fn core(&self) -> &Arc<InferCore> {
        &self.core
    }

    /// Validates a request's options (see [`DetectParams::validate`]).
    pub fn options(&self, params: &DetectParams) -> Result<DetectOptions, CoreError> {
        params.validate(&self.core)
    }

    /// Scores one upload, image or video, told apart by its bytes. Manifests and playlists
    /// (which name other resources) are refused before anything reads them.
    pub async fn detect(&self, bytes: Bytes, opts: &DetectOptions, deadline: Instant) -> Result<Detection, CoreError> {
        match crate::video::sniff(&bytes) {
            Sniffed::Video(container) => {
                let (v, provenance) =
                    tokio::join!(self.detect_video(bytes.clone(), container, opts, deadline), self.provenance(&bytes));
                let mut v = v?;
                (v.matches, v.hashlist_position) = self.matches(&bytes, Vec::new(), std::mem::take(&mut v.vpdq)).await;
                v.provenance = provenance.map(Box::new);
                Ok(Detection::Video(v))
            }
            Sniffed::Refused(why) => {
                self.core.metrics.videos.with_label_values(&["error"]).inc();
                Err(CoreError::UndecodableVideo(why.into()))
            }
            Sniffed::Other => self.detect_image(bytes, opts, deadline).await.map(Detection::Image),
        }
    }

    /// Scores one encoded image (the KServe pipeline model takes only images).
    pub async fn detect_image(
        &self,
        bytes: Bytes,
        opts: &DetectOptions,
        deadline: Instant,
    ) -> Result<DetectedImage, CoreError> {
        let started = Instant::now();
        let mut image_opts = opts.image.clone();
        image_opts.keep_pixels = self.hashlists.as_ref().is_some_and(|l| l.wants_pdq());
        let picture = Picture::Encoded(bytes.clone());
        let scored = self.admitted(deadline, self.core.score_picture(picture, &image_opts, deadline));
        let (scored, provenance) = tokio::join!(scored, self.provenance(&bytes));
        let result = match scored {
            Ok(mut scored) => {
                let pdq = match scored.pixels.take() {
                    Some(img) => self.pdq(img).await,
                    None => Vec::new(),
                };
                let (matches, hashlist_position) = self.matches(&bytes, pdq, Vec::new()).await;
                Ok(DetectedImage { scored, matches, hashlist_position, provenance: provenance.map(Box::new) })
            }
            Err(e) => Err(e),
        };
        // For the pipeline, one image is one inference and one execution.
        let stats = self.core.pipeline_stats();
        stats.record_request(result.is_ok(), started.elapsed());
        if result.is_ok() {
            stats.record_execution(1, started.elapsed());
        }
        let word = result.as_ref().map_or("error", |r| r.word());
        self.core.metrics.images.with_label_values(&[word]).inc();
        result
    }

    /// Every hash of an upload, for adding it to a hash list: the digests, and PDQ (image) or
    /// vPDQ (video, decoded by the same confined FFmpeg as scoring).
    pub async fn hashes(&self, bytes: Bytes) -> Result<crate::hashing::FileHashes, CoreError> {
        let max_pixels = self.core.settings().max_image_pixels;
        let mut h = crate::hashing::hash_upload(&self.video, String::new(), bytes, max_pixels, false)
            .await
            .map_err(|(_, e)| e)?;
        match h.error.take() {
            Some(e) => Err(CoreError::UndecodableImage(e)),
            None => Ok(h),
        }
    }

    /// The upload's C2PA provenance, when this detector reads it.
    async fn provenance(&self, bytes: &Bytes) -> Option<Provenance> {
        let reader = self.provenance.as_ref()?;
        Some(reader.read(bytes.clone()).await)
    }

    /// The PDQ hash of decoded pixels, off the async workers.
    /// The image's PDQ, and its seven other dihedral variants when the rules match on them
    /// (from the same DCT: they cost eight medians, not eight hashes).
    async fn pdq(&self, img: Arc<image::RgbImage>) -> Vec<Pdq> {
        let metrics = self.core.metrics.clone();
        let dihedral = self.hashlists.as_ref().is_some_and(|l| l.rules.pdq_dihedral);
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let h = match dihedral {
                true => crate::hashing::pdq::pdq_dihedral(&img).to_vec(),
                false => vec![crate::hashing::pdq::pdq(&img)],
            };
            metrics.stage_seconds.with_label_values(&["pdq"]).observe(t.elapsed().as_secs_f64());
            h
        })
        .await
        .unwrap_or_default()
    }

    /// The upload's matches in the hash lists (digests hashed off the async workers), and the
    /// index's position in the change feed (PostgreSQL only).
    async fn matches(&self, bytes: &Bytes, pdq: Vec<Pdq>, vpdq: Vec<vpdq::Feature>) -> (Vec<Match>, Option<i64>) {
        let Some(lists) = self.hashlists.clone() else { return (Vec::new(), None) };
        if lists.is_empty() {
            return (Vec::new(), lists.feed_state().map(|f| f.position));
        }
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || {
            let vpdq = (!vpdq.is_empty()).then_some(&vpdq[..]);
            lists.matches_at(&Probe { bytes: &bytes, pdq: &pdq, vpdq })
        })
        .await
        .unwrap_or_default()
    }

    async fn detect_video(
        &self,
        bytes: Bytes,
        container: Container,
        opts: &DetectOptions,
        deadline: Instant,
    ) -> Result<VideoResult, CoreError> {
        let started = Instant::now();
        let hash = self.hashlists.as_ref().is_some_and(|l| l.wants_vpdq());
        let work = video::score_video(&self.core, &self.video, bytes, container, opts, hash, deadline);
        let result = self.admitted(deadline, work).await;
        let word = result.as_ref().map_or("error", |v| v.word());
        let m = &self.core.metrics;
        m.videos.with_label_values(&[word]).inc();
        m.stage_seconds.with_label_values(&["video_total"]).observe(started.elapsed().as_secs_f64());
        result
    }

    /// `work` if the core admits it now (503 while warming up or draining), or 504 once
    /// `deadline` passes (dropping `work` cancels it).
    async fn admitted<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        self.core.admit()?;
        tokio::time::timeout_at(deadline.into(), work)
            .await
            .unwrap_or(Err(CoreError::DeadlineExceeded(self.core.settings().request_timeout)))
    }
}
