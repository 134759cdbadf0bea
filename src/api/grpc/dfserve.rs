//! `dfserve.v1.Detector`: the typed gRPC twin of `POST /v1/detect`. Wire translation only: a
//! `DetectRequest` becomes [`DetectParams`], the detect layer scores the bytes, and its
//! [`Detection`] becomes a `DetectResponse`.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::pb::dfserve_v1 as pb;
use super::pb::dfserve_v1::detector_server::Detector as DetectorService;
use super::status::to_status;
use crate::core::{FaceResult, ImageResult};
use crate::detect::audit::{self, AuditRecord};
use crate::detect::{DetectOptions, DetectParams, Detection, Detector, VideoResult};
use crate::error::CoreError;
use crate::verdict::{Judgement, Label};

/// Images of one stream scored at the same time; results still leave in request order.
const STREAM_CONCURRENCY: usize = 16;

pub struct DetectorApi {
    pub detector: Arc<Detector>,
    /// A stream whose client sends nothing for this long is ended with DEADLINE_EXCEEDED.
    pub stream_idle_timeout: std::time::Duration,
}

/// The request's options as the detect layer takes them. proto3 has no "unset" for plain
/// scalars, so the empty string and 0 mean "not given".
fn params(r: &pb::DetectRequest) -> DetectParams {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mode = match pb::Mode::try_from(r.mode) {
        Ok(pb::Mode::Faces) => None,
        Ok(pb::Mode::Whole) => Some("whole".to_string()),
        Err(_) => Some(r.mode.to_string()),
    };
    DetectParams {
        model: text(&r.model),
        threshold: r.threshold,
        mode,
        frames: (r.video_frames > 0).then_some(r.video_frames as usize),
        fps: r.video_fps,
        aggregation: text(&r.aggregation),
        audit: r.audit,
    }
}

fn audit_message(a: AuditRecord) -> pb::Audit {
    pb::Audit {
        upload_sha256: a.upload_sha256,
        dfserve_version: a.dfserve_version.into(),
        classifier: a.classifier,
        classifier_version: a.classifier_version,
        classifier_kind: a.classifier_kind.into(),
        combine: a.combine.unwrap_or_default().into(),
        models: a
            .models
            .into_iter()
            .map(|m| pb::AuditModel {
                name: m.name,
                version: m.version,
                sha256: m.sha256,
                role: m.role.into(),
                weight: m.weight.unwrap_or(0.0),
                encoder: m.encoder.unwrap_or_default(),
            })
            .collect(),
        calibration_a: a.calibration.as_ref().map(|c| c.a),
        calibration_b: a.calibration.as_ref().map(|c| c.b),
        threshold: a.threshold,
        authentic_below: a.bands.authentic_below,
        manipulated_from: a.bands.manipulated_from,
        min_face_size: a.min_face_size,
        mode: a.mode.as_str().into(),
    }
}

fn face(bbox: [f32; 4], confidence: f32, score: f32, label: Label) -> pb::Face {
    let [x1, y1, x2, y2] = bbox;
    pb::Face { x1, y1, x2, y2, confidence, score, label: label.as_str().into(), ..Default::default() }
}

fn judged_face(f: FaceResult) -> pb::Face {
    let (verdict, reason) = judgement_words(&f.judgement);
    pb::Face {
        verdict,
        verdict_reason: reason,
        raw_score: f.raw_score,
        members: f.members.into_iter().map(|m| pb::MemberScore { model: m.model, score: m.score }).collect(),
        ..face(f.bbox, f.confidence, f.score, f.label)
    }
}

fn judgement_words(j: &Judgement) -> (String, String) {
    (j.verdict.as_str().into(), j.reason.map_or("", |r| r.as_str()).into())
}

fn image_fields(r: ImageResult, resp: &mut pb::DetectResponse) {
    let t = &r.timings;
    resp.timings = Some(pb::Timings {
        decode_ms: t.decode_ms,
        detect_ms: t.detect_ms,
        crop_ms: t.crop_ms,
        classify_ms: t.classify_ms,
        total_ms: t.total_ms,
        ..Default::default()
    });
    (resp.width, resp.height) = (r.width, r.height);
    (resp.verdict, resp.verdict_reason) = judgement_words(&r.judgement);
    resp.faces = r.faces.into_iter().map(judged_face).collect();
}

