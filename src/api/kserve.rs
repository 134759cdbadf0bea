//! KServe v2 / Open Inference Protocol semantics, shared by the REST (`api::http::v2`) and gRPC
//! (`api::grpc::kserve`) front ends.
//!
//! The front ends only translate their wire format into [`InferRequest`] and back; everything
//! the protocol means (which models exist, what a tensor must look like, how rows become batch
//! entries, what the pipeline model returns) is decided here, once.
//!
//! Two kinds of model are served:
//! - every loaded ONNX model as a **tensor model**: its real FP32 input, with a dynamic batch
//!   dimension. Each row of a request is one entry in that model's dynamic batcher, the same
//!   queue `/v1/detect` uses, so rows of many requests share model runs;
//! - the **pipeline model** `dfserve`: a `BYTES` input `IMAGE` of encoded images (one per row),
//!   returning per-image `SCORE`, `LABEL` and `FACES`, so a Triton client can send JPEGs.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::core::{DetectOptions, ImageResult, InferCore, LoadedModel, Mode};
use crate::error::CoreError;
use crate::models::Layout;
use crate::stats::{Duration2, StatsSnapshot};

/// Name of the whole-pipeline model (encoded images in, scores out).
pub const PIPELINE_MODEL: &str = "dfserve";
pub const PIPELINE_INPUT: &str = "IMAGE";
pub const SERVER_NAME: &str = "dfserve";
/// Extensions advertised in server metadata.
pub const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "model_configuration", "statistics"];

/// Tensor element types dfserve reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Fp32,
    Int32,
    Bytes,
}

