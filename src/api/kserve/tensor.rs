//! KServe v2 tensors as dfserve holds them between the wire formats and the models: element
//! types, data, the raw (binary) encoding, requests and responses, and the shape checks every
//! tensor goes through.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::registry::PIPELINE_MODEL;
use crate::error::CoreError;

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

/// Checks that `shape` is non-negative and agrees with the number of elements sent.
pub fn check_count(t: &InputTensor) -> Result<usize, CoreError> {
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

/// The model's declared output shape with the batch size filled in; a dynamic inner dimension
/// is resolved from the row length when it is the only one, else the row is reported flat.
pub fn output_shape(declared: &[i64], rows: usize, row_len: usize) -> Vec<i64> {
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
