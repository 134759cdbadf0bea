//! Code generated from `proto/` by build.rs (KServe v2 and dfserve.v1), and the encoded
//! descriptors for server reflection.

#[allow(clippy::all, clippy::pedantic)]
pub mod inference {
    tonic::include_proto!("inference");
}
#[allow(clippy::all, clippy::pedantic)]
pub mod dfserve_v1 {
    tonic::include_proto!("dfserve.v1");
}
/// Encoded descriptors of every dfserve proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