fn video_fields(v: VideoResult, resp: &mut pb::DetectResponse) {
    let t = &v.timings;
    resp.timings = Some(pb::Timings {
        probe_ms: t.probe_ms,
        decode_ms: t.decode_ms,
        score_ms: t.score_ms,
        total_ms: t.total_ms,
        ..Default::default()
    });
    (resp.width, resp.height) = (v.width, v.height);
    (resp.verdict, resp.verdict_reason) = judgement_words(&v.judgement);
    let threshold = v.threshold;
    resp.video = Some(pb::Video {
        duration_s: v.duration_s,
        fps: v.fps,
        codec: v.codec,
        frames_sampled: v.frames_sampled as u32,
        frames_with_faces: v.frames_with_faces as u32,
        aggregation: v.aggregation.as_str().into(),
        sampling: v.sampling.into(),
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
                        face: Some(face(f.bbox, f.confidence, f.score, Label::for_score(f.score, threshold))),
                    })
                    .collect(),
            })
            .collect(),
    });
}

fn c2pa(c: &crate::provenance::C2pa) -> pb::C2pa {
    let signer = c.signer.clone().unwrap_or_default();
    pb::C2pa {
        present: c.present,
        state: c.state.clone().unwrap_or_default(),
        signer_issuer: signer.issuer.unwrap_or_default(),
        signer_common_name: signer.common_name.unwrap_or_default(),
        signed_at: c.signed_at.clone().unwrap_or_default(),
        claim_generator: c.claim_generator.clone().unwrap_or_default(),
        title: c.title.clone().unwrap_or_default(),
        digital_source_types: c.digital_source_types.clone(),
        generative_ai: c.generative_ai,
        errors: c.errors.clone(),
    }
}

fn response(id: String, opts: &DetectOptions, d: Detection) -> pb::DetectResponse {
    let (model, version) = opts.model();
    let mut resp = pb::DetectResponse {
        id,
        model: model.into(),
        model_version: version.into(),
        status: d.status().as_str().into(),
        score: d.score(),
        label: d.label().map(|l| l.as_str().to_string()).unwrap_or_default(),
        threshold: opts.image.threshold,
        kind: d.kind().into(),
        mode: opts.image.mode.as_str().into(),
        ..Default::default()
    };
    let (matches, provenance, position) = match &d {
        Detection::Image(r) => (&r.matches, &r.provenance, r.hashlist_position),
        Detection::Video(v) => (&v.matches, &v.provenance, v.hashlist_position),
    };
    resp.hashlist_position = position;
    resp.c2pa = provenance.as_ref().map(|p| c2pa(&p.c2pa));
    resp.matches = matches
        .iter()
        .map(|m| pb::Match {
            list: m.list.clone(),
            id: m.id.clone(),
            kind: m.kind.as_str().into(),
            distance: m.distance,
            label: m.label.clone().unwrap_or_default(),
            query_match_pct: m.query_match_pct,
            list_match_pct: m.list_match_pct,
            transform: m.transform.clone(),
        })
        .collect();
    match d {
        Detection::Image(r) => image_fields(r.scored, &mut resp),
        Detection::Video(v) => video_fields(v, &mut resp),
    }
    resp
}

async fn detect_one(detector: &Detector, req: pb::DetectRequest) -> Result<pb::DetectResponse, CoreError> {
    let opts = detector.options(&params(&req))?;
    let deadline = detector.core().request_deadline();
    let audit = opts.audit.then(|| audit::record(&req.image, &opts, detector.core()));
    let detection = detector.detect(req.image, &opts, deadline).await?;
    let mut resp = response(req.id, &opts, detection);
    resp.audit = audit.map(audit_message);
    Ok(resp)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::DetectResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DetectorService for DetectorApi {
    async fn detect(&self, r: Request<pb::DetectRequest>) -> Result<Response<pb::DetectResponse>, Status> {
        detect_one(&self.detector, r.into_inner()).await.map(Response::new).map_err(to_status)
    }

    type DetectStreamStream = ResponseStream;

    /// Per-image failures come back as `status: "error"` entries so one bad image does not end
    /// the stream; a broken stream (bad message) ends it with that status.
    async fn detect_stream(
        &self,
        r: Request<Streaming<pb::DetectRequest>>,
    ) -> Result<Response<Self::DetectStreamStream>, Status> {
        let detector = self.detector.clone();
        let idle = self.stream_idle_timeout;
        let inbound = tokio_stream::StreamExt::timeout(r.into_inner(), idle).map(move |msg| match msg {
            Ok(msg) => msg,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no message for {} s (--grpc-stream-idle-timeout); stream closed",
                idle.as_secs()
            ))),
        });
        let out = inbound
            .map(move |msg| {
                let detector = detector.clone();
                async move {
                    let req = msg?;
                    let id = req.id.clone();
                    Ok(detect_one(&detector, req).await.unwrap_or_else(|e| pb::DetectResponse {
                        id,
                        status: "error".into(),
                        error: e.to_string(),
                        error_code: e.code().into(),
                        ..Default::default()
                    }))
                }
            })
            .buffered(STREAM_CONCURRENCY);
        Ok(Response::new(Box::pin(out)))
    }
}
