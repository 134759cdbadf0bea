//! KServe gRPC `ModelInferRequest` protobufs, decoded and converted (typed contents and
//! `raw_input_contents`, including BYTES length prefixes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dfserve::api::grpc::infer_request_from_proto(data);
});
