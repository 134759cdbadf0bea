//! Raw tensor payloads: BYTES elements with 4-byte length prefixes, and FP32/INT32 words.
#![no_main]

use dfserve::api::kserve::{DataType, TensorData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = bytes::Bytes::copy_from_slice(data);
    for dt in [DataType::Bytes, DataType::Fp32, DataType::Int32] {
        if let Ok(t) = TensorData::from_raw("x", dt, raw.clone()) {
            // What decodes must encode back to the same bytes.
            assert_eq!(t.to_raw(), data);
        }
    }
});
