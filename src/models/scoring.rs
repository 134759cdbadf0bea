//! How a classifier's raw outputs become the score and verdict a moderator sees: ensembles of
//! classifiers (`kind = "ensemble"` configs), calibration, and verdict band edges.
//!
//! An ensemble has no ONNX file of its own: it names member classifiers and a rule to combine
//! their scores. Calibration maps the combined raw score to a probability; the band edges then
//! split that probability into `likely_authentic`, `uncertain` and `likely_manipulated`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// How an ensemble combines its members' scores (each already oriented so 1 = manipulated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Weighted mean of the scores.
    Mean,
    /// The highest score (weights ignored).
    Max,
    /// Weighted mean of the scores' logits, mapped back through the sigmoid: a confident member
    /// counts for more than under `mean`.
    LogitMean,
}

/// Combines member scores (in member order) with weights that sum to 1. One score is returned
/// as it is.
pub fn combine(rule: Combine, weights: &[f32], scores: &[f32]) -> f32 {
    if let [only] = scores {
        return *only;
    }
    let weighted = scores.iter().zip(weights).map(|(s, w)| (*s as f64, *w as f64));
    let combined = match rule {
        Combine::Mean => weighted.map(|(s, w)| s * w).sum(),
        Combine::Max => scores.iter().fold(0.0f64, |a, s| a.max(*s as f64)),
        Combine::LogitMean => sigmoid(weighted.map(|(s, w)| logit(s) * w).sum()),
    };
    combined as f32
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    pub name: String,
    pub version: String,
    /// Always "ensemble".
    pub kind: String,
    /// Member classifiers, by model name. They must share one input spec, so a face is cropped
    /// once for all of them.
    pub members: Vec<String>,
    pub combine: Combine,
    /// One weight per member (normalised to sum 1); equal weights when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f32>>,
    /// Decision threshold for the `label` (score >= threshold is `manipulated`).
    pub threshold: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Bands>,
    #[serde(skip)]
    pub config_path: PathBuf,
}

