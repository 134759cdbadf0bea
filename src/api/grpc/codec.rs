//! The gRPC codec: prost, after a look at the wire that bounds what decoding will allocate.
//!
//! Why: a protobuf message can decode to far more memory than it takes on the wire. An empty
//! `InferInputTensor` is 2 bytes on the wire and a few hundred in memory once prost has built
//! its struct, strings, vectors and maps; a packed `int64` of zeros is 1 byte an element on the
//! wire and 8 in memory. Tonic's message size limit bounds only the wire. So before prost
//! allocates anything, [`decoded_size`] walks the message's fields with the schema from
//! `proto/` and estimates the decoded size; a message estimated above
//! [`DECODED_PER_WIRE_BYTE`] times its wire size plus [`DECODED_SLACK`] is refused with
//! RESOURCE_EXHAUSTED. Legitimate requests decode to about their own size (packed floats, raw
//! tensor bytes, encoded images), so the bound refuses only amplification.
//!
//! build.rs points every generated service at [`BoundedCodec`] (`codec_path`), and makes prost
//! implement `prost::Name` so the decoder knows which message it is reading.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::Type;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstCodec;

/// A message may decode to at most this many bytes per byte on the wire...
pub const DECODED_PER_WIRE_BYTE: usize = 2;
/// ...plus this much (small messages: metadata requests, options).
pub const DECODED_SLACK: usize = 64 * 1024;

/// What one decoded message of any type is counted as: the largest generated struct
/// (`InferInputTensor`, about 300 bytes) with room for a map entry's hash table slot.
const MESSAGE_COST: usize = 320;
/// A `String`, `Vec<u8>` or `Bytes` header.
const BUFFER_COST: usize = 32;

/// Prost encoding and decoding, with the decoded-size bound of this module on decoding.
#[derive(Debug, Clone)]
pub struct BoundedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for BoundedCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for BoundedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + prost::Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = BoundedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        BoundedDecoder(PhantomData)
    }
}

#[derive(Debug)]
pub struct BoundedDecoder<U>(PhantomData<U>);

impl<U: Message + prost::Name + Default> Decoder for BoundedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        use bytes::Buf;
        // Tonic hands the decoder one whole message in one contiguous buffer.
        let wire = buf.chunk();
        if wire.len() == buf.remaining() {
            let allowed = wire.len().saturating_mul(DECODED_PER_WIRE_BYTE).saturating_add(DECODED_SLACK);
            // A malformed message is left to prost, which names the fault.
            if let Ok(estimate) = decoded_size(&U::full_name(), wire) {
                if estimate > allowed {
                    return Err(Status::resource_exhausted(format!(
                        "message of {} bytes would decode to about {estimate} bytes (more than {allowed}): \
                         too many small fields; send tensor data packed or as raw_input_contents",
                        wire.len()
                    )));
                }
            }
        }
        // INTERNAL for a message that does not parse, as tonic's own prost codec answers.
        U::decode(buf).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

/// How a field's values are stored once decoded.
#[derive(Debug, Clone)]
enum FieldKind {
    /// A submessage (map entries included), by full name.
    Message(String),
    /// `string` or `bytes`.
    Buffer,
    /// A scalar of `size` bytes in memory, `fixed` width on the wire (float, double, fixed*)
    /// or a varint; packed when repeated and sent length-delimited.
    Scalar { size: usize, fixed: bool },
}

type Schema = HashMap<String, HashMap<u32, FieldKind>>;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let fds = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET)
            .expect("build.rs wrote a valid descriptor set");
        let mut schema = Schema::new();
        for file in &fds.file {
            let prefix = file.package.clone().unwrap_or_default();
            for message in &file.message_type {
                add_message(&mut schema, &prefix, message);
            }
        }
        schema
    })
}

fn add_message(schema: &mut Schema, prefix: &str, message: &prost_types::DescriptorProto) {
    let name = if prefix.is_empty() { message.name().to_string() } else { format!("{prefix}.{}", message.name()) };
    for nested in &message.nested_type {
        add_message(schema, &name, nested);
    }
    let fields = message
        .field
        .iter()
        .map(|f| {
            let kind = match f.r#type() {
                Type::Message | Type::Group => FieldKind::Message(f.type_name().trim_start_matches('.').to_string()),
                Type::String | Type::Bytes => FieldKind::Buffer,
                Type::Bool => FieldKind::Scalar { size: 1, fixed: false },
                Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Enum => FieldKind::Scalar { size: 4, fixed: false },
                Type::Fixed32 | Type::Sfixed32 | Type::Float => FieldKind::Scalar { size: 4, fixed: true },
                Type::Fixed64 | Type::Sfixed64 | Type::Double => FieldKind::Scalar { size: 8, fixed: true },
                Type::Int64 | Type::Uint64 | Type::Sint64 => FieldKind::Scalar { size: 8, fixed: false },
            };
            (f.number() as u32, kind)
        })
        .collect();
    schema.insert(name, fields);
}

