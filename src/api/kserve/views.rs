//! KServe v2 model views: metadata, Triton model configuration and statistics, computed from
//! what the core has loaded.

use serde::Serialize;

use super::registry::{classifier_input, ensemble_outputs, model_names, resolve, Target, PIPELINE_INPUT};
use super::tensor::DataType;
use crate::core::InferCore;
use crate::error::CoreError;
use crate::models::Layout;
use crate::stats::{Duration2, StatsSnapshot};

#[derive(Debug, Clone, Serialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// Triton model configuration (the fields dfserve fills in), JSON spelling.
#[derive(Debug, Clone, Serialize)]
pub struct ModelConfigView {
    pub name: String,
    pub platform: &'static str,
    pub backend: &'static str,
    pub max_batch_size: i32,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
    pub instance_group: Vec<InstanceGroup>,
    pub dynamic_batching: DynamicBatching,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigTensor {
    pub name: String,
    pub data_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// Without the batch dimension.
    pub dims: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceGroup {
    pub name: String,
    pub kind: &'static str,
    pub count: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicBatching {
    pub preferred_batch_size: Vec<i32>,
    pub max_queue_delay_microseconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct InferStatsView {
    pub success: Duration2,
    pub fail: Duration2,
    pub queue: Duration2,
    pub compute_input: Duration2,
    pub compute_infer: Duration2,
    pub compute_output: Duration2,
    pub cache_hit: Duration2,
    pub cache_miss: Duration2,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchStatsView {
    pub batch_size: u64,
    pub compute_input: Duration2,
    pub compute_infer: Duration2,
    pub compute_output: Duration2,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelStatsView {
    pub name: String,
    pub version: String,
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatsView,
    pub batch_stats: Vec<BatchStatsView>,
}

fn spec_shape(shape: &[i64]) -> Vec<i64> {
    // Batch dimension first, reported as variable.
    std::iter::once(-1).chain(shape.iter().skip(1).copied()).collect()
}

pub fn metadata(core: &InferCore, name: &str, version: Option<&str>) -> Result<ModelMetadata, CoreError> {
    let (target, version) = resolve(core, name, version)?;
    Ok(match target {
        Target::Tensor(m) => ModelMetadata {
            name: name.to_string(),
            versions: vec![version],
            platform: "onnxruntime_onnx",
            inputs: vec![TensorMetadata {
                name: m.config.input.name.clone(),
                datatype: "FP32",
                shape: std::iter::once(-1).chain(m.input_shape()).collect(),
            }],
            outputs: m
                .outputs
                .iter()
                .map(|o| TensorMetadata { name: o.name.clone(), datatype: "FP32", shape: spec_shape(&o.shape) })
                .collect(),
        },
        Target::Ensemble(c) => {
            let input = classifier_input(&c)?;
            ModelMetadata {
                name: name.to_string(),
                versions: vec![version],
                platform: "dfserve_ensemble",
                inputs: vec![TensorMetadata {
                    name: input.name.clone(),
                    datatype: "FP32",
                    shape: std::iter::once(-1).chain(input.shape()).collect(),
                }],
                outputs: ensemble_outputs(&c)
                    .into_iter()
                    .map(|name| TensorMetadata { name, datatype: "FP32", shape: vec![-1, 1] })
                    .collect(),
            }
        }
        Target::Pipeline => ModelMetadata {
            name: name.to_string(),
            versions: vec![version],
            platform: "dfserve_pipeline",
            // [-1, 1] agrees with the configuration's dims [1] under max_batch_size; requests may
            // also send [N].
            inputs: vec![TensorMetadata { name: PIPELINE_INPUT.into(), datatype: "BYTES", shape: vec![-1, 1] }],
            outputs: vec![
                TensorMetadata { name: "SCORE".into(), datatype: "FP32", shape: vec![-1, 1] },
                TensorMetadata { name: "LABEL".into(), datatype: "BYTES", shape: vec![-1, 1] },
                TensorMetadata { name: "FACES".into(), datatype: "INT32", shape: vec![-1, 1] },
                TensorMetadata { name: "VERDICT".into(), datatype: "BYTES", shape: vec![-1, 1] },
                // Hash-list matches of each image, as a JSON array (`[]` when none).
                TensorMetadata { name: "MATCHES".into(), datatype: "BYTES", shape: vec![-1, 1] },
                // C2PA provenance of each image, as JSON (`{"c2pa": {...}}`).
                TensorMetadata { name: "PROVENANCE".into(), datatype: "BYTES", shape: vec![-1, 1] },
            ],
        },
    })
}

pub fn config(core: &InferCore, name: &str, version: Option<&str>) -> Result<ModelConfigView, CoreError> {
    let (target, _) = resolve(core, name, version)?;
    let s = core.settings();
    let kind = if core.device() == "cpu" { "KIND_CPU" } else { "KIND_GPU" };
    let instances = InstanceGroup { name: format!("{name}_0"), kind, count: s.instances as i32 };
    // The batcher's cap is what the dynamic batcher forms; a request itself may carry more rows
    // (each is its own queue entry), up to --max-client-batch-size (and what the queue holds),
    // so that is `max_batch_size`.
    let max_batch_size = s.max_client_batch_size.min(s.batcher.max_queue_size) as i32;
    let dynamic_batching = DynamicBatching {
        preferred_batch_size: vec![s.batcher.max_batch_size as i32],
        max_queue_delay_microseconds: s.batcher.max_queue_delay.as_micros() as u64,
    };
    let tensor = |name: &str, dt: DataType, format: Option<&'static str>, dims: Vec<i64>| ConfigTensor {
        name: name.to_string(),
        data_type: dt.config_name(),
        format,
        dims,
    };
    Ok(match target {
        Target::Tensor(m) => ModelConfigView {
            name: name.to_string(),
            platform: "onnxruntime_onnx",
            backend: "onnxruntime",
            max_batch_size,
            input: vec![tensor(
                &m.config.input.name,
                DataType::Fp32,
                Some(match m.config.input.layout {
                    Layout::NHWC => "FORMAT_NHWC",
                    Layout::NCHW => "FORMAT_NCHW",
                }),
                m.input_shape(),
            )],
            output: m
                .outputs
                .iter()
                .map(|o| tensor(&o.name, DataType::Fp32, None, o.shape.iter().skip(1).copied().collect()))
                .collect(),
            instance_group: vec![instances],
            dynamic_batching,
        },
        Target::Ensemble(c) => {
            let input = classifier_input(&c)?;
            ModelConfigView {
                name: name.to_string(),
                platform: "dfserve_ensemble",
                backend: "dfserve",
                max_batch_size,
                input: vec![tensor(&input.name, DataType::Fp32, None, input.shape())],
                output: ensemble_outputs(&c).iter().map(|o| tensor(o, DataType::Fp32, None, vec![1])).collect(),
                instance_group: vec![instances],
                dynamic_batching,
            }
        }
        Target::Pipeline => ModelConfigView {
            name: name.to_string(),
            platform: "dfserve_pipeline",
            backend: "dfserve",
            max_batch_size,
            input: vec![tensor(PIPELINE_INPUT, DataType::Bytes, None, vec![1])],
            output: vec![
                tensor("SCORE", DataType::Fp32, None, vec![1]),
                tensor("LABEL", DataType::Bytes, None, vec![1]),
                tensor("FACES", DataType::Int32, None, vec![1]),
                tensor("VERDICT", DataType::Bytes, None, vec![1]),
                tensor("MATCHES", DataType::Bytes, None, vec![1]),
                tensor("PROVENANCE", DataType::Bytes, None, vec![1]),
            ],
            instance_group: vec![instances],
            dynamic_batching,
        },
    })
}

fn stats_view(name: &str, version: String, s: StatsSnapshot) -> ModelStatsView {
    let zero = Duration2::default();
    ModelStatsView {
        name: name.to_string(),
        version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: InferStatsView {
            success: s.success,
            fail: s.fail,
            queue: s.queue,
            // dfserve does not time input/output copies apart from the run; their counts must
            // still equal compute_infer's (perf_analyzer checks that).
            compute_input: Duration2 { count: s.compute_infer.count, ns: 0 },
            compute_infer: s.compute_infer,
            compute_output: Duration2 { count: s.compute_infer.count, ns: 0 },
            cache_hit: zero,
            cache_miss: zero,
        },
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| BatchStatsView {
                batch_size: b.batch_size,
                compute_input: Duration2 { count: b.compute_infer.count, ns: 0 },
                compute_infer: b.compute_infer,
                compute_output: Duration2 { count: b.compute_infer.count, ns: 0 },
            })
            .collect(),
    }
}

/// Statistics of one model, or of all models when `name` is empty.
pub fn statistics(core: &InferCore, name: &str, version: Option<&str>) -> Result<Vec<ModelStatsView>, CoreError> {
    let names = if name.is_empty() { model_names(core) } else { vec![name.to_string()] };
    names
        .iter()
        .map(|n| {
            let (target, v) = resolve(core, n, if name.is_empty() { None } else { version })?;
            Ok(match target {
                Target::Tensor(m) => stats_view(n, v, m.batcher.stats().snapshot()),
                Target::Pipeline => stats_view(n, v, core.pipeline_stats().snapshot()),
                // Each member's runs are counted under the member.
                Target::Ensemble(_) => stats_view(n, v, crate::stats::ModelStats::default().snapshot()),
            })
        })
        .collect()
}
