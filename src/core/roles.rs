//! The role each loaded model plays, resolved once at load into a typed value.
//!
//! A classifier's config names its score output and direction; a detector's names its score and
//! box outputs and its decoder. Looking those names up in the session's real outputs can fail,
//! so it happens here, at start-up, where a failure stops the server with a clear message. The
//! request path then holds plain indices and never has to re-check (or `expect`) anything.

use std::sync::Arc;

use anyhow::Context;

use super::model::LoadedModel;
use crate::batcher::EntryOutput;
use crate::models::{DetectorConfig, ScoreDirection};
use crate::pipeline::detect::FaceBox;

/// A model that scores face crops: which output row holds the score and which way it points.
pub struct Classifier {
    pub model: Arc<LoadedModel>,
    score_index: usize,
    direction: ScoreDirection,
    /// The config's default decision threshold.
    pub threshold: f32,
}

impl Classifier {
    pub fn resolve(model: Arc<LoadedModel>) -> anyhow::Result<Classifier> {
        let name = &model.config.name;
        let out = model.config.output.as_ref().with_context(|| format!("classifier '{name}' has no [output] table"))?;
        let score_index = model
            .output_index(&out.score)
            .with_context(|| format!("classifier '{name}': the session has no output '{}'", out.score))?;
        Ok(Classifier { score_index, direction: out.direction, threshold: out.threshold, model })
    }

    pub fn name(&self) -> &str {
        &self.model.config.name
    }

    pub fn version(&self) -> &str {
        &self.model.config.version
    }

    /// The manipulation score (1 = manipulated) in one entry's output.
    pub fn score(&self, out: &EntryOutput) -> f32 {
        let raw = out.rows[self.score_index][0];
        match self.direction {
            ScoreDirection::HigherIsManipulated => raw,
            ScoreDirection::HigherIsAuthentic => 1.0 - raw,
        }
    }
}

/// A face detector: where its score and box rows are and how to decode them.
pub struct FaceDetector {
    pub model: Arc<LoadedModel>,
    config: DetectorConfig,
    scores_index: usize,
    boxes_index: usize,
}

impl FaceDetector {
    pub fn resolve(model: Arc<LoadedModel>) -> anyhow::Result<FaceDetector> {
        let name = &model.config.name;
        let config =
            model.config.detector.clone().with_context(|| format!("detector '{name}' has no [detector] table"))?;
        let index = |output: &str| {
            model
                .output_index(output)
                .with_context(|| format!("detector '{name}': the session has no output '{output}'"))
        };
        let (scores_index, boxes_index) = (index(&config.scores)?, index(&config.boxes)?);
        Ok(FaceDetector { model, config, scores_index, boxes_index })
    }

    /// The faces in one entry's output, in pixels of a `width` x `height` image, after NMS.
    pub fn faces(&self, out: &EntryOutput, width: u32, height: u32) -> Vec<FaceBox> {
        crate::pipeline::detected_faces(
            &self.config,
            &out.rows[self.scores_index],
            &out.rows[self.boxes_index],
            width,
            height,
        )
    }
}
