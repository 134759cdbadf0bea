//! The role each loaded model plays, resolved once at load into a typed value.
//!
//! A classifier's config names its score output and direction; a detector's names its score and
//! box outputs and its decoder. Looking those names up in the session's real outputs can fail,
//! so it happens here, at start-up, where a failure stops the server with a clear message. The
//! request path then holds plain indices and never has to re-check (or `expect`) anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use super::model::LoadedModel;
use crate::batcher::EntryOutput;
use crate::error::CoreError;
use crate::models::probe::ProbeConfig;
use crate::models::scoring::{combine, Bands, Calibration, Combine, EnsembleConfig};
use crate::models::{DetectorConfig, InputConfig, ScoreDirection};
use crate::pipeline::detect::FaceBox;

/// One scorer inside a [`Classifier`]: an ONNX classifier (its score output, oriented), or a
/// probe head on an encoder's embedding.
#[derive(Clone)]
pub struct Member {
    /// The ONNX model it runs: the classifier, or the probe's encoder.
    pub model: Arc<LoadedModel>,
    output_index: usize,
    scorer: MemberScorer,
    /// Share in the combined score (weights sum to 1).
    pub weight: f32,
    /// Which of the classifier's input specs ([`Classifier::inputs`]) this member reads.
    slot: usize,
}

#[derive(Clone)]
enum MemberScorer {
    Direct(ScoreDirection),
    Probe(Arc<ProbeConfig>),
}

impl Member {
    fn resolve(model: Arc<LoadedModel>, weight: f32) -> anyhow::Result<Member> {
        let name = &model.config.name;
        let out = model.config.output.as_ref().with_context(|| format!("classifier '{name}' has no [output] table"))?;
        let output_index = model
            .output_index(&out.score)
            .with_context(|| format!("classifier '{name}': the session has no output '{}'", out.score))?;
        Ok(Member { output_index, scorer: MemberScorer::Direct(out.direction), weight, slot: 0, model })
    }

    fn probe(cfg: &ProbeConfig, models: &BTreeMap<String, Arc<LoadedModel>>) -> anyhow::Result<Member> {
        let name = &cfg.name;
        let model = models.get(&cfg.encoder).with_context(|| {
            format!(
                "probe '{name}' reads encoder '{}', which is not loaded (check --models and the model directory)",
                cfg.encoder
            )
        })?;
        let enc = model
            .config
            .encoder
            .as_ref()
            .with_context(|| format!("probe '{name}': '{}' is not an encoder (kind = \"encoder\")", cfg.encoder))?;
        let output_index = model
            .output_index(&enc.output)
            .with_context(|| format!("encoder '{}': the session has no output '{}'", cfg.encoder, enc.output))?;
        let dim = model.outputs[output_index].shape.last().copied().unwrap_or(-1);
        if dim >= 0 && dim as usize != enc.dim {
            bail!(
                "encoder '{}': output '{}' has {dim} values a row, its config says dim = {}",
                cfg.encoder,
                enc.output,
                enc.dim
            );
        }
        if cfg.head.input_dim() != enc.dim {
            bail!(
                "probe '{name}': its head takes {} values, encoder '{}' gives {}; refit the head on this encoder",
                cfg.head.input_dim(),
                cfg.encoder,
                enc.dim
            );
        }
        Ok(Member {
            model: model.clone(),
            output_index,
            scorer: MemberScorer::Probe(Arc::new(cfg.clone())),
            weight: 1.0,
            slot: 0,
        })
    }

    /// The manipulation score (1 = manipulated) in one entry's output.
    fn score(&self, out: &EntryOutput) -> f32 {
        let row = &out.rows[self.output_index];
        match &self.scorer {
            MemberScorer::Direct(ScoreDirection::HigherIsManipulated) => row[0],
            MemberScorer::Direct(ScoreDirection::HigherIsAuthentic) => 1.0 - row[0],
            MemberScorer::Probe(p) => p.score(row),
        }
    }

    /// The classifier's name: the probe's for a probe (not its encoder's), else the model's.
    pub fn name(&self) -> &str {
        match &self.scorer {
            MemberScorer::Probe(p) => &p.name,
            MemberScorer::Direct(_) => &self.model.config.name,
        }
    }

    /// The classifier's version, as `name`.
    pub fn version(&self) -> &str {
        match &self.scorer {
            MemberScorer::Probe(p) => &p.version,
            MemberScorer::Direct(_) => &self.model.config.version,
        }
    }

