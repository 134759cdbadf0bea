//! `dfserve.v1.Detector`: the typed gRPC twin of `POST /v1/detect`.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::pb::dfserve_v1 as pb;
use super::pb::dfserve_v1::detector_server::Detector as DetectorService;
use super::{observed, to_status};
use crate::core::{DetectOptions, ImageResult, InferCore, Label, Mode};
use crate::error::CoreError;
use crate::video::{self, Aggregation, Sampling, VideoOptions, VideoResult};

/// Images of one stream scored at the same time; results still leave in request order.
const STREAM_CONCURRENCY: usize = 16;

pub struct Detector {
    pub core: Arc<InferCore>,
}

fn options(r: &pb::DetectRequest) -> DetectOptions {
    DetectOptions {
        model: if r.model.is_empty() { None } else { Some(r.model.clone()) },
        threshold: r.threshold,
        mode: if r.mode == pb::Mode::Whole as i32 { Mode::Whole } else { Mode::Faces },
    }
}

fn label(l: Label) -> String {
    l.as_str().to_string()
}

fn to_response(id: String, core: &InferCore, opts: &DetectOptions, r: ImageResult) -> pb::DetectResponse {
    let (model, model_version) = core.classifier_identity(opts.model.as_deref()).unwrap_or_default();
    pb::DetectResponse {
        id,
        model,
        model_version,
        width: r.width,
        height: r.height,
        status: r.status.as_str().into(),
        score: r.score,
        label: r.label.map(label).unwrap_or_default(),
        threshold: r.threshold,
        faces: r
            .faces
            .into_iter()
            .map(|f| pb::Face {
                x1: f.bbox[0],
                y1: f.bbox[1],
                x2: f.bbox[2],
                y2: f.bbox[3],
                confidence: f.confidence,
                score: f.score,
                label: label(f.label),
            })
            .collect(),
        timings: Some(pb::Timings {
            decode_ms: r.timings.decode_ms,
            queue_ms: r.timings.queue_ms,
            inference_ms: r.timings.inference_ms,
            total_ms: r.timings.total_ms,
        }),
        error: String::new(),
        error_code: String::new(),
        kind: "image".into(),
        video: None,
    }
}

fn face(bbox: [f32; 4], confidence: f32, score: f32, threshold: f32) -> pb::Face {
    let label = if score >= threshold { Label::Manipulated } else { Label::Authentic };
    pb::Face { x1: bbox[0], y1: bbox[1], x2: bbox[2], y2: bbox[3], confidence, score, label: self::label(label) }
}

fn video_response(id: String, core: &InferCore, opts: &DetectOptions, v: VideoResult) -> pb::DetectResponse {
    let (model, model_version) = core.classifier_identity(opts.model.as_deref()).unwrap_or_default();
    let threshold = v.threshold;
    pb::DetectResponse {
        id,
        model,
        model_version,
        width: v.width,
        height: v.height,
        status: v.status.as_str().into(),
        score: v.score,
        label: v.label.map(label).unwrap_or_default(),
        threshold,
        kind: "video".into(),
        timings: Some(pb::Timings {
            total_ms: v.timings.total_ms,
            decode_ms: v.timings.decode_ms,
            ..Default::default()
        }),
        video: Some(pb::Video {
            duration_s: v.duration_s,
            fps: v.fps,
            codec: v.codec,
            frames_sampled: v.frames_sampled as u32,
            frames_with_faces: v.frames_with_faces as u32,
            aggregation: serde_json::to_value(v.aggregation)
                .ok()
                .and_then(|a| a.as_str().map(str::to_string))
                .unwrap_or_default(),
            tracks: v
                .tracks
                .into_iter()
                .map(|t| pb::Track {
                    id: t.id as u32,
                    score: t.score,
                    frames: t
                        .frames
                        .into_iter()
                        .map(|f| pb::TrackFrame {
                            frame: f.frame,
                            time_s: f.time_s,
                            face: Some(face(f.bbox, f.confidence, f.score, threshold)),
                        })
                        .collect(),
                })
                .collect(),
            probe_ms: v.timings.probe_ms,
            decode_ms: v.timings.decode_ms,
        }),
        ..Default::default()
    }
}

async fn detect_one(core: &InferCore, req: pb::DetectRequest) -> Result<pb::DetectResponse, (String, CoreError)> {
    let opts = options(&req);
    let deadline = core.request_deadline();
    if video::is_video(&req.image) {
        let sampling = match (req.video_frames, req.video_fps) {
            (0, None) => None,
            (_, Some(r)) if r > 0.0 && r.is_finite() => Some(Sampling::Rate(r)),
            (_, Some(r)) => {
                return Err((req.id, CoreError::BadRequest(format!("video_fps must be positive, got {r}"))))
            }
            (n, None) => Some(Sampling::Count(n as usize)),
        };
        let aggregation = if req.aggregation.is_empty() {
            Aggregation::default()
        } else {
            match req.aggregation.parse() {
                Ok(a) => a,
                Err(e) => return Err((req.id, CoreError::BadRequest(e))),
            }
        };
        let vopts = VideoOptions { image: opts.clone(), sampling, aggregation };
        return match video::detect_video(core, req.image, &vopts, deadline).await {
            Ok(v) => Ok(video_response(req.id, core, &opts, v)),
            Err(e) => Err((req.id, e)),
        };
    }
    match core.detect(req.image, &opts, deadline).await {
        Ok(r) => Ok(to_response(req.id, core, &opts, r)),
        Err(e) => Err((req.id, e)),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::DetectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DetectorService for Detector {
    async fn detect(&self, r: Request<pb::DetectRequest>) -> Result<Response<pb::DetectResponse>, Status> {
        observed(&self.core, "/dfserve.v1.Detector/Detect", async {
            detect_one(&self.core, r.into_inner()).await.map(Response::new).map_err(|(_, e)| to_status(e))
        })
        .await
    }

    type DetectStreamStream = ResponseStream;

    /// Per-image failures come back as `status: "error"` entries so one bad image does not end
    /// the stream; a broken stream (bad message) ends it with that status.
    async fn detect_stream(
        &self,
        r: Request<Streaming<pb::DetectRequest>>,
    ) -> Result<Response<Self::DetectStreamStream>, Status> {
        let core = self.core.clone();
        let metrics = self.core.metrics.clone();
        metrics.requests.with_label_values(&["/dfserve.v1.Detector/DetectStream", "Ok"]).inc();
        let out = r
            .into_inner()
            .map(move |msg| {
                let core = core.clone();
                async move {
                    let req = msg?;
                    Ok(match detect_one(&core, req).await {
                        Ok(resp) => resp,
                        Err((id, e)) => pb::DetectResponse {
                            id,
                            status: "error".into(),
                            error: e.to_string(),
                            error_code: e.code().into(),
                            ..Default::default()
                        },
                    })
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(out)))
    }
}
