//! Compiles `tunnel/v1/tunnel.proto` with protox (pure Rust, so no system
//! `protoc` is needed) and generates the prost types, the tonic client and
//! server, and serde impls that follow the proto3 JSON mapping (pbjson), so
//! `tunnelctl --output json` prints what grpcurl prints. The encoded
//! descriptor set is kept for gRPC server reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "tunnel/v1/tunnel.proto";
    println!("cargo:rerun-if-changed={proto}");

    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files([proto])?
        .file_descriptor_set();
    let fds_bytes = fds.encode_to_vec();

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("tunnel_v1_descriptor.bin"), &fds_bytes)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds_with_config(fds, {
            // `prost::Name` on every message: its full name, which finds its
            // descriptor (tunnelctl's JSON output), with no name written by
            // hand.
            let mut config = tonic_prost_build::Config::new();
            config.enable_type_names();
            config
        })?;

    pbjson_build::Builder::new()
        .register_descriptors(&fds_bytes)?
        .build(&[".tunnel.v1"])?;
    Ok(())
}
