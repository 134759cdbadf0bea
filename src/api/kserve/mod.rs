//! KServe v2 / Open Inference Protocol semantics, shared by the REST (`api::http::v2`) and gRPC
//! (`api::grpc::kserve`) front ends.
//!
//! The front ends only translate their wire format into [`InferRequest`] and back; everything
//! the protocol means (which models exist, what a tensor must look like, how rows become batch
//! entries, what the pipeline model returns) is decided here, once. Tensors and their encoding
//! are in [`tensor`], metadata/config/statistics views in [`views`].
//!
//! Two kinds of model are served:
//! - every loaded ONNX model as a **tensor model**: its real FP32 input, with a dynamic batch
//!   dimension. Each row of a request is one entry in that model's dynamic batcher, the same
//!   queue `/v1/detect` uses, so rows of many requests share model runs;
//! - the **pipeline model** `dfserve`: a `BYTES` input `IMAGE` of encoded images (one per row),
//!   returning per-image `SCORE`, `LABEL` and `FACES`, so a Triton client can send JPEGs. It
//!   goes through the detect layer like `/v1/detect`.

pub mod registry;
pub mod tensor;
pub mod views;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::core::{Classifier, InferCore, LoadedModel};
use crate::detect::DetectedImage;
use crate::detect::{DetectParams, Detector};
use crate::error::CoreError;
pub use registry::{check_model, model_names, model_ready, EXTENSIONS, PIPELINE_INPUT, PIPELINE_MODEL, SERVER_NAME};
use registry::{resolve, Target};
pub use tensor::{
    check_count, output_shape, DataType, InferRequest, InferResponse, InputTensor, OutputTensor, Param, TensorData,
};
pub use views::{config, metadata, statistics, ModelConfigView, ModelMetadata, ModelStatsView};

/// Runs one inference request.
pub async fn infer(detector: &Detector, req: InferRequest) -> Result<InferResponse, CoreError> {
    let core = detector.core();
    core.admit()?;
    let (target, version) = resolve(core, &req.model, req.version.as_deref())?;
    let outputs = match target {
        Target::Tensor(m) => infer_tensor(core, m, &req).await?,
        Target::Ensemble(c) => infer_ensemble(core, &c, &req).await?,
        Target::Pipeline => infer_pipeline(detector, &req).await?,
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

async fn infer_tensor(
    core: &InferCore,
    model: &LoadedModel,
    req: &InferRequest,
) -> Result<Vec<OutputTensor>, CoreError> {
    let (values, rows) = fp32_rows(core, req, &model.config.input.name, &model.input_shape())?;
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

/// The one FP32 input `name` of shape `[N, item...]` with its values, and `N` (at least 1, at
/// most `--max-client-batch-size`).
fn fp32_rows<'r>(
    core: &InferCore,
    req: &'r InferRequest,
    name: &str,
    item: &[i64],
) -> Result<(&'r [f32], usize), CoreError> {
    let input = single_input(req, name)?;
    let TensorData::Fp32(values) = &input.data else {
        return Err(CoreError::BadRequest(format!(
            "input '{}' must be FP32, got {}",
            input.name,
            input.data.datatype().as_str()
        )));
    };
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
    core.check_items(rows, &format!("rows of input '{}'", input.name))?;
    Ok((values, rows))
}

/// An ensemble or probe as a tensor model: the members' shared input, each row scored by every
/// member through its own batcher and combined (and calibrated) as `/v1/detect` does.
async fn infer_ensemble(core: &InferCore, c: &Classifier, req: &InferRequest) -> Result<Vec<OutputTensor>, CoreError> {
    let input = registry::classifier_input(c)?;
    let (values, rows) = fp32_rows(core, req, &input.name, &input.shape())?;
    c.check_capacity()?;
    let deadline = core.request_deadline();
    let futures = values.chunks_exact(input.item_len()).map(|row| c.score(vec![row.to_vec()], deadline));
    let scored = tokio::time::timeout_at(deadline.into(), futures::future::join_all(futures))
        .await
        .map_err(|_| CoreError::DeadlineExceeded(core.settings().request_timeout))?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let names = registry::ensemble_outputs(c);
    let shape = vec![rows as i64, 1];
    let mut outputs = vec![OutputTensor {
        name: names[0].clone(),
        shape: shape.clone(),
        data: TensorData::Fp32(scored.iter().map(|f| f.score).collect()),
    }];
    for (i, name) in names[1..].iter().enumerate() {
        outputs.push(OutputTensor {
            name: name.clone(),
            shape: shape.clone(),
            data: TensorData::Fp32(scored.iter().map(|f| f.members.get(i).map_or(f.score, |m| m.score)).collect()),
        });
    }
    Ok(outputs)
}

fn param_str<'p>(req: &'p InferRequest, key: &str) -> Result<Option<&'p str>, CoreError> {
    match req.parameters.get(key) {
        None => Ok(None),
        Some(Param::Str(s)) => Ok(Some(s)),
        Some(other) => Err(CoreError::BadRequest(format!("parameter '{key}' must be a string, got {other:?}"))),
    }
}