impl EnsembleConfig {
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<EnsembleConfig> {
        let mut cfg: EnsembleConfig =
            toml::from_str(text).with_context(|| format!("parsing ensemble config {}", path.display()))?;
        cfg.config_path = path.to_path_buf();
        cfg.validate().with_context(|| format!("ensemble config {}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.kind != "ensemble" {
            bail!("kind must be \"ensemble\"");
        }
        if self.members.len() < 2 {
            bail!("an ensemble needs at least two members");
        }
        if let Some(w) = &self.weights {
            if w.len() != self.members.len() {
                bail!("weights has {} entries for {} members", w.len(), self.members.len());
            }
            if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f32>() <= 0.0 {
                bail!("weights must be non-negative and not all zero");
            }
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            bail!("threshold must be in [0, 1]");
        }
        if let Some(b) = &self.verdict {
            b.validate()?;
        }
        Ok(())
    }

    /// The members' weights, summing to 1.
    pub fn normalised_weights(&self) -> Vec<f32> {
        let w = self.weights.clone().unwrap_or_else(|| vec![1.0; self.members.len()]);
        let sum: f32 = w.iter().sum();
        w.iter().map(|x| x / sum).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// Platt scaling on the logit of the raw score: `p = sigmoid(a * logit(raw) + b)`.
    Platt,
}

/// A fitted calibration, written by `dfserve score --calibrate` or `dfserve calibrate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub method: CalibrationMethod,
    pub a: f64,
    pub b: f64,
    /// Labelled items it was fitted on.
    #[serde(default)]
    pub samples: usize,
    /// Where they came from (free text).
    #[serde(default)]
    pub fitted_on: String,
}

/// Scores are clamped this far from 0 and 1 before taking logits.
const EPS: f64 = 1e-6;

pub fn logit(p: f64) -> f64 {
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Calibration {
    pub fn apply(&self, raw: f32) -> f32 {
        sigmoid(self.a * logit(raw as f64) + self.b) as f32
    }
}

/// Edges of the verdict bands, on the served (calibrated, if calibrated) score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    /// Below this: `likely_authentic`.
    pub authentic_below: f32,
    /// At or above this: `likely_manipulated`. Between the two: `uncertain`.
    pub manipulated_from: f32,
}

impl Default for Bands {
    fn default() -> Bands {
        Bands { authentic_below: 0.2, manipulated_from: 0.8 }
    }
}

impl Bands {
    pub fn validate(&self) -> anyhow::Result<()> {
        let ok = (0.0..=1.0).contains(&self.authentic_below)
            && (0.0..=1.0).contains(&self.manipulated_from)
            && self.authentic_below <= self.manipulated_from;
        if !ok {
            bail!("verdict edges must satisfy 0 <= authentic_below <= manipulated_from <= 1");
        }
        Ok(())
    }
}

/// Replaces (or adds) the `[calibration]` table of the config file at `path`, keeping the rest
/// of the file, comments included, as it was.
pub fn write_calibration(path: &Path, cal: &Calibration) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut kept = Vec::new();
    let mut in_cal = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_cal = t.starts_with("[calibration]");
        }
        if !in_cal {
            kept.push(line);
        }
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let table = toml::to_string(cal).context("encoding the calibration")?;
    let out = format!("{}\n\n[calibration]\n{table}", kept.join("\n"));
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, out).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENSEMBLE: &str = r#"
name = "e"
version = "1"
kind = "ensemble"
members = ["a", "b"]
combine = "mean"
weights = [3.0, 1.0]
threshold = 0.5
"#;

    #[test]
    fn parses_and_checks_an_ensemble() {
        let e = EnsembleConfig::from_toml(ENSEMBLE, Path::new("e.toml")).unwrap();
        assert_eq!(e.normalised_weights(), vec![0.75, 0.25]);
        let one = ENSEMBLE.replace(r#"["a", "b"]"#, r#"["a"]"#);
        assert!(EnsembleConfig::from_toml(&one, Path::new("e.toml")).is_err());
        let bad = ENSEMBLE.replace("[3.0, 1.0]", "[1.0]");
        assert!(EnsembleConfig::from_toml(&bad, Path::new("e.toml")).is_err());
        let bands = format!("{ENSEMBLE}[verdict]\nauthentic_below = 0.9\nmanipulated_from = 0.1\n");
        assert!(EnsembleConfig::from_toml(&bands, Path::new("e.toml")).is_err());
    }

    #[test]
    fn combination_rules_by_hand() {
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        let s = [0.9, 0.2];
        assert!(close(combine(Combine::Mean, &[0.5, 0.5], &s), 0.55));
        assert!(close(combine(Combine::Mean, &[0.75, 0.25], &s), 0.725));
        assert!(close(combine(Combine::Max, &[0.5, 0.5], &s), 0.9));
        // logit(0.9) = 2.19722, logit(0.2) = -1.38629; mean 0.40547 -> sigmoid 0.6
        assert!(close(combine(Combine::LogitMean, &[0.5, 0.5], &s), 0.6));
        // weights 0.75/0.25: 1.30176 -> 0.786
        assert!(close(combine(Combine::LogitMean, &[0.75, 0.25], &s), 0.786_061_2));
        assert_eq!(combine(Combine::Max, &[1.0], &[0.3]), 0.3);
    }

    #[test]
    fn calibration_is_written_into_the_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(&path, format!("# keep me\n{ENSEMBLE}")).unwrap();
        let cal =
            Calibration { method: CalibrationMethod::Platt, a: 1.5, b: -0.25, samples: 10, fitted_on: "x".into() };
        write_calibration(&path, &cal).unwrap();
        let cal2 = Calibration { a: 2.0, ..cal.clone() };
        write_calibration(&path, &cal2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# keep me"));
        assert_eq!(text.matches("[calibration]").count(), 1);
        let e = EnsembleConfig::from_toml(&text, &path).unwrap();
        assert_eq!(e.calibration, Some(cal2));
        assert!((Calibration { a: 1.0, b: 0.0, ..cal }.apply(0.3) - 0.3).abs() < 1e-6);
    }
}