/// Why a wire walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Estimates the bytes `message` (a full protobuf name such as `inference.ModelInferRequest`)
/// takes once decoded from `wire`. Unknown messages and fields count only their own bytes.
pub fn decoded_size(message: &str, wire: &[u8]) -> Result<usize, Malformed> {
    walk(schema(), message, wire, 0)
}

const MAX_DEPTH: usize = 100;

fn walk(schema: &Schema, message: &str, mut wire: &[u8], depth: usize) -> Result<usize, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let fields = schema.get(message);
    let mut total = MESSAGE_COST;
    while !wire.is_empty() {
        let key = varint(&mut wire)?;
        let (number, wire_type) = ((key >> 3) as u32, key & 7);
        let kind = fields.and_then(|f| f.get(&number));
        match wire_type {
            0 => {
                varint(&mut wire)?;
                total += scalar_size(kind);
            }
            1 => {
                wire = wire.get(8..).ok_or(Malformed)?;
                total += scalar_size(kind);
            }
            5 => {
                wire = wire.get(4..).ok_or(Malformed)?;
                total += scalar_size(kind);
            }
            2 => {
                let len = usize::try_from(varint(&mut wire)?).map_err(|_| Malformed)?;
                let body = wire.get(..len).ok_or(Malformed)?;
                wire = &wire[len..];
                total += match kind {
                    Some(FieldKind::Message(name)) => walk(schema, name, body, depth + 1)?,
                    Some(FieldKind::Scalar { size, fixed: true }) => body.len() / size * size,
                    // One element per byte that ends a varint.
                    Some(FieldKind::Scalar { size, fixed: false }) => {
                        body.iter().filter(|b| **b & 0x80 == 0).count() * size
                    }
                    Some(FieldKind::Buffer) | None => BUFFER_COST + len,
                };
            }
            _ => return Err(Malformed),
        }
    }
    Ok(total)
}

fn scalar_size(kind: Option<&FieldKind>) -> usize {
    match kind {
        Some(FieldKind::Scalar { size, .. }) => *size,
        _ => 8,
    }
}

fn varint(wire: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&byte, rest) = wire.split_first().ok_or(Malformed)?;
        *wire = rest;
        value |= u64::from(byte & 0x7f) << (shift * 7);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::grpc::pb::inference::{
        model_infer_request::InferInputTensor, InferTensorContents, ModelInferRequest,
    };

    fn allowed(wire: usize) -> usize {
        wire * DECODED_PER_WIRE_BYTE + DECODED_SLACK
    }

    #[test]
    fn a_real_tensor_request_decodes_to_about_its_own_size() {
        let req = ModelInferRequest {
            model_name: "meso4_df".into(),
            inputs: vec![InferInputTensor {
                name: "input".into(),
                datatype: "FP32".into(),
                shape: vec![8, 256, 256, 3],
                contents: Some(InferTensorContents {
                    fp32_contents: vec![0.5; 8 * 256 * 256 * 3],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            raw_input_contents: vec![vec![7u8; 1 << 20].into()],
            ..Default::default()
        };
        let wire = req.encode_to_vec();
        let estimate = decoded_size("inference.ModelInferRequest", &wire).unwrap();
        assert!(estimate >= wire.len() && estimate < allowed(wire.len()), "{estimate} for {}", wire.len());
    }

    #[test]
    fn empty_tensors_and_packed_zeros_are_counted_at_their_decoded_size() {
        let req = ModelInferRequest { inputs: vec![InferInputTensor::default(); 100_000], ..Default::default() };
        let wire = req.encode_to_vec();
        assert_eq!(wire.len(), 200_000);
        let estimate = decoded_size("inference.ModelInferRequest", &wire).unwrap();
        assert!(estimate >= 100_000 * MESSAGE_COST && estimate > allowed(wire.len()));

        let zeros = ModelInferRequest {
            inputs: vec![InferInputTensor { shape: vec![0; 1_000_000], ..Default::default() }],
            ..Default::default()
        };
        let wire = zeros.encode_to_vec();
        let estimate = decoded_size("inference.ModelInferRequest", &wire).unwrap();
        assert!(estimate >= 8_000_000 && estimate > allowed(wire.len()), "{estimate} for {}", wire.len());
    }

    #[test]
    fn malformed_wire_is_reported_not_trusted() {
        assert_eq!(decoded_size("inference.ModelInferRequest", &[0x2a, 0x05, 0x00]), Err(Malformed));
        assert_eq!(decoded_size("inference.ModelInferRequest", &[0xff; 11]), Err(Malformed));
        // Unknown fields count their bytes; unknown messages count as one message.
        assert!(decoded_size("no.Such", &[0x08, 0x01]).is_ok());
    }
}
