//! `/v2`: KServe v2 / Open Inference Protocol over HTTP/REST, with Triton's binary tensor data,
//! model configuration and statistics extensions. Parsing and rendering only; the protocol's
//! meaning lives in `api::kserve`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::{body_error, status_of};
use super::json_tensor;
use super::state::AppState;
use crate::api::kserve::{self, DataType, InferRequest, InputTensor, Param, TensorData};
use crate::error::CoreError;

/// Errors on `/v2` use the protocol's body: `{"error": "..."}`.
pub struct V2Error(CoreError);

impl From<CoreError> for V2Error {
    fn from(e: CoreError) -> Self {
        V2Error(e)
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (status_of(&self.0), Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

type V2Result<T> = Result<T, V2Error>;

const HEADER_LEN: &str = "inference-header-content-length";

fn model_and_version(p: &HashMap<String, String>) -> (String, Option<String>) {
    (p.get("model").cloned().unwrap_or_default(), p.get("version").cloned())
}

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": kserve::SERVER_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": kserve::EXTENSIONS,
    }))
}

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(s): State<AppState>) -> StatusCode {
    if s.core.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub async fn model_metadata(
    State(s): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> V2Result<Json<Value>> {
    let (m, v) = model_and_version(&p);
    Ok(Json(json!(kserve::metadata(&s.core, &m, v.as_deref())?)))
}

pub async fn model_ready(State(s): State<AppState>, Path(p): Path<HashMap<String, String>>) -> V2Result<StatusCode> {
    let (m, v) = model_and_version(&p);
    Ok(if kserve::model_ready(&s.core, &m, v.as_deref())? { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE })
}

pub async fn model_config(State(s): State<AppState>, Path(p): Path<HashMap<String, String>>) -> V2Result<Json<Value>> {
    let (m, v) = model_and_version(&p);
    Ok(Json(json!(kserve::config(&s.core, &m, v.as_deref())?)))
}

pub async fn model_stats(State(s): State<AppState>, Path(p): Path<HashMap<String, String>>) -> V2Result<Json<Value>> {
    let (m, v) = model_and_version(&p);
    Ok(Json(json!({ "model_stats": kserve::statistics(&s.core, &m, v.as_deref())? })))
}

pub async fn all_stats(State(s): State<AppState>) -> V2Result<Json<Value>> {
    Ok(Json(json!({ "model_stats": kserve::statistics(&s.core, "", None)? })))
}

#[derive(Deserialize)]
struct JsonRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<JsonInput>,
    outputs: Option<Vec<JsonOutput>>,
}

#[derive(Deserialize)]
struct JsonInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    /// Kept as text and read into typed values by `json_tensor`.
    data: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn bad(msg: impl Into<String>) -> CoreError {
    CoreError::BadRequest(msg.into())
}

/// `POST /v2/models/{model}[/versions/{version}]/infer`, JSON or binary tensor data.
pub async fn infer(
    State(s): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> V2Result<Response> {
    let body = body.map_err(|e| body_error(e.status(), "request body", e.body_text()))?;
    let (model, version) = model_and_version(&p);
    kserve::check_model(&s.core, &model, version.as_deref())?;
    let max_rows = s.core.settings().max_client_batch_size;
    let (req, binary_outputs) = parse_request(model, version, &headers, body, max_rows)?;
    let resp = kserve::infer(&s.detector, req).await?;
    Ok(render_response(resp, &binary_outputs))
}

/// Parses a KServe REST infer body (JSON, or a JSON header followed by binary tensors) exactly
/// as the handler does. Public for the fuzz targets in `fuzz/`.
pub fn parse_infer_body(header_len: Option<&str>, body: Bytes) -> Result<InferRequest, CoreError> {
    let mut headers = HeaderMap::new();
    if let Some(v) = header_len.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(HEADER_LEN, v);
    }
    parse_request(String::new(), None, &headers, body, 32).map(|(r, _)| r)
}

/// Which outputs go back as binary: `None` means all of them.
struct BinaryOutputs {
    all: bool,
    names: Vec<String>,
}

fn parse_request(
    model: String,
    version: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
    max_rows: usize,
) -> Result<(InferRequest, BinaryOutputs), CoreError> {
    // A backstop behind the declared shape: no legitimate tensor holds more than a mebi-value
    // per row (the largest model input, the detector's 320 x 240 x 3, is 230,400 values).
    let max_elements = max_rows.saturating_mul(1 << 20);
    let header_len = match headers.get(HEADER_LEN) {
        None => body.len(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("Inference-Header-Content-Length is not a number"))?,
    };
    if header_len > body.len() {
        return Err(bad(format!(
            "Inference-Header-Content-Length is {header_len} but the body has only {} bytes",
            body.len()
        )));
    }
    let json: JsonRequest =
        serde_json::from_slice(&body[..header_len]).map_err(|e| bad(format!("bad inference request JSON: {e}")))?;
    let mut binary = body.slice(header_len..);
    let mut inputs = Vec::with_capacity(json.inputs.len());
    for input in json.inputs {
        let dt = DataType::parse(&input.datatype)?;
        // Refused from the declared shape, before the data is decoded: a BYTES row can be 4 bytes
        // on the wire and a tensor of millions of them would be decoded for nothing.
        if let Some(rows) = input.shape.first().filter(|r| **r > max_rows as i64) {
            return Err(CoreError::TooManyItems(format!(
                "input '{}' declares {rows} rows, over the limit of {max_rows} (--max-client-batch-size); split the request",
                input.name
            )));
        }
        let data = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().ok_or_else(|| {
                    bad(format!("input '{}': binary_data_size must be a non-negative integer", input.name))
                })? as usize;
                if size > binary.len() {
                    return Err(bad(format!(
                        "input '{}': binary_data_size is {size} but only {} binary bytes remain",
                        input.name,
                        binary.len()
                    )));
                }
                let raw = binary.split_to(size);
                TensorData::from_raw(&input.name, dt, raw)?
            }
            None => {
                let data = input
                    .data
                    .as_ref()
                    .ok_or_else(|| bad(format!("input '{}' has neither data nor binary_data_size", input.name)))?;
                // At most what the declared shape says (the row cap was checked above), and never
                // more than a request of the largest model input at the row cap.
                let declared = input
                    .shape
                    .iter()
                    .try_fold(1usize, |acc, d| usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d)))
                    .ok_or_else(|| bad(format!("input '{}': shape {:?} is not valid", input.name, input.shape)))?;
                json_tensor::read(&input.name, dt, data, declared.min(max_elements))?
            }
        };
        inputs.push(InputTensor { name: input.name, shape: input.shape, data });
    }
    if !binary.is_empty() {
        return Err(bad(format!("{} binary bytes follow the JSON header but no input claims them", binary.len())));
    }
    let all_binary = json.parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    let mut binary_names = Vec::new();
    let outputs = json.outputs.map(|outs| {
        outs.into_iter()
            .map(|o| {
                if o.parameters.get("binary_data").and_then(Value::as_bool).unwrap_or(false) {
                    binary_names.push(o.name.clone());
                }
                o.name
            })
            .collect()
    });
    let parameters = json
        .parameters
        .into_iter()
        .filter_map(|(k, v)| {
            let p = match v {
                Value::Bool(b) => Param::Bool(b),
                Value::String(s) => Param::Str(s),
                Value::Number(n) => match n.as_i64() {
                    Some(i) => Param::Int(i),
                    None => Param::Double(n.as_f64()?),
                },
                _ => return None,
            };
            Some((k, p))
        })
        .collect::<BTreeMap<_, _>>();
    Ok((
        InferRequest { model, version, id: json.id, parameters, inputs, outputs },
        BinaryOutputs { all: all_binary, names: binary_names },
    ))
}