impl DataType {
    pub fn parse(s: &str) -> Result<DataType, CoreError> {
        match s {
            "FP32" => Ok(DataType::Fp32),
            "INT32" => Ok(DataType::Int32),
            "BYTES" => Ok(DataType::Bytes),
            other => Err(CoreError::BadRequest(format!(
                "datatype '{other}' is not supported here: dfserve models take FP32 (tensor models) or BYTES (the '{PIPELINE_MODEL}' model)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Fp32 => "FP32",
            DataType::Int32 => "INT32",
            DataType::Bytes => "BYTES",
        }
    }

    /// Triton model-config spelling (`TYPE_FP32`, ...).
    pub fn config_name(self) -> &'static str {
        match self {
            DataType::Fp32 => "TYPE_FP32",
            DataType::Int32 => "TYPE_INT32",
            DataType::Bytes => "TYPE_STRING",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Fp32(Vec<f32>),
    Int32(Vec<i32>),
    Bytes(Vec<Bytes>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Fp32(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// The protocol's raw encoding: little-endian values; BYTES elements each prefixed by a
    /// 4-byte little-endian length.
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            TensorData::Fp32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
                for b in v {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
                out
            }
        }
    }

    /// Decodes raw bytes of `datatype` (see [`TensorData::to_raw`]) for tensor `name`.
    pub fn from_raw(name: &str, datatype: DataType, raw: Bytes) -> Result<TensorData, CoreError> {
        match datatype {
            DataType::Fp32 | DataType::Int32 => {
                if !raw.len().is_multiple_of(4) {
                    return Err(CoreError::BadRequest(format!(
                        "input '{name}': {} raw bytes is not a whole number of 4-byte {} values",
                        raw.len(),
                        datatype.as_str()
                    )));
                }
                let words = raw.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
                Ok(match datatype {
                    DataType::Fp32 => TensorData::Fp32(words.map(f32::from_le_bytes).collect()),
                    _ => TensorData::Int32(words.map(i32::from_le_bytes).collect()),
                })
            }
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut at = 0usize;
                while at < raw.len() {
                    if raw.len() - at < 4 {
                        return Err(CoreError::BadRequest(format!(
                            "input '{name}': BYTES element {} has a truncated 4-byte length prefix",
                            out.len()
                        )));
                    }
                    let len = u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
                    at += 4;
                    if len > raw.len() - at {
                        return Err(CoreError::BadRequest(format!(
                            "input '{name}': BYTES element {} declares {len} bytes but only {} remain",
                            out.len(),
                            raw.len() - at
                        )));
                    }
                    out.push(raw.slice(at..at + len));
                    at += len;
                }
                Ok(TensorData::Bytes(out))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

#[derive(Debug, Clone)]
pub struct OutputTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

/// Request-level parameters (`parameters` in both wire formats).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, Default)]
pub struct InferRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: Option<String>,
    pub parameters: BTreeMap<String, Param>,
    pub inputs: Vec<InputTensor>,
    /// Requested outputs; `None` means all.
    pub outputs: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct InferResponse {
    pub model: String,
    pub version: String,
    pub id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

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

/// A model the protocol can address.
enum Target<'a> {
    Tensor(&'a LoadedModel),
    Pipeline,
}

const PIPELINE_VERSION: &str = "1";

fn resolve<'a>(core: &'a InferCore, name: &str, version: Option<&str>) -> Result<(Target<'a>, String), CoreError> {
    let (target, have) = if name == PIPELINE_MODEL {
        (Target::Pipeline, PIPELINE_VERSION.to_string())
    } else {
        let m = core.model(name).ok_or_else(|| CoreError::ModelNotFound(format!("'{name}'")))?;
        (Target::Tensor(m), m.config.version.clone())
    };
    match version {
        Some(v) if !v.is_empty() && v != have => {
            Err(CoreError::ModelNotFound(format!("'{name}' version '{v}' (loaded: version {have})")))
        }
        _ => Ok((target, have)),
    }
}

/// NOT_FOUND unless the model (and version, if given) is served; front ends check this before
/// parsing tensors, so an unknown model is reported as such whatever the body holds.
pub fn check_model(core: &InferCore, name: &str, version: Option<&str>) -> Result<(), CoreError> {
    resolve(core, name, version).map(|_| ())
}

/// Names of every model the protocol serves: each loaded ONNX model, then the pipeline.
pub fn model_names(core: &InferCore) -> Vec<String> {
    core.loaded_models().map(|m| m.config.name.clone()).chain([PIPELINE_MODEL.to_string()]).collect()
}

/// Whether the model exists (and the version matches) and the server is ready.
pub fn model_ready(core: &InferCore, name: &str, version: Option<&str>) -> Result<bool, CoreError> {
    resolve(core, name, version)?;
    Ok(core.is_ready())
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
    // (each is its own queue entry), up to what the queue holds, so that is `max_batch_size`.
    let max_batch_size = s.batcher.max_queue_size as i32;
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
            })
        })
        .collect()
}

/// Runs one inference request.
pub async fn infer(core: &InferCore, req: InferRequest) -> Result<InferResponse, CoreError> {
    core.admit()?;
    let (target, version) = resolve(core, &req.model, req.version.as_deref())?;
    let outputs = match target {
        Target::Tensor(m) => infer_tensor(core, m, &req).await?,
        Target::Pipeline => infer_pipeline(core, &req).await?,
    };
    let outputs = select_outputs(outputs, req.outputs.as_deref())?;
    Ok(InferResponse { model: req.model, version, id: req.id, outputs })
}

fn select_outputs(all: Vec<OutputTensor>, wanted: Option<&[String]>) -> Result<Vec<OutputTensor>, CoreError> {
    let Some(wanted) = wanted else { return Ok(all) };
    let mut by_name: BTreeMap<String, OutputTensor> = all.into_iter().map(|o| (o.name.clone(), o)).collect();
    let known: Vec<String> = by_name.keys().cloned().collect();
    wanted
        .iter()
        .map(|w| {
            by_name.remove(w).ok_or_else(|| {
                CoreError::BadRequest(format!("unknown output '{w}' (this model has: {})", known.join(", ")))
            })
        })
        .collect()
}

fn single_input<'r>(req: &'r InferRequest, want: &str) -> Result<&'r InputTensor, CoreError> {
    match req.inputs.as_slice() {
        [one] if one.name == want => Ok(one),
        [one] => Err(CoreError::BadRequest(format!(
            "model '{}' has one input, '{want}'; the request names '{}'",
            req.model, one.name
        ))),
        many => Err(CoreError::BadRequest(format!(
            "model '{}' takes exactly one input ('{want}'), the request has {}",
            req.model,
            many.len()
        ))),
    }
}

/// Checks that `shape` is non-negative and agrees with the number of elements sent.
fn check_count(t: &InputTensor) -> Result<usize, CoreError> {
    if t.shape.iter().any(|d| *d < 0) {
        return Err(CoreError::BadRequest(format!("input '{}': shape {:?} has a negative dimension", t.name, t.shape)));
    }
    let want = t
        .shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize))
        .ok_or_else(|| CoreError::BadRequest(format!("input '{}': shape {:?} is too large", t.name, t.shape)))?;
    if want != t.data.len() {
        return Err(CoreError::BadRequest(format!(
            "input '{}': shape {:?} needs {want} elements, the request carries {}",
            t.name,
            t.shape,
            t.data.len()
        )));
    }
    Ok(want)
}

