//! KServe REST infer bodies: JSON tensors, and the binary extension whose header length comes
//! from the `Inference-Header-Content-Length` header (taken from the first input bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (len, body) = match data.split_first() {
        // First byte: 0 = no header, else the header length as a decimal string.
        Some((0, rest)) => (None, rest),
        Some((n, rest)) => (Some(((*n as usize * 7) % (rest.len() + 2)).to_string()), rest),
        None => return,
    };
    if let Ok(req) = dfserve::api::http::parse_infer_body(len.as_deref(), bytes::Bytes::copy_from_slice(body)) {
        for input in &req.inputs {
            let _ = input.data.len();
        }
    }
});
