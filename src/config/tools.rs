//! The data tools' settings: `dfserve score`, `embed`, `hash` and `calibrate`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::engine::EngineArgs;
use crate::core::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Image files or folders (walked recursively; JPEG, PNG, WebP, BMP, GIF by extension).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Score against a running dfserve (e.g. http://gpu-box:8000) instead of in-process.
    #[arg(long)]
    pub server: Option<String>,
    /// API key sent to --server (`x-api-key`).
    #[arg(long, env = "DFSERVE_API_KEY", hide_env_values = true, requires = "server")]
    pub api_key: Option<String>,
    /// File holding the API key for --server (first line), kept out of the process list.
    #[arg(long, requires = "server", conflicts_with = "api_key")]
    pub api_key_file: Option<PathBuf>,
    /// Give up on one --server request after this long (then the file's row records the error).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub server_timeout: Duration,
    /// Also match every file against the hash lists in this data directory (Meta's default
    /// thresholds), with no server using it (redb takes one process at a time).
    #[arg(long, conflicts_with = "server")]
    pub hash_lists: Option<PathBuf>,
    /// PEM file of C2PA trust anchors (as `serve --c2pa-trust-anchors`).
    #[arg(long, env = "DFSERVE_C2PA_TRUST_ANCHORS", conflicts_with = "server")]
    pub c2pa_trust_anchors: Option<PathBuf>,
    /// Classifier(s) to run, comma-separated; default: the engine's --default-model.
    #[arg(long = "model", value_delimiter = ',')]
    pub score_models: Vec<String>,
    /// faces: detect and score each face; whole: score each image as one face crop.
    #[arg(long, value_enum, default_value_t = Mode::Faces)]
    pub mode: Mode,
    /// Decision threshold (default: each model's own).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Write rows here (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Row format (default: csv for *.csv outputs, else jsonl).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Skip images already present in --output and append the rest.
    #[arg(long)]
    pub resume: bool,
    /// Ground truth: `dirs` (from folder names) or a CSV file of `path,label`.
    #[arg(long)]
    pub labels: Option<String>,
    /// Folder names meaning "authentic" for --labels dirs.
    #[arg(long, value_delimiter = ',', default_value = "real,reals,original,originals,authentic,pristine")]
    pub real_names: Vec<String>,
    /// Folder names meaning "manipulated" for --labels dirs.
    #[arg(long, value_delimiter = ',', default_value = "fake,fakes,df,deepfake,deepfakes,manipulated,synthetic")]
    pub fake_names: Vec<String>,
    /// Also write the summary (JSON), ROC curves and score histograms (PNG) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Images in flight at once (reading, decoding, queued for the model).
    #[arg(long, default_value_t = 32)]
    pub jobs: usize,
    /// With labels: also report the metrics of each sub-folder's fakes against all reals (e.g.
    /// one folder per manipulation method), and the reals' folders on their own.
    #[arg(long)]
    pub by_folder: bool,
    /// With labels: fit a calibration (Platt scaling) for each model on this run's scores and
    /// write it into the model's config in --model-dir; the server serves calibrated scores
    /// after a restart.
    #[arg(long)]
    pub calibrate: bool,
    /// Add each result's audit record (upload SHA-256, models and their file hashes, bands) to
    /// the JSON Lines rows.
    #[arg(long)]
    pub audit: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EmbedArgs {
    /// Image files or folders (walked recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The encoder model (a `kind = "encoder"` config).
    #[arg(long, default_value = "clip_vitb16")]
    pub encoder: String,
    /// faces: each detected face's crop; whole: each image as one crop.
    #[arg(long, value_enum, default_value_t = Mode::Faces)]
    pub mode: Mode,
    /// Write rows here (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 32, help = "Images in flight at once")]
    pub jobs: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct HashArgs {
    /// Files to hash.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also print each image's eight dihedral PDQ variants (`pdq_dihedral`: original,
    /// rotate_90, rotate_180, rotate_270, flip_vertical, flip_horizontal, transpose,
    /// transverse), as matching uses them.
    #[arg(long)]
    pub dihedral: bool,
    /// The decoding limits (`--max-image-pixels`, `--max-video-*`, `--video-max-side`) are the
    /// server's, so a file hashes here as it does on upload.
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Rows written by `dfserve score --labels ... --output FILE` (JSONL, or CSV by extension).
    pub scores: PathBuf,
    /// The model (column) to calibrate.
    #[arg(long)]
    pub model: String,
    /// Store the calibration in the model's config in --model-dir.
    #[arg(long)]
    pub write: bool,
    /// Directory of model configs.
    #[arg(long, env = "DFSERVE_MODEL_DIR", default_value_os_t = crate::layout::model_dir())]
    pub model_dir: PathBuf,
    /// Print the fit as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
