//! A video through the detect layer: FFmpeg samples frames (`crate::video`), every frame is
//! scored by the core's image pipeline, and faces are linked into tracks whose scores make the
//! video's verdict.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use super::request::DetectOptions;
use crate::core::image::ms;
use crate::core::{InferCore, Picture};
use crate::error::CoreError;
use crate::verdict::{self, Label, Status};
use crate::video::{self, track, Aggregation, VideoSettings};

/// Wall time of each stage of one video, in milliseconds; the stages run one after another.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VideoTimings {
    /// Writing the upload to a private file and reading its metadata with ffprobe.
    pub probe_ms: f64,
    /// Decoding the sampled frames with FFmpeg.
    pub decode_ms: f64,
    /// Scoring every sampled frame (side by side, through the shared batchers).
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
    /// `ok` or `no_face`.
    pub status: Status,
    /// Highest track score; null when no frame had a face.
    pub score: Option<f32>,
    pub label: Option<Label>,
    pub threshold: f32,
    pub tracks: Vec<track::Track>,
    pub timings: VideoTimings,
}

/// Scores one uploaded video. The caller has admitted the request and bounds it with `deadline`.
pub(super) async fn score_video(
    core: &InferCore,
    settings: &VideoSettings,
    bytes: Bytes,
    opts: &DetectOptions,
    deadline: Instant,
) -> Result<VideoResult, CoreError> {
    let started = Instant::now();
    let sampled = video::sample_frames(bytes, opts.sampling, settings).await?;
    let p = sampled.probe;
    core.metrics.stage_seconds.with_label_values(&["video_decode"]).observe(sampled.decode_time.as_secs_f64());
    core.metrics.video_frames.inc_by(sampled.frames.len() as u64);

    // Every frame goes through the shared batchers at once, so frames of this video and of
    // other requests share model runs.
    let t0 = Instant::now();
    let futures = sampled.frames.into_iter().map(|(idx, img)| async move {
        core.score_picture(Picture::Decoded(Arc::new(img)), &opts.image, deadline).await.map(|r| (idx, r))
    });
    let scored = futures::future::join_all(futures).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let score_ms = ms(t0.elapsed());
    let frames_sampled = scored.len();
    let frames_with_faces = scored.iter().filter(|(_, r)| !r.faces.is_empty()).count();
    let observations: Vec<track::FrameFaces> = scored
        .into_iter()
        .map(|(idx, r)| track::FrameFaces {
            frame: idx,
            time_s: idx as f64 / p.fps,
            faces: r.faces.iter().map(|f| (f.bbox, f.confidence, f.score)).collect(),
        })
        .collect();
    let tracks = track::build_tracks(&observations, 0.3, opts.aggregation);
    let threshold = opts.image.threshold;
    let (status, score, label) = verdict::outcome(tracks.iter().map(|t| t.score).reduce(f32::max), threshold);
    Ok(VideoResult {
        duration_s: p.duration,
        fps: p.fps,
        width: p.width,
        height: p.height,
        codec: p.codec,
        frames_sampled,
        frames_with_faces,
        aggregation: opts.aggregation,
        status,
        score,
        label,
        threshold,
        tracks,
        timings: VideoTimings {
            probe_ms: ms(sampled.probe_time),
            decode_ms: ms(sampled.decode_time),
            score_ms,
            total_ms: ms(started.elapsed()),
        },
    })
}