fn json_values(data: &TensorData) -> Value {
    match data {
        TensorData::Fp32(v) => json!(v),
        TensorData::Int32(v) => json!(v),
        TensorData::Bytes(v) => {
            Value::Array(v.iter().map(|b| Value::String(String::from_utf8_lossy(b).into_owned())).collect())
        }
    }
}

fn render_response(resp: kserve::InferResponse, binary: &BinaryOutputs) -> Response {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let outputs: Vec<Value> = resp
        .outputs
        .iter()
        .map(|o| {
            let mut out = json!({ "name": o.name, "datatype": o.data.datatype().as_str(), "shape": o.shape });
            if binary.all || binary.names.contains(&o.name) {
                let raw = o.data.to_raw();
                out["parameters"] = json!({ "binary_data_size": raw.len() });
                blobs.push(raw);
            } else {
                out["data"] = json_values(&o.data);
            }
            out
        })
        .collect();
    let mut head = json!({ "model_name": resp.model, "model_version": resp.version, "outputs": outputs });
    if let Some(id) = resp.id {
        head["id"] = Value::String(id);
    }
    let head = serde_json::to_vec(&head).expect("serialising JSON values cannot fail");
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], head).into_response();
    }
    let head_len = head.len();
    let mut body = head;
    for b in blobs {
        body.extend_from_slice(&b);
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::HeaderName::from_static(HEADER_LEN), HeaderValue::from(head_len)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)], body: Vec<u8>) -> Result<(InferRequest, BinaryOutputs), CoreError> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        parse_request("m".into(), None, &h, Bytes::from(body), 32)
    }

    #[test]
    fn json_tensors_flatten_nested_data() {
        let body = br#"{"id":"7","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#;
        let (r, _) = req(&[], body.to_vec()).unwrap();
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.5]));
    }

    #[test]
    fn binary_inputs_are_cut_from_the_tail_in_order() {
        let head = br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}},{"name":"b","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":7}}],"outputs":[{"name":"o","parameters":{"binary_data":true}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&2.5f32.to_le_bytes());
        body.extend_from_slice(&[3, 0, 0, 0, b'j', b'p', b'g']);
        let (r, bin) = req(&[(HEADER_LEN, &head.len().to_string())], body).unwrap();
        assert_eq!(r.inputs[0].data, TensorData::Fp32(vec![2.5]));
        assert_eq!(r.inputs[1].data, TensorData::Bytes(vec![Bytes::from_static(b"jpg")]));
        assert_eq!(bin.names, vec!["o".to_string()]);
    }

    #[test]
    fn lying_binary_headers_are_rejected() {
        let head = br#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":400}}]}"#;
        let mut body = head.to_vec();
        body.extend_from_slice(&[0; 4]);
        let e = req(&[(HEADER_LEN, &head.len().to_string())], body.clone()).err().unwrap();
        assert!(e.to_string().contains("only 4 binary bytes remain"), "{e}");
        let e = req(&[(HEADER_LEN, "100000")], body.clone()).err().unwrap();
        assert!(e.to_string().contains("Inference-Header-Content-Length"), "{e}");
        let e = req(&[(HEADER_LEN, "nope")], body).err().unwrap();
        assert!(e.to_string().contains("not a number"), "{e}");
        let e = req(&[], b"{not json".to_vec()).err().unwrap();
        assert!(e.to_string().contains("JSON"), "{e}");
    }
}
