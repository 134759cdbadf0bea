//! `inference.GRPCInferenceService`: wire conversion only; semantics live in `api::kserve`.

use std::collections::BTreeMap;

use bytes::Bytes;
use tonic::{Request, Response, Status};

use super::pb::inference as pb;
use super::pb::inference::grpc_inference_service_server::GrpcInferenceService;
use super::status::to_status;
use crate::api::kserve::{self, DataType, InferRequest, InputTensor, Param, TensorData};
use crate::core::InferCore;
use crate::detect::Detector;
use crate::error::CoreError;
use crate::stats::Duration2;

pub struct KServe {
    pub core: std::sync::Arc<InferCore>,
    pub detector: std::sync::Arc<Detector>,
}

fn version(v: &str) -> Option<&str> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn param(p: pb::InferParameter) -> Option<Param> {
    use pb::infer_parameter::ParameterChoice as C;
    Some(match p.parameter_choice? {
        C::BoolParam(b) => Param::Bool(b),
        C::Int64Param(i) => Param::Int(i),
        C::Uint64Param(u) => Param::Int(i64::try_from(u).ok()?),
        C::DoubleParam(d) => Param::Double(d),
        C::StringParam(s) => Param::Str(s),
    })
}

/// Decodes a `ModelInferRequest` message and converts it as `ModelInfer` does. Public for the
/// fuzz targets in `fuzz/`.
pub fn infer_request_from_proto(bytes: &[u8]) -> Result<InferRequest, CoreError> {
    let msg = <pb::ModelInferRequest as prost::Message>::decode(bytes)
        .map_err(|e| CoreError::BadRequest(format!("bad ModelInferRequest: {e}")))?;
    to_request(msg)
}

fn to_request(req: pb::ModelInferRequest) -> Result<InferRequest, CoreError> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(CoreError::BadRequest(format!(
            "raw_input_contents has {} entries for {} inputs; send one per input, in order",
            raw.len(),
            req.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        let dt = DataType::parse(&input.datatype)?;
        let data = if !raw.is_empty() {
            if input.contents.is_some() {
                return Err(CoreError::BadRequest(format!(
                    "input '{}' has both contents and raw_input_contents",
                    input.name
                )));
            }
            TensorData::from_raw(&input.name, dt, raw[i].clone())?
        } else {
            let c = input.contents.unwrap_or_default();
            match dt {
                DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
                DataType::Int32 => TensorData::Int32(c.int_contents),
                DataType::Bytes => TensorData::Bytes(c.bytes_contents),
            }
        };
        inputs.push(InputTensor { name: input.name, shape: input.shape, data });
    }
    let outputs = if req.outputs.is_empty() { None } else { Some(req.outputs.into_iter().map(|o| o.name).collect()) };
    Ok(InferRequest {
        model: req.model_name,
        version: version(&req.model_version).map(str::to_string),
        id: if req.id.is_empty() { None } else { Some(req.id) },
        parameters: req.parameters.into_iter().filter_map(|(k, v)| Some((k, param(v)?))).collect::<BTreeMap<_, _>>(),
        inputs,
        outputs,
    })
}

fn to_response(resp: kserve::InferResponse) -> pb::ModelInferResponse {
    let mut raw = Vec::with_capacity(resp.outputs.len());
    let outputs = resp
        .outputs
        .into_iter()
        .map(|o| {
            raw.push(Bytes::from(o.data.to_raw()));
            pb::model_infer_response::InferOutputTensor {
                name: o.name,
                datatype: o.data.datatype().as_str().to_string(),
                shape: o.shape,
                ..Default::default()
            }
        })
        .collect();
    pb::ModelInferResponse {
        model_name: resp.model,
        model_version: resp.version,
        id: resp.id.unwrap_or_default(),
        outputs,
        raw_output_contents: raw,
        ..Default::default()
    }
}

fn dt(name: &str) -> i32 {
    pb::DataType::from_str_name(name).unwrap_or(pb::DataType::TypeInvalid) as i32
}

fn to_config(c: kserve::views::ModelConfigView) -> pb::ModelConfig {
    let tensor_in = |t: kserve::views::ConfigTensor| pb::ModelInput {
        name: t.name,
        data_type: dt(t.data_type),
        format: t.format.and_then(pb::model_input::Format::from_str_name).map(|f| f as i32).unwrap_or(0),
        dims: t.dims,
    };
    pb::ModelConfig {
        name: c.name,
        platform: c.platform.to_string(),
        backend: c.backend.to_string(),
        max_batch_size: c.max_batch_size,
        input: c.input.into_iter().map(tensor_in).collect(),
        output: c
            .output
            .into_iter()
            .map(|t| pb::ModelOutput { name: t.name, data_type: dt(t.data_type), dims: t.dims })
            .collect(),
        instance_group: c
            .instance_group
            .into_iter()
            .map(|g| pb::ModelInstanceGroup {
                name: g.name,
                count: g.count,
                kind: pb::model_instance_group::Kind::from_str_name(g.kind)
                    .unwrap_or(pb::model_instance_group::Kind::Auto) as i32,
                gpus: vec![],
            })
            .collect(),
        dynamic_batching: Some(pb::ModelDynamicBatching {
            preferred_batch_size: c.dynamic_batching.preferred_batch_size,
            max_queue_delay_microseconds: c.dynamic_batching.max_queue_delay_microseconds,
        }),
    }
}

fn dur(d: Duration2) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count: d.count, ns: d.ns })
}