async fn infer_tensor(
    core: &InferCore,
    model: &LoadedModel,
    req: &InferRequest,
) -> Result<Vec<OutputTensor>, CoreError> {
    let input = single_input(req, &model.config.input.name)?;
    let TensorData::Fp32(values) = &input.data else {
        return Err(CoreError::BadRequest(format!(
            "input '{}' must be FP32, got {}",
            input.name,
            input.data.datatype().as_str()
        )));
    };
    let item = model.input_shape();
    if input.shape.len() != item.len() + 1 || input.shape[1..] != item[..] {
        return Err(CoreError::BadRequest(format!(
            "input '{}' must have shape [N, {}], got {:?}",
            input.name,
            item.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            input.shape
        )));
    }
    check_count(input)?;
    let rows = input.shape[0] as usize;
    if rows == 0 {
        return Err(CoreError::BadRequest(format!("input '{}' has no rows", input.name)));
    }
    let item_len = model.batcher.item_len();
    let deadline = core.request_deadline();
    // Every row is its own batch entry, so rows of this and other requests batch together.
    let futures = values.chunks_exact(item_len).map(|row| model.batcher.infer(row.to_vec(), deadline));
    let results = tokio::time::timeout_at(deadline.into(), futures::future::join_all(futures))
        .await
        .map_err(|_| CoreError::DeadlineExceeded(core.settings().request_timeout))?;
    let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(model
        .outputs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let row_len = results[0].rows[i].len();
            let mut data = Vec::with_capacity(rows * row_len);
            for r in &results {
                data.extend_from_slice(&r.rows[i]);
            }
            OutputTensor {
                name: spec.name.clone(),
                shape: output_shape(&spec.shape, rows, row_len),
                data: TensorData::Fp32(data),
            }
        })
        .collect())
}

/// The model's declared output shape with the batch size filled in; a dynamic inner dimension
/// is resolved from the row length when it is the only one, else the row is reported flat.
fn output_shape(declared: &[i64], rows: usize, row_len: usize) -> Vec<i64> {
    let inner = &declared[1.min(declared.len())..];
    let known: i64 = inner.iter().filter(|d| **d >= 0).product();
    let unknown = inner.iter().filter(|d| **d < 0).count();
    let dims: Vec<i64> = match unknown {
        0 if known as usize == row_len => inner.to_vec(),
        1 if known > 0 && (row_len as i64) % known == 0 => {
            inner.iter().map(|d| if *d < 0 { row_len as i64 / known } else { *d }).collect()
        }
        _ => vec![row_len as i64],
    };
    std::iter::once(rows as i64).chain(dims).collect()
}

fn param_str<'p>(req: &'p InferRequest, key: &str) -> Result<Option<&'p str>, CoreError> {
    match req.parameters.get(key) {
        None => Ok(None),
        Some(Param::Str(s)) => Ok(Some(s)),
        Some(other) => Err(CoreError::BadRequest(format!("parameter '{key}' must be a string, got {other:?}"))),
    }
}

/// Options of the pipeline model, from request parameters `model`, `threshold`, `mode`.
fn pipeline_options(req: &InferRequest) -> Result<DetectOptions, CoreError> {
    let threshold = match req.parameters.get("threshold") {
        None => None,
        Some(Param::Double(d)) => Some(*d as f32),
        Some(Param::Int(i)) => Some(*i as f32),
        Some(other) => {
            return Err(CoreError::BadRequest(format!("parameter 'threshold' must be a number, got {other:?}")))
        }
    };
    let mode = match param_str(req, "mode")? {
        None | Some("faces") => Mode::Faces,
        Some("whole") => Mode::Whole,
        Some(other) => {
            return Err(CoreError::BadRequest(format!("parameter 'mode' must be 'faces' or 'whole', got '{other}'")))
        }
    };
    Ok(DetectOptions { model: param_str(req, "model")?.map(str::to_string), threshold, mode })
}

