//! A video through the detect layer: FFmpeg streams the sampled frames (`crate::video`), each
//! frame is scored by the core's image pipeline as soon as it arrives, and faces are linked
//! into tracks whose scores make the video's verdict.
//!
//! At most `--video-frames-in-flight` frames of one video are decoded and not yet scored: the
//! next frame is read from FFmpeg only when a slot frees up, and FFmpeg blocks on its pipe
//! meanwhile. So a video's frames never pile up in memory, whatever their number or size.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::request::DetectOptions;
use crate::core::image::ms;
use crate::core::{ImageResult, InferCore, Picture};
use crate::error::CoreError;
use crate::hashing::{frame_feature, vpdq};
use crate::verdict::{self, Judgement, Label, Reason, Status};
use crate::video::{track, Aggregation, Container, VideoDecoder};

/// Wall time of each stage of one video, in milliseconds; the stages follow one another.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VideoTimings {
    /// Storing the upload in a private file and reading its metadata with ffprobe.
    pub probe_ms: f64,
    /// From the start of decoding until FFmpeg delivered the last sampled frame. Frames are
    /// scored while later ones decode, so most scoring happens inside this span.
    pub decode_ms: f64,
    /// From the last decoded frame until the last frame's score.
    pub score_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoResult {
    pub duration_s: f64,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub frames_sampled: usize,
    pub frames_with_faces: usize,
    pub aggregation: Aggregation,
    /// How the samples were decoded: `sequential`, `sequential_ref_frames` or `seek`.
    pub sampling: &'static str,
    /// `ok` or `no_face`.
    pub status: Status,
    /// Highest track score; null when no frame had a face.
    pub score: Option<f32>,
    pub label: Option<Label>,
    pub threshold: f32,
    /// What to act on, from the face tracks large enough to judge (see `Judgement::image`).
    #[serde(flatten)]
    pub judgement: Judgement,
    /// Known content this upload matched (hash lists: vPDQ and exact digests for videos).
    pub matches: Vec<crate::hashlists::Match>,
    /// As for images ([`super::DetectedImage::hashlist_position`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashlist_position: Option<i64>,
    /// C2PA Content Credentials of the upload (MP4 and MOV).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Box<crate::provenance::Provenance>>,
    /// The video's vPDQ, when a hash list needed it (matching only; not reported).
    #[serde(skip)]
    pub vpdq: Vec<vpdq::Feature>,
    pub tracks: Vec<track::Track>,
    pub timings: VideoTimings,
}

impl VideoResult {
    /// `manipulated`, `authentic` or `no_face`.
    pub fn word(&self) -> &'static str {
        verdict::word(self.status, self.label)
    }
}

type Scored = (u64, f64, ImageResult);

/// What one sampled frame gave: a score, a vPDQ frame hash, or both.
struct Sampled {
    scored: Option<Scored>,
    hashed: Option<vpdq::Feature>,
}