    /// The probe config, for a probe member.
    pub fn probe_config(&self) -> Option<&ProbeConfig> {
        match &self.scorer {
            MemberScorer::Probe(p) => Some(p),
            MemberScorer::Direct(_) => None,
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

/// What scores a face crop: one ONNX classifier, one probe head on an encoder, or an ensemble of
/// those. Members that take the same tensor share one crop: `inputs` holds each distinct input
/// spec once, and the image pipeline prepares one row per spec.
pub struct Classifier {
    name: String,
    version: String,
    members: Vec<Member>,
    inputs: Vec<InputConfig>,
    combine: Combine,
    calibration: Option<Calibration>,
    /// The config's default decision threshold.
    pub threshold: f32,
    /// Edges of the verdict bands.
    pub bands: Bands,
    /// `model`, `probe` or `ensemble`.
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
            inputs: vec![cfg.input.clone()],
            members: vec![Member::resolve(model, 1.0)?],
        })
    }

    /// A probe head on a loaded encoder.
    pub fn probe(cfg: &ProbeConfig, models: &BTreeMap<String, Arc<LoadedModel>>) -> anyhow::Result<Classifier> {
        let member = Member::probe(cfg, models)?;
        Ok(Classifier {
            name: cfg.name.clone(),
            version: cfg.version.clone(),
            calibration: cfg.calibration.clone(),
            bands: cfg.verdict.unwrap_or_default(),
            threshold: cfg.threshold,
            combine: Combine::Mean,
            kind: "probe",
            inputs: vec![member.model.config.input.clone()],
            members: vec![member],
        })
    }

    /// An ensemble of single classifiers (ONNX classifiers and probes), by name. Each member
    /// contributes its raw score: its own calibration, if any, is not applied.
    pub fn ensemble(cfg: &EnsembleConfig, singles: &BTreeMap<String, Arc<Classifier>>) -> anyhow::Result<Classifier> {
        let name = &cfg.name;
        let mut members = Vec::new();
        let mut inputs: Vec<InputConfig> = Vec::new();
        for (member, weight) in cfg.members.iter().zip(cfg.normalised_weights()) {
            let single = singles.get(member).with_context(|| {
                format!(
                    "ensemble '{name}' names '{member}', which is not a loaded classifier or probe (check --models and the model directory)"
                )
            })?;
            let [only] = single.members.as_slice() else {
                bail!("ensemble '{name}': member '{member}' is itself an ensemble");
            };
            let input = &only.model.config.input;
            let slot = match inputs.iter().position(|i| i.same_tensor(input)) {
                Some(slot) => slot,
                None => {
                    inputs.push(input.clone());
                    inputs.len() - 1
                }
            };
            members.push(Member { weight, slot, ..only.clone() });
        }
        Ok(Classifier {
            name: name.clone(),
            version: cfg.version.clone(),
            members,
            inputs,
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

    /// The members, in config order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Each distinct input spec the members read, in the order `score` takes their rows.
    pub fn inputs(&self) -> &[InputConfig] {
        &self.inputs
    }

    /// The input spec, when every member reads the same one (the classifier then has a tensor
    /// form in KServe); `None` for an ensemble of models with different inputs.
    pub fn single_input(&self) -> Option<&InputConfig> {
        match self.inputs.as_slice() {
            [only] => Some(only),
            _ => None,
        }
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

    /// Scores one prepared face: `rows[i]` is the crop prepared for `inputs()[i]`. Each
    /// member's run goes through that member's batcher, side by side; the scores are then
    /// combined and calibrated.
    pub async fn score(&self, mut rows: Vec<Vec<f32>>, deadline: Instant) -> Result<FaceScore, CoreError> {
        if rows.len() != self.inputs.len() {
            return Err(CoreError::Inference(format!(
                "classifier '{}' takes {} prepared inputs, got {}",
                self.name,
                self.inputs.len(),
                rows.len()
            )));
        }
        // Each member's batcher takes its row by value: the last member reading a slot gets that
        // slot's row itself, the others a copy.
        let mut member_rows = Vec::with_capacity(self.members.len());
        for (i, m) in self.members.iter().enumerate() {
            let read_later = self.members[i + 1..].iter().any(|later| later.slot == m.slot);
            member_rows.push(if read_later { rows[m.slot].clone() } else { std::mem::take(&mut rows[m.slot]) });
        }
        let runs =
            self.members.iter().zip(member_rows).map(|(m, row)| async move {
                Ok::<_, CoreError>(m.score(&m.model.batcher.infer(row, deadline).await?))
            });
        let scores = futures::future::try_join_all(runs).await?;
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
                .map(|(m, s)| MemberScore { model: m.name().to_string(), score: *s })
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
