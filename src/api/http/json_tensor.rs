//! KServe REST tensors in JSON: the `data` array read straight into typed values.
//!
//! The request is first parsed with `data` kept as raw text, then that text is streamed into
//! a `Vec<f32>`, `Vec<i32>` or `Vec<Bytes>`, flattening nested arrays on the way and stopping
//! at the first element past the limit. No `serde_json::Value` tree is built: one of those
//! costs about 32 bytes per element, so a 40 MB body of `0,0,0,...` would have taken some
//! 600 MB before any check ran.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::api::kserve::{DataType, TensorData};
use crate::error::CoreError;

/// Reads `raw` (a JSON number, string or nested array) as `dt` values; at most `max` of them.
pub fn read(name: &str, dt: DataType, raw: &RawValue, max: usize) -> Result<TensorData, CoreError> {
    let mut out = match dt {
        DataType::Fp32 => TensorData::Fp32(Vec::new()),
        DataType::Int32 => TensorData::Int32(Vec::new()),
        DataType::Bytes => TensorData::Bytes(Vec::new()),
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Elements { out: &mut out, max }
        .deserialize(&mut de)
        .map_err(|e| CoreError::BadRequest(format!("input '{name}': data: {e}")))?;
    Ok(out)
}

struct Elements<'a> {
    out: &'a mut TensorData,
    max: usize,
}

impl Elements<'_> {
    fn push<E: serde::de::Error>(&mut self, v: Scalar) -> Result<(), E> {
        if self.out.len() >= self.max {
            return Err(E::custom(format!("more than the {} elements the shape and limits allow", self.max)));
        }
        match (&mut *self.out, v) {
            (TensorData::Fp32(o), Scalar::Number(x)) => o.push(x as f32),
            (TensorData::Int32(o), Scalar::Int(x)) => {
                o.push(i32::try_from(x).map_err(|_| E::custom(format!("{x} is not a 32-bit integer")))?)
            }
            (TensorData::Int32(_), Scalar::Number(x)) => return Err(E::custom(format!("{x} is not an integer"))),
            (TensorData::Bytes(o), Scalar::Text(s)) => o.push(Bytes::copy_from_slice(s.as_bytes())),
            (TensorData::Fp32(_), _) => return Err(E::custom("an element is not a number")),
            (TensorData::Int32(_), _) => return Err(E::custom("an element is not a 32-bit integer")),
            (TensorData::Bytes(_), _) => return Err(E::custom("an element is not a string")),
        }
        Ok(())
    }
}

enum Scalar<'s> {
    Number(f64),
    Int(i64),
    Text(&'s str),
    Other,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a string, or an array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (out, max) = (self.out, self.max);
        while seq.next_element_seed(Elements { out: &mut *out, max })?.is_some() {}
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(mut self, v: i64) -> Result<(), E> {
        let s = if matches!(self.out, TensorData::Fp32(_)) { Scalar::Number(v as f64) } else { Scalar::Int(v) };
        self.push(s)
    }

    fn visit_u64<E: serde::de::Error>(mut self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => self.push(Scalar::Number(v as f64)),
        }
    }

    fn visit_f64<E: serde::de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push(Scalar::Number(v))
    }

    fn visit_str<E: serde::de::Error>(mut self, v: &str) -> Result<(), E> {
        self.push(Scalar::Text(v))
    }

    fn visit_bool<E: serde::de::Error>(mut self, _: bool) -> Result<(), E> {
        self.push(Scalar::Other)
    }

    fn visit_unit<E: serde::de::Error>(mut self) -> Result<(), E> {
        self.push(Scalar::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(A::Error::custom("an element is an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn nested_and_flat_data_become_typed_values() {
        let t = read("x", DataType::Fp32, &raw("[[1, 2.5], [3, -4e0]]"), 10).unwrap();
        assert_eq!(t, TensorData::Fp32(vec![1.0, 2.5, 3.0, -4.0]));
        let t = read("x", DataType::Int32, &raw("[7, -1, [2]]"), 10).unwrap();
        assert_eq!(t, TensorData::Int32(vec![7, -1, 2]));
        let t = read("x", DataType::Bytes, &raw(r#"["ab", ["c"]]"#), 10).unwrap();
        assert_eq!(t, TensorData::Bytes(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")]));
        assert_eq!(read("x", DataType::Fp32, &raw("5"), 10).unwrap(), TensorData::Fp32(vec![5.0]));
    }

    #[test]
    fn wrong_types_and_too_many_elements_are_refused() {
        assert!(read("x", DataType::Fp32, &raw(r#"[1, "a"]"#), 10).is_err());
        assert!(read("x", DataType::Int32, &raw("[1.5]"), 10).is_err());
        assert!(read("x", DataType::Int32, &raw("[4294967296]"), 10).is_err());
        assert!(read("x", DataType::Bytes, &raw("[1]"), 10).is_err());
        assert!(read("x", DataType::Fp32, &raw(r#"[{"a": 1}]"#), 10).is_err());
        assert!(read("x", DataType::Fp32, &raw("[null]"), 10).is_err());
        let err = read("x", DataType::Fp32, &raw("[0, 0, 0, 0]"), 3).unwrap_err();
        assert!(err.to_string().contains("more than the 3 elements"), "{err}");
    }
}