async fn infer_pipeline(core: &InferCore, req: &InferRequest) -> Result<Vec<OutputTensor>, CoreError> {
    let input = single_input(req, PIPELINE_INPUT)?;
    let TensorData::Bytes(images) = &input.data else {
        return Err(CoreError::BadRequest(format!(
            "input '{PIPELINE_INPUT}' must be BYTES (encoded images), got {}",
            input.data.datatype().as_str()
        )));
    };
    let shape_ok = matches!(input.shape.as_slice(), [_] | [_, 1]);
    if !shape_ok {
        return Err(CoreError::BadRequest(format!(
            "input '{PIPELINE_INPUT}' must have shape [N] or [N, 1], got {:?}",
            input.shape
        )));
    }
    check_count(input)?;
    if images.is_empty() {
        return Err(CoreError::BadRequest(format!("input '{PIPELINE_INPUT}' has no rows")));
    }
    let opts = pipeline_options(req)?;
    core.check_options(&opts)?;
    let deadline = core.request_deadline();
    let futures = images.iter().map(|img| core.detect(img.clone(), &opts, deadline));
    let results: Vec<ImageResult> = futures::future::join_all(futures)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| row_error(i, e)))
        .collect::<Result<_, _>>()?;
    let n = results.len() as i64;
    let shape = if input.shape.len() == 2 { vec![n, 1] } else { vec![n] };
    Ok(vec![
        OutputTensor {
            name: "SCORE".into(),
            shape: shape.clone(),
            data: TensorData::Fp32(results.iter().map(|r| r.score.unwrap_or(-1.0)).collect()),
        },
        OutputTensor {
            name: "LABEL".into(),
            shape: shape.clone(),
            data: TensorData::Bytes(
                results
                    .iter()
                    .map(|r| Bytes::from_static(crate::core::verdict(r.status, r.label).as_bytes()))
                    .collect(),
            ),
        },
        OutputTensor {
            name: "FACES".into(),
            shape,
            data: TensorData::Int32(results.iter().map(|r| r.faces.len() as i32).collect()),
        },
    ])
}

/// A failed row fails the request (a tensor protocol has no per-row errors); say which row.
fn row_error(row: usize, e: CoreError) -> CoreError {
    match e {
        CoreError::UndecodableImage(m) => CoreError::UndecodableImage(format!("row {row}: {m}")),
        CoreError::BadRequest(m) => CoreError::BadRequest(format!("row {row}: {m}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trips() {
        for data in [
            TensorData::Fp32(vec![1.5, -2.0, 0.0]),
            TensorData::Int32(vec![7, -1]),
            TensorData::Bytes(vec![Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"\x00\xff")]),
        ] {
            let raw = Bytes::from(data.to_raw());
            assert_eq!(TensorData::from_raw("x", data.datatype(), raw).unwrap(), data);
        }
    }

    #[test]
    fn bad_raw_bytes_are_rejected_with_the_reason() {
        let err = TensorData::from_raw("x", DataType::Fp32, Bytes::from_static(&[0, 0, 0])).unwrap_err();
        assert!(err.to_string().contains("4-byte"), "{err}");
        let err = TensorData::from_raw("x", DataType::Bytes, Bytes::from_static(&[9, 0, 0, 0, 1, 2])).unwrap_err();
        assert!(err.to_string().contains("declares 9 bytes"), "{err}");
        let err = TensorData::from_raw("x", DataType::Bytes, Bytes::from_static(&[1, 0, 0, 0, 1, 2, 0])).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(DataType::parse("INT64").is_err());
    }

    #[test]
    fn count_must_match_shape() {
        let t = InputTensor { name: "x".into(), shape: vec![2, 3], data: TensorData::Fp32(vec![0.0; 5]) };
        assert!(check_count(&t).unwrap_err().to_string().contains("needs 6 elements"));
        let t = InputTensor { name: "x".into(), shape: vec![-2, 3], data: TensorData::Fp32(vec![]) };
        assert!(check_count(&t).is_err());
        let t = InputTensor { name: "x".into(), shape: vec![i64::MAX, i64::MAX], data: TensorData::Fp32(vec![]) };
        assert!(check_count(&t).is_err());
    }

    #[test]
    fn output_shapes() {
        assert_eq!(output_shape(&[-1, 1], 3, 1), vec![3, 1]);
        assert_eq!(output_shape(&[-1, 4420, 2], 2, 8840), vec![2, 4420, 2]);
        assert_eq!(output_shape(&[-1, -1, 2], 2, 10), vec![2, 5, 2]);
        assert_eq!(output_shape(&[-1, -1, -1], 2, 10), vec![2, 10]);
    }
}
