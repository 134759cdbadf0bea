//! Probe heads (`kind = "probe"` configs): a small classifier on a frozen encoder's embedding.
//!
//! The encoder (an ONNX model of `kind = "encoder"`) runs through its own batcher; the head is a
//! few hundred numbers applied on the request path, so its weights live in the config itself,
//! next to the provenance of how they were fitted (`scripts/train_probe.py` writes both). One
//! encoder can carry several heads: each is its own classifier, and a face crop is encoded once
//! per request whatever head scores it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::scoring::{sigmoid, Bands, Calibration};

/// The head's form. Both end in a sigmoid, so the head's output is P(manipulated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Head {
    /// `sigmoid(w . x + b)`.
    Logistic { weights: Vec<f32>, bias: f32 },
    /// One hidden layer: `sigmoid(w2 . relu(W1 x + b1) + b2)`; `hidden_weights` is `W1` row by
    /// row (`hidden` rows of the embedding's length).
    Mlp { hidden: usize, hidden_weights: Vec<f32>, hidden_bias: Vec<f32>, weights: Vec<f32>, bias: f32 },
}

impl Head {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Head::Logistic { .. } => "logistic",
            Head::Mlp { .. } => "mlp",
        }
    }

    /// Length of the embedding the head takes.
    pub fn input_dim(&self) -> usize {
        match self {
            Head::Logistic { weights, .. } => weights.len(),
            Head::Mlp { hidden, hidden_weights, .. } => hidden_weights.len() / (*hidden).max(1),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        match self {
            Head::Logistic { weights, bias } => {
                if weights.is_empty() || !finite(weights) || !bias.is_finite() {
                    bail!("head.weights must be non-empty and finite, and head.bias finite");
                }
                if weights.iter().all(|w| *w == 0.0) {
                    bail!("head.weights are all zero: the head would give one score to every face");
                }
            }
            Head::Mlp { hidden, hidden_weights, hidden_bias, weights, bias } => {
                if *hidden == 0 || hidden_weights.is_empty() || hidden_weights.len() % hidden != 0 {
                    bail!("head.hidden_weights must hold `hidden` rows of equal length");
                }
                if hidden_bias.len() != *hidden || weights.len() != *hidden {
                    bail!("head.hidden_bias and head.weights must have `hidden` ({hidden}) entries");
                }
                if ![hidden_weights, hidden_bias, weights].iter().all(|v| finite(v)) || !bias.is_finite() {
                    bail!("head weights and biases must be finite");
                }
            }
        }
        Ok(())
    }

    /// The head's logit for one embedding (already normalised if the probe asks for it).
    pub fn logit(&self, x: &[f32]) -> f64 {
        let dot = |w: &[f32], x: &[f32]| w.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>();
        match self {
            Head::Logistic { weights, bias } => dot(weights, x) + *bias as f64,
            Head::Mlp { hidden_weights, hidden_bias, weights, bias, .. } => {
                let dim = x.len();
                let z: f64 = hidden_weights
                    .chunks_exact(dim)
                    .zip(hidden_bias)
                    .zip(weights)
                    .map(|((row, b), w)| (dot(row, x) + *b as f64).max(0.0) * *w as f64)
                    .sum();
                z + *bias as f64
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    pub version: String,
    /// Always "probe".
    pub kind: String,
    /// The encoder model (a `kind = "encoder"` config) whose embedding the head reads.
    pub encoder: String,
    /// Divide the embedding by its L2 norm before the head (CLIP embeddings are compared as
    /// directions).
    #[serde(default)]
    pub normalize: bool,
    /// Decision threshold for the `label` (score >= threshold is `manipulated`).
    pub threshold: f32,
    pub head: Head,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Bands>,
    /// How the head was fitted (datasets, counts, commit, the encoder's sha256, the
    /// leave-one-dataset-out figures): written by the training script, shown by /v1/models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<toml::Table>,
    #[serde(skip)]
    pub config_path: PathBuf,
}

impl ProbeConfig {
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<ProbeConfig> {
        let mut cfg: ProbeConfig =
            toml::from_str(text).with_context(|| format!("parsing probe config {}", path.display()))?;
        cfg.config_path = path.to_path_buf();
        cfg.validate().with_context(|| format!("probe config {}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.kind != "probe" {
            bail!("kind must be \"probe\"");
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            bail!("threshold must be in [0, 1]");
        }
        self.head.validate()?;
        if let Some(b) = &self.verdict {
            b.validate()?;
        }
        Ok(())
    }

    /// P(manipulated) for one embedding, before calibration.
    pub fn score(&self, embedding: &[f32]) -> f32 {
        let logit = if self.normalize {
            let norm = embedding.iter().map(|v| *v as f64 * *v as f64).sum::<f64>().sqrt().max(1e-12);
            let unit: Vec<f32> = embedding.iter().map(|v| (*v as f64 / norm) as f32).collect();
            self.head.logit(&unit)
        } else {
            self.head.logit(embedding)
        };
        sigmoid(logit) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: &str = r#"
name = "p"
version = "1"
kind = "probe"
encoder = "enc"
normalize = true
threshold = 0.5
[head]
kind = "logistic"
weights = [1.0, -2.0, 0.5]
bias = 0.25
"#;

    #[test]
    fn logistic_head_by_hand() {
        let p = ProbeConfig::from_toml(PROBE, Path::new("p.toml")).unwrap();
        assert_eq!(p.head.input_dim(), 3);
        // [3, 0, 4] / 5 = [0.6, 0, 0.8]; 0.6 + 0.4 + 0.25 = 1.25
        let want = 1.0 / (1.0 + (-1.25f64).exp());
        assert!((p.score(&[3.0, 0.0, 4.0]) as f64 - want).abs() < 1e-6);
        let raw = ProbeConfig { normalize: false, ..p };
        // 3 + 2 + 0.25 = 5.25
        assert!((raw.score(&[3.0, 0.0, 4.0]) as f64 - 1.0 / (1.0 + (-5.25f64).exp())).abs() < 1e-6);
    }

    #[test]
    fn mlp_head_by_hand() {
        let head = Head::Mlp {
            hidden: 2,
            hidden_weights: vec![1.0, 0.0, 0.0, 1.0],
            hidden_bias: vec![0.0, -10.0],
            weights: vec![2.0, 5.0],
            bias: -1.0,
        };
        head.validate().unwrap();
        // relu([1, 2 - 10]) = [1, 0]; 2 * 1 - 1 = 1
        assert!((head.logit(&[1.0, 2.0]) - 1.0).abs() < 1e-9);
        assert_eq!(head.input_dim(), 2);
    }

    #[test]
    fn refuses_bad_heads() {
        let zero = PROBE.replace("[1.0, -2.0, 0.5]", "[0.0, 0.0, 0.0]");
        assert!(ProbeConfig::from_toml(&zero, Path::new("p.toml")).is_err());
        let nan = PROBE.replace("bias = 0.25", "bias = nan");
        assert!(ProbeConfig::from_toml(&nan, Path::new("p.toml")).is_err());
        let unknown = PROBE.replace("bias = 0.25", "bias = 0.25\nscale = 2");
        assert!(ProbeConfig::from_toml(&unknown, Path::new("p.toml")).is_err());
        let mlp = PROBE.replace(
            "kind = \"logistic\"\nweights = [1.0, -2.0, 0.5]\nbias = 0.25",
            "kind = \"mlp\"\nhidden = 2\nhidden_weights = [1.0, 2.0, 3.0]\nhidden_bias = [0.0, 0.0]\nweights = [1.0, 1.0]\nbias = 0.0",
        );
        assert!(ProbeConfig::from_toml(&mlp, Path::new("p.toml")).is_err());
    }
}
