//! The role each loaded model plays, resolved once at load into a typed value.
//!
//! A classifier's config names its score output and direction; a detector's names its score and
//! box outputs and its decoder. Looking those names up in the session's real outputs can fail,
//! so it happens here, at start-up, where a failure stops the server with a clear message. The
//! request path then holds plain indices and never has to re-check (or `expect`) anything.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use super::model::LoadedModel;
use crate::batcher::EntryOutput;
use crate::error::CoreError;
use crate::models::scoring::{combine, Bands, Calibration, Combine, EnsembleConfig};
use crate::models::{DetectorConfig, InputConfig, ScoreDirection};
use crate::pipeline::detect::FaceBox;

/// One ONNX classifier inside a [`Classifier`]: which output row holds its score and which way
/// it points.
pub struct Member {
    pub model: Arc<LoadedModel>,
    score_index: usize,
    direction: ScoreDirection,
    /// Share in the combined score (weights sum to 1).
    pub weight: f32,
}

impl Member {
    fn resolve(model: Arc<LoadedModel>, weight: f32) -> anyhow::Result<Member> {
        let name = &model.config.name;
        let out = model.config.output.as_ref().with_context(|| format!("classifier '{name}' has no [output] table"))?;
        let score_index = model
            .output_index(&out.score)
            .with_context(|| format!("classifier '{name}': the session has no output '{}'", out.score))?;
        Ok(Member { score_index, direction: out.direction, weight, model })
    }

    /// The manipulation score (1 = manipulated) in one entry's output.
    fn score(&self, out: &EntryOutput) -> f32 {
        let raw = out.rows[self.score_index][0];
        match self.direction {
            ScoreDirection::HigherIsManipulated => raw,
            ScoreDirection::HigherIsAuthentic => 1.0 - raw,
        }
    }
}

/// One member's score for a face, reported next to the combined one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberScore {
    pub model: String,
    pub score: f32,
}

/// A face's score from a [`Classifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct FaceScore {
    /// The served score: the combination, calibrated when the classifier is.
    pub score: f32,
    /// The combination before calibration; `None` when there is no calibration.
    pub raw: Option<f32>,
    /// Each member's score; empty for a single model.
    pub members: Vec<MemberScore>,
}

/// What scores a face crop: one ONNX classifier, or an ensemble of them that share an input
/// spec (so the face is cropped once and the crop goes to every member's batcher).
pub struct Classifier {
    name: String,
    version: String,
    members: Vec<Member>,
    combine: Combine,
    calibration: Option<Calibration>,
    /// The config's default decision threshold.
    pub threshold: f32,
    /// Edges of the verdict bands.
    pub bands: Bands,
    /// `model` or `ensemble`.
    pub kind: &'static str,
}

impl Classifier {
    /// A single ONNX classifier.
    pub fn resolve(model: Arc<LoadedModel>) -> anyhow::Result<Classifier> {
        let cfg = &model.config;
        let threshold = cfg.output.as_ref().map_or(0.5, |o| o.threshold);
        Ok(Classifier {
            name: cfg.name.clone(),
            version: cfg.version.clone(),
            calibration: cfg.calibration.clone(),
            bands: cfg.verdict.unwrap_or_default(),
            threshold,
            combine: Combine::Mean,
            kind: "model",
            members: vec![Member::resolve(model, 1.0)?],
        })
    }

    /// An ensemble of loaded classifiers.
    pub fn ensemble(
        cfg: &EnsembleConfig,
        models: &std::collections::BTreeMap<String, Arc<LoadedModel>>,
    ) -> anyhow::Result<Classifier> {
        let name = &cfg.name;
        let mut members = Vec::new();
        for (member, weight) in cfg.members.iter().zip(cfg.normalised_weights()) {
            let model = models.get(member).with_context(|| {
                format!(
                    "ensemble '{name}' names '{member}', which is not loaded (check --models and the model directory)"
                )
            })?;
            if model.config.output.is_none() {
                bail!("ensemble '{name}': member '{member}' is not a classifier");
            }
            members.push(Member::resolve(model.clone(), weight)?);
        }
        let first = &members[0].model.config.input;
        for m in &members[1..] {
            let input = &m.model.config.input;
            let same = (input.layout, input.width, input.height, input.channels, input.resize)
                == (first.layout, first.width, first.height, first.channels, first.resize)
                && input.scale == first.scale
                && input.mean == first.mean
                && input.std == first.std;
            if !same {
                bail!(
                    "ensemble '{name}': member '{}' takes a different input than '{}'; members must share one input spec",
                    m.model.config.name,
                    members[0].model.config.name
                );
            }
        }
        Ok(Classifier {
            name: name.clone(),
            version: cfg.version.clone(),
            members,
            combine: cfg.combine,
            calibration: cfg.calibration.clone(),
            threshold: cfg.threshold,
            bands: cfg.verdict.unwrap_or_default(),
            kind: "ensemble",
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The ONNX models behind this classifier.
    pub fn models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.members.iter().map(|m| &m.model)
    }

    /// The input spec every member shares.
    pub fn input(&self) -> &InputConfig {
        &self.members[0].model.config.input
    }

    /// Each member's weight, in member order.
    pub fn weights(&self) -> impl Iterator<Item = f32> + '_ {
        self.members.iter().map(|m| m.weight)
    }

    /// The combination rule's name, as configs spell it.
    pub fn combine_name(&self) -> &'static str {
        match self.combine {
            Combine::Mean => "mean",
            Combine::Max => "max",
            Combine::LogitMean => "logit_mean",
        }
    }

    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Refuses at once when any member's queue is full.
    pub fn check_capacity(&self) -> Result<(), CoreError> {
        self.members.iter().try_for_each(|m| m.model.batcher.check_capacity())
    }

    /// Scores one prepared face crop: each member's run goes through that member's batcher,
    /// side by side; the scores are then combined and calibrated.
    pub async fn score(&self, row: Vec<f32>, deadline: Instant) -> Result<FaceScore, CoreError> {
        let scores: Vec<f32> = if let [only] = self.members.as_slice() {
            vec![only.score(&only.model.batcher.infer(row, deadline).await?)]
        } else {
            let runs = self.members.iter().map(|m| {
                let row = row.clone();
                async move { Ok::<_, CoreError>(m.score(&m.model.batcher.infer(row, deadline).await?)) }
            });
            futures::future::try_join_all(runs).await?
        };
        Ok(self.combine_scores(&scores))
    }

    /// The combination rule and calibration, on the members' scores in member order.
    pub fn combine_scores(&self, scores: &[f32]) -> FaceScore {
        let weights: Vec<f32> = self.members.iter().map(|m| m.weight).collect();
        let combined = combine(self.combine, &weights, scores);
        let members = if self.members.len() > 1 {
            self.members
                .iter()
                .zip(scores)
                .map(|(m, s)| MemberScore { model: m.model.config.name.clone(), score: *s })
                .collect()
        } else {
            Vec::new()
        };
        match &self.calibration {
            Some(cal) => FaceScore { score: cal.apply(combined), raw: Some(combined), members },
            None => FaceScore { score: combined, raw: None, members },
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
