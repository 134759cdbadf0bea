//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so building dfserve
//! needs no system `protoc`. The descriptor set is also kept for gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/kserve/grpc_service.proto", "proto/dfserve/v1/dfserve.proto"];
    for p in protos.iter().chain(["proto/kserve/model_config.proto"].iter()) {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // Every message implements `prost::Name`, so the bounded codec knows which one it reads.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .codec_path("crate::api::grpc::codec::BoundedCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
