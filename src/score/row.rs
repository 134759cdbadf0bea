//! One row of `dfserve score` output: a file, its ground truth, and each model's outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::Detection;
use crate::hashlists::Match;
use crate::provenance::Provenance;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaceOut {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub confidence: f32,
    pub score: f32,
    /// Before calibration (calibrated classifiers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_score: Option<f32>,
    /// This face's verdict band, and why `not_applicable` (as on the HTTP API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    /// Each ensemble member's score (ensembles only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberOut>,
}

/// One ensemble member's score for a face.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberOut {
    pub model: String,
    pub score: f32,
}

/// One model's verdict on one image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub status: String,
    pub score: Option<f32>,
    pub label: Option<String>,
    pub face_count: usize,
    #[serde(default)]
    pub faces: Vec<FaceOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `likely_manipulated`, `uncertain`, `likely_authentic` or `not_applicable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Why `not_applicable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    /// The score before calibration (calibrated classifiers only): what calibration is fitted
    /// on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_score: Option<f32>,
    /// Hash-list matches of the file (`--hash-lists`, or the server's lists with `--server`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// C2PA provenance of the file (reported beside the score, never part of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// With `--audit` (JSON Lines output only): the audit record of this result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<serde_json::Value>,
}

/// One output row: an image, its ground truth when known, and every model's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub path: String,
    /// "fake" or "real" when labels were given.
    pub truth: Option<String>,
    pub models: BTreeMap<String, Outcome>,
}

impl Outcome {
    pub fn error(message: String) -> Outcome {
        Outcome {
            status: "error".into(),
            score: None,
            label: None,
            face_count: 0,
            faces: vec![],
            error: Some(message),
            verdict: None,
            verdict_reason: None,
            raw_score: None,
            matches: vec![],
            provenance: None,
            audit: None,
        }
    }
}

impl Outcome {
    /// A detection as one row entry: a video's "faces" are its face tracks (per-frame detail
    /// is in the server API).
    pub fn from_detection(d: Detection) -> Outcome {
        let (status, score, label) = (d.status().as_str().into(), d.score(), d.label().map(|l| l.as_str().into()));
        let judgement = d.judgement();
        let (matches, provenance) = match &d {
            Detection::Image(r) => (r.matches.clone(), r.provenance.as_deref().cloned()),
            Detection::Video(v) => (v.matches.clone(), v.provenance.as_deref().cloned()),
        };
        let (face_count, faces) = match d {
            Detection::Image(r) => (
                r.faces.len(),
                r.faces
                    .iter()
                    .map(|f| FaceOut {
                        bbox: f.bbox,
                        confidence: f.confidence,
                        score: f.score,
                        raw_score: f.raw_score,
                        verdict: Some(f.judgement.verdict.as_str().into()),
                        verdict_reason: f.judgement.reason.map(|r| r.as_str().into()),
                        members: f
                            .members
                            .iter()
                            .map(|m| MemberOut { model: m.model.clone(), score: m.score })
                            .collect(),
                    })
                    .collect(),
            ),
            Detection::Video(v) => (v.tracks.len(), vec![]),
        };
        let raw_score = top_raw(&faces);
        Outcome {
            status,
            score,
            label,
            face_count,
            faces,
            error: None,
            verdict: Some(judgement.verdict.as_str().into()),
            verdict_reason: judgement.reason.map(|r| r.as_str().into()),
            raw_score,
            matches,
            provenance,
            audit: None,
        }
    }

    /// The score fitted on by calibration: before calibration when there is one.
    pub fn uncalibrated(&self) -> Option<f32> {
        self.raw_score.or(self.score)
    }
}

/// The raw score of the top-scoring face (calibration is increasing, so it is the face that
/// gave the image its score).
pub fn top_raw(faces: &[FaceOut]) -> Option<f32> {
    faces.iter().max_by(|a, b| a.score.total_cmp(&b.score)).and_then(|f| f.raw_score)
}

impl Outcome {
    pub fn is_not_applicable(&self) -> bool {
        self.verdict.as_deref() == Some("not_applicable")
    }
}
