//! One loaded model: its config, its running batcher and the outputs every run returns. Loading
//! checks the file's checksum and holds the config against the session's real tensors.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;

use crate::batcher::{Batcher, BatcherConfig};
use crate::metrics::Metrics;
use crate::models::ModelConfig;
use crate::runtime::{OrtBackend, SessionOptions, TensorSpec};

/// How many sessions of each model to start, and how they run.
pub struct Sessions<'a> {
    pub options: &'a SessionOptions,
    pub instances: usize,
    /// Intra-op threads of the solo session; none unless above `options.intra_threads`.
    pub solo_threads: usize,
    pub batcher: &'a BatcherConfig,
}

/// A model with its running batcher, as the front ends see it.
pub struct LoadedModel {
    pub config: ModelConfig,
    pub batcher: Batcher,
    /// The float32 outputs every run returns, in order (`EntryOutput::rows` follows it).
    pub outputs: Vec<TensorSpec>,
}

impl LoadedModel {
    /// Position of output `name` in `outputs` (and so in `EntryOutput::rows`).
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|o| o.name == name)
    }

    /// Shape of one batch row of the input (without the batch dimension).
    pub fn input_shape(&self) -> Vec<i64> {
        self.config.input.shape()
    }

    /// Loads `config`'s ONNX file from `model_dir` (checking its sha256) into `sessions`
    /// sessions and starts the model's batcher. Blocking.
    pub fn load(
        env: &ort::environment::Environment,
        model_dir: &Path,
        config: ModelConfig,
        sessions: &Sessions,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<LoadedModel> {
        let name = config.name.clone();
        let path = model_dir.join(&config.file);
        if !path.is_file() {
            bail!(
                "model '{name}': {} is missing; run scripts/setup.sh (it copies the models from DFSERVE_MODEL_SOURCE, default ../shared/models)",
                path.display()
            );
        }
        let sha = crate::models::sha256_file(&path)?;
        if sha != config.sha256.to_lowercase() {
            bail!(
                "model '{name}': {} has sha256 {sha}, but {} expects {}; re-run scripts/setup.sh or fix the config",
                path.display(),
                config.config_path.display(),
                config.sha256
            );
        }
        let started = Instant::now();
        let backends = (0..sessions.instances.max(1))
            .map(|_| OrtBackend::load(env, &path, &config, sessions.options))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let solo = if sessions.solo_threads > sessions.options.intra_threads {
            let opts = SessionOptions { intra_threads: sessions.solo_threads, ..sessions.options.clone() };
            Some(OrtBackend::load(env, &path, &config, &opts)?)
        } else {
            None
        };
        let outputs = backends[0].outputs().to_vec();
        let batcher = Batcher::spawn(
            &name,
            backends,
            solo,
            config.input.item_shape().to_vec(),
            sessions.batcher.clone(),
            metrics.clone(),
        );
        tracing::info!(model = %name, version = %config.version, kind = ?config.kind, instances = sessions.instances, solo_threads = sessions.solo_threads, elapsed_ms = started.elapsed().as_millis() as u64, "model loaded");
        let kind = config.kind.as_str();
        let device = sessions.options.device.to_string();
        metrics
            .model_info
            .with_label_values(&[name.as_str(), config.version.as_str(), kind, device.as_str(), config.sha256.as_str()])
            .set(1);
        Ok(LoadedModel { config, batcher, outputs })
    }
}