/// Scores one uploaded video, and computes its vPDQ when `hash` is set. The caller has
/// admitted the request and bounds it with `deadline`.
pub(super) async fn score_video(
    core: &Arc<InferCore>,
    decoder: &VideoDecoder,
    bytes: Bytes,
    container: Container,
    opts: &DetectOptions,
    hash: bool,
    deadline: Instant,
) -> Result<VideoResult, CoreError> {
    let started = Instant::now();
    let mut video = decoder.open(bytes, container, opts.sampling, hash.then_some(1.0), deadline).await?;
    let slots = Arc::new(Semaphore::new(decoder.settings().frames_in_flight.max(1)));
    // Dropping the set (the request went away) aborts every frame still being scored.
    let mut tasks: JoinSet<Result<Sampled, CoreError>> = JoinSet::new();
    let (mut scored, mut hashes) = (Vec::new(), Vec::new());
    let mut keep = |s: Sampled| {
        scored.extend(s.scored);
        hashes.extend(s.hashed);
    };
    loop {
        let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        let Some(frame) = video.next_frame().await? else { break };
        let (core, image_opts) = (core.clone(), opts.image.clone());
        tasks.spawn(async move {
            let image = Arc::new(frame.image);
            // A frame sampled for both is hashed while it is scored.
            let hashed = async {
                match frame.hash {
                    true => frame_feature(image.clone(), frame.time_s).await.map(Some),
                    false => Ok(None),
                }
            };
            let scored = async {
                match frame.score {
                    true => core
                        .score_picture(Picture::Decoded(image.clone()), &image_opts, deadline)
                        .await
                        .map(|r| Some((frame.index, frame.time_s, r))),
                    false => Ok(None),
                }
            };
            let (hashed, scored) = tokio::join!(hashed, scored);
            drop(slot);
            Ok(Sampled { scored: scored?, hashed: hashed? })
        });
        // A frame that failed (overload, deadline) fails the video now, not after decoding.
        while let Some(done) = tasks.try_join_next() {
            keep(joined(done)?);
        }
    }
    let decode_ms = ms(video.decode_started.elapsed());
    core.metrics.stage_seconds.with_label_values(&["video_decode"]).observe(decode_ms / 1e3);
    let (p, (sx, sy), strategy, probe_time) = (video.probe.clone(), video.scale, video.strategy, video.probe_time);
    // FFmpeg has finished: free its budget slot and the temporary file before the last scores.
    drop(video);
    let t0 = Instant::now();
    while let Some(done) = tasks.join_next().await {
        keep(joined(done)?);
    }
    hashes.sort_by(|a: &vpdq::Feature, b| a.time_s.total_cmp(&b.time_s));
    let score_ms = ms(t0.elapsed());
    if scored.is_empty() {
        return Err(CoreError::UndecodableVideo("no frame could be decoded from the video".into()));
    }
    scored.sort_by_key(|(index, ..)| *index);
    core.metrics.video_frames.inc_by(scored.len() as u64);
    let frames_sampled = scored.len();
    let frames_with_faces = scored.iter().filter(|(.., r)| !r.faces.is_empty()).count();
    // Boxes back in pixels of the video as uploaded (frames were scaled down inside FFmpeg).
    let upright = |b: [f32; 4]| [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
    let observations: Vec<track::FrameFaces> = scored
        .into_iter()
        .map(|(frame, time_s, r)| track::FrameFaces {
            frame,
            time_s,
            faces: r.faces.iter().map(|f| (upright(f.bbox), f.confidence, f.score)).collect(),
        })
        .collect();
    let tracks = track::build_tracks(&observations, 0.3, opts.aggregation);
    let threshold = opts.image.threshold;
    let (status, score, label) = verdict::outcome(tracks.iter().map(|t| t.score).reduce(f32::max), threshold);
    // A track is judged when its faces, as scored (in the scaled-down frames), are on average
    // at least --min-face-size on their longer side.
    let scale = sx.max(sy).max(f32::MIN_POSITIVE);
    let min_size = core.settings().min_face_size as f32;
    let judged: Vec<f32> = tracks
        .iter()
        .filter(|t| {
            let sides: f32 = t.frames.iter().map(|f| (f.bbox[2] - f.bbox[0]).max(f.bbox[3] - f.bbox[1])).sum();
            sides / t.frames.len().max(1) as f32 / scale >= min_size
        })
        .map(|t| t.score)
        .collect();
    let unjudged = (!tracks.is_empty()).then_some(Reason::FaceTooSmall);
    let judgement = Judgement::image(&judged, unjudged, &opts.image.classifier.bands);
    Ok(VideoResult {
        duration_s: p.duration,
        fps: p.fps,
        width: p.width,
        height: p.height,
        codec: p.codec,
        frames_sampled,
        frames_with_faces,
        aggregation: opts.aggregation,
        sampling: strategy.as_str(),
        status,
        score,
        label,
        threshold,
        judgement,
        matches: Vec::new(),
        hashlist_position: None,
        provenance: None,
        vpdq: hashes,
        tracks,
        timings: VideoTimings { probe_ms: ms(probe_time), decode_ms, score_ms, total_ms: ms(started.elapsed()) },
    })
}

fn joined(done: Result<Result<Sampled, CoreError>, tokio::task::JoinError>) -> Result<Sampled, CoreError> {
    done.unwrap_or_else(|e| Err(CoreError::Inference(format!("frame scoring task failed: {e}"))))
}
