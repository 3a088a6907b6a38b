//! Rust bindings for the `tunnel.v1` gRPC API (`proto/tunnel/v1/tunnel.proto`),
//! generated at build time: message types (with serde impls following the
//! proto3 JSON mapping), the `TunnelService` client used by `tunnelctl` and
//! the tests, and the server trait tunneld implements; and the value
//! helpers both ends share: [`duration`] (the one validated duration type of
//! flags, config and API), [`clip`] (showing a client's value safely),
//! [`addr`] (the default API address, `host:port` spelling), [`name`]
//! (what a tunnel name may be) and [`forward_spec`] (OpenSSH's `-L`/`-R`/`-D`
//! forward specs, for tunnelctl's flags and the config file's tunnels).

pub mod addr;
pub mod clip;
pub mod duration;
pub mod forward_spec;
pub mod name;

/// Well-known types (`Timestamp`, `Duration`) used by the API, with serde
/// support.
pub use pbjson_types;

/// The `tunnel.v1` package: messages, enums, client and server.
#[allow(missing_docs, clippy::all)] // generated; the .proto carries the docs
pub mod v1 {
    tonic::include_proto!("tunnel.v1");
    include!(concat!(env!("OUT_DIR"), "/tunnel.v1.serde.rs"));

    /// Encoded `FileDescriptorSet` of the API and its imports, for gRPC
    /// server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/tunnel_v1_descriptor.bin"));
}