fn to_stats(s: kserve::ModelStatsView) -> pb::ModelStatistics {
    let i = s.inference_stats;
    pb::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: dur(i.success),
            fail: dur(i.fail),
            queue: dur(i.queue),
            compute_input: dur(i.compute_input),
            compute_infer: dur(i.compute_infer),
            compute_output: dur(i.compute_output),
            cache_hit: dur(i.cache_hit),
            cache_miss: dur(i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: dur(b.compute_input),
                compute_infer: dur(b.compute_infer),
                compute_output: dur(b.compute_output),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for KServe {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse { ready: self.core.is_ready() }))
    }

    async fn model_ready(&self, r: Request<pb::ModelReadyRequest>) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        // Like Triton: an unknown model or version is simply not ready.
        let ready = match kserve::model_ready(&self.core, &r.name, version(&r.version)) {
            Ok(ready) => ready,
            Err(CoreError::ModelNotFound(_)) => false,
            Err(e) => return Err(to_status(e)),
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: kserve::SERVER_NAME.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: kserve::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = kserve::metadata(&self.core, &r.name, version(&r.version)).map_err(to_status)?;
        let t = |t: kserve::views::TensorMetadata| pb::model_metadata_response::TensorMetadata {
            name: t.name,
            datatype: t.datatype.to_string(),
            shape: t.shape,
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform.to_string(),
            inputs: m.inputs.into_iter().map(t).collect(),
            outputs: m.outputs.into_iter().map(t).collect(),
        }))
    }

    async fn model_infer(&self, r: Request<pb::ModelInferRequest>) -> Result<Response<pb::ModelInferResponse>, Status> {
        let r = r.into_inner();
        kserve::check_model(&self.core, &r.model_name, version(&r.model_version)).map_err(to_status)?;
        let req = to_request(r).map_err(to_status)?;
        let resp = kserve::infer(&self.detector, req).await.map_err(to_status)?;
        Ok(Response::new(to_response(resp)))
    }

    async fn model_config(
        &self,
        r: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let r = r.into_inner();
        let c = kserve::config(&self.core, &r.name, version(&r.version)).map_err(to_status)?;
        Ok(Response::new(pb::ModelConfigResponse { config: Some(to_config(c)) }))
    }

    async fn model_statistics(
        &self,
        r: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let r = r.into_inner();
        let stats = kserve::statistics(&self.core, &r.name, version(&r.version)).map_err(to_status)?;
        Ok(Response::new(pb::ModelStatisticsResponse { model_stats: stats.into_iter().map(to_stats).collect() }))
    }
}