/// Options of the pipeline model, from request parameters `model`, `threshold`, `mode`.
fn pipeline_params(req: &InferRequest) -> Result<DetectParams, CoreError> {
    let threshold = match req.parameters.get("threshold") {
        None => None,
        Some(Param::Double(d)) => Some(*d as f32),
        Some(Param::Int(i)) => Some(*i as f32),
        Some(other) => {
            return Err(CoreError::BadRequest(format!("parameter 'threshold' must be a number, got {other:?}")))
        }
    };
    let audit = match req.parameters.get("audit") {
        None => false,
        Some(Param::Bool(b)) => *b,
        Some(other) => return Err(CoreError::BadRequest(format!("parameter 'audit' must be a bool, got {other:?}"))),
    };
    Ok(DetectParams {
        model: param_str(req, "model")?.map(str::to_string),
        threshold,
        mode: param_str(req, "mode")?.map(str::to_string),
        audit,
        ..Default::default()
    })
}

async fn infer_pipeline(detector: &Detector, req: &InferRequest) -> Result<Vec<OutputTensor>, CoreError> {
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
    detector.core().check_items(images.len(), &format!("rows of input '{PIPELINE_INPUT}'"))?;
    let opts = detector.options(&pipeline_params(req)?)?;
    let deadline = detector.core().request_deadline();
    let futures = images.iter().map(|img| detector.detect_image(img.clone(), &opts, deadline));
    let results: Vec<DetectedImage> = futures::future::join_all(futures)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| row_error(i, e)))
        .collect::<Result<_, _>>()?;
    let n = results.len() as i64;
    let shape = if input.shape.len() == 2 { vec![n, 1] } else { vec![n] };
    let audit = opts.audit.then(|| OutputTensor {
        name: "AUDIT".into(),
        shape: shape.clone(),
        data: TensorData::Bytes(
            images
                .iter()
                .map(|img| {
                    let record = crate::detect::audit::record(img, &opts, detector.core());
                    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
                })
                .collect(),
        ),
    });
    let mut outputs = vec![
        OutputTensor {
            name: "SCORE".into(),
            shape: shape.clone(),
            data: TensorData::Fp32(results.iter().map(|r| r.score.unwrap_or(-1.0)).collect()),
        },
        OutputTensor {
            name: "LABEL".into(),
            shape: shape.clone(),
            data: TensorData::Bytes(results.iter().map(|r| Bytes::from_static(r.word().as_bytes())).collect()),
        },
        OutputTensor {
            name: "FACES".into(),
            shape: shape.clone(),
            data: TensorData::Int32(results.iter().map(|r| r.faces.len() as i32).collect()),
        },
        OutputTensor {
            name: "VERDICT".into(),
            shape: shape.clone(),
            data: TensorData::Bytes(
                results.iter().map(|r| Bytes::from_static(r.judgement.verdict.as_str().as_bytes())).collect(),
            ),
        },
        OutputTensor {
            name: "PROVENANCE".into(),
            shape: shape.clone(),
            data: TensorData::Bytes(
                results
                    .iter()
                    .map(|r| {
                        Bytes::from(
                            serde_json::to_vec(&r.provenance.as_deref().cloned().unwrap_or_default())
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
        },
        OutputTensor {
            name: "MATCHES".into(),
            shape,
            data: TensorData::Bytes(
                results.iter().map(|r| Bytes::from(serde_json::to_vec(&r.matches).unwrap_or_default())).collect(),
            ),
        },
    ];
    // Only when asked (parameter `audit`), so clients that list outputs see the usual six.
    outputs.extend(audit);
    Ok(outputs)
}

/// A failed row fails the request (a tensor protocol has no per-row errors); say which row.
fn row_error(row: usize, e: CoreError) -> CoreError {
    match e {
        CoreError::UndecodableImage(m) => CoreError::UndecodableImage(format!("row {row}: {m}")),
        CoreError::BadRequest(m) => CoreError::BadRequest(format!("row {row}: {m}")),
        other => other,
    }
}
