//! One row of `dfserve score` output: a file, its ground truth, and each model's outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::Detection;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaceOut {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub confidence: f32,
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
        Outcome { status: "error".into(), score: None, label: None, face_count: 0, faces: vec![], error: Some(message) }
    }
}

impl Outcome {
    /// A detection as one row entry: a video's "faces" are its face tracks (per-frame detail
    /// is in the server API).
    pub fn from_detection(d: Detection) -> Outcome {
        let (status, score, label) = (d.status().as_str().into(), d.score(), d.label().map(|l| l.as_str().into()));
        let (face_count, faces) = match d {
            Detection::Image(r) => (
                r.faces.len(),
                r.faces.iter().map(|f| FaceOut { bbox: f.bbox, confidence: f.confidence, score: f.score }).collect(),
            ),
            Detection::Video(v) => (v.tracks.len(), vec![]),
        };
        Outcome { status, score, label, face_count, faces, error: None }
    }
}
