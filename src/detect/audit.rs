//! The audit record: what is needed to reproduce and defend a decision later. The upload's
//! SHA-256, every ONNX model that ran (name, version, file SHA-256, checked at load), the
//! classifier's combination and calibration, the threshold, band edges and minimum face size,
//! and the dfserve version. Off unless a request asks (`audit=true`): hashing costs about a
//! millisecond per megabyte, and most callers keep their own records.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::request::DetectOptions;
use crate::core::{InferCore, Mode};
use crate::models::scoring::{Bands, Calibration};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditModel {
    pub name: String,
    pub version: String,
    /// SHA-256 of the ONNX file, as verified when it was loaded (a probe's: its encoder's; the
    /// head's weights are fixed by the probe's name and version).
    pub sha256: String,
    /// `classifier` (an ensemble member or the model itself) or `detector`.
    pub role: &'static str,
    /// The member's weight in the ensemble's combination (1 for a single model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f32>,
    /// A probe's encoder model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRecord {
    pub upload_sha256: String,
    pub dfserve_version: &'static str,
    pub classifier: String,
    pub classifier_version: String,
    /// `model` or `ensemble`.
    pub classifier_kind: &'static str,
    /// Ensembles: `mean`, `max` or `logit_mean`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combine: Option<&'static str>,
    pub models: Vec<AuditModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    pub threshold: f32,
    pub bands: Bands,
    pub min_face_size: u32,
    pub mode: Mode,
}

pub fn record(upload: &[u8], opts: &DetectOptions, core: &InferCore) -> AuditRecord {
    let c = &opts.image.classifier;
    let mut models: Vec<AuditModel> = c
        .members()
        .iter()
        .map(|m| AuditModel {
            name: m.name().to_string(),
            version: m.version().to_string(),
            sha256: m.model.config.sha256.to_lowercase(),
            role: "classifier",
            weight: Some(m.weight),
            encoder: m.probe_config().map(|_| m.model.config.name.clone()),
        })
        .collect();
    if opts.image.mode == Mode::Faces {
        let d = &core.face_detector().config;
        models.push(AuditModel {
            name: d.name.clone(),
            version: d.version.clone(),
            sha256: d.sha256.to_lowercase(),
            role: "detector",
            weight: None,
            encoder: None,
        });
    }
    AuditRecord {
        upload_sha256: hex::encode(Sha256::digest(upload)),
        dfserve_version: env!("CARGO_PKG_VERSION"),
        classifier: c.name().to_string(),
        classifier_version: c.version().to_string(),
        classifier_kind: c.kind,
        combine: (c.kind == "ensemble").then(|| c.combine_name()),
        models,
        calibration: c.calibration().cloned(),
        threshold: opts.image.threshold,
        bands: c.bands,
        min_face_size: core.settings().min_face_size,
        mode: opts.image.mode,
    }
}
