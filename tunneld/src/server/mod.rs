//! Serving the API: `tunnel.v1.TunnelService`, gRPC server reflection (v1
//! and v1alpha, for grpcurl) and `grpc.health.v1`, on a listener handed in
//! from outside, behind the auth layer and optionally TLS, until a shutdown
//! token is cancelled; and `grpc.health.v1` alone, plaintext, on the
//! health listener ([`health`]).

mod access;
mod flags;
pub mod health;
pub mod incoming;
pub mod listen;
mod tls;

pub use access::ApiAccess;
pub use flags::ApiFlags;
pub use tls::TlsFiles;

use std::sync::Arc;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tunnel_proto::v1::tunnel_service_server::TunnelServiceServer;

use crate::{
    daemon::Daemon,
    error::{Error, Result},
    grpc::{AuthLayer, TunnelApi},
    metrics::{GrpcMetricsLayer, GrpcStats},
};

use self::listen::ApiListener;

/// Largest request accepted: an Exec's stdin travels in its request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Streams one API connection may carry at once (nginx's HTTP/2 default);
/// a client asking for more waits for one to end.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Largest header block a request may send (its metadata: path, token,
/// deadline); larger ones are refused by HTTP/2.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Largest HTTP/2 frame tunneld accepts (the protocol's default).
pub const MAX_FRAME_BYTES: u32 = 16 * 1024;

/// Streams a client may open and reset before tunneld answers them, per
/// connection (the HTTP/2 "rapid reset" attack, CVE-2023-44487).
pub const MAX_PENDING_RESETS: usize = 32;

/// An HTTP/2 PING is sent on each API connection after this long, and one
/// unanswered for [`KEEPALIVE_TIMEOUT`] closes it: a peer that vanished
/// frees its place under `--max-api-connections`.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Every method the server serves, as `package.Service/Method`: the
/// services' descriptors, read once (they bound the metrics' method label).
fn served_methods() -> Vec<String> {
    use prost::Message as _;
    let sets = [
        tunnel_proto::v1::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = Vec::new();
    for bytes in sets {
        // Compiled in and checked by tests: an undecodable set only
        // leaves its methods counted as `unknown`.
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                let full = match file.package() {
                    "" => service.name().to_string(),
                    p => format!("{p}.{}", service.name()),
                };
                for m in &service.method {
                    methods.push(format!("{full}/{}", m.name()));
                }
            }
        }
    }
    methods
}

/// Serves `daemon` on `listener` with `access` until `shutdown` is
/// cancelled, then closes every tunnel and SSH connection. Calls are
/// counted into `grpc`; `health_service` follows the daemon's lifecycle
/// ([`health::following`]).
pub async fn serve(
    listener: ApiListener,
    access: ApiAccess,
    daemon: Arc<Daemon>,
    health_service: health::Service,
    grpc: Arc<GrpcStats>,
    shutdown: CancellationToken,
) -> Result<()> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tunnel_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_err =
        |e: tonic_reflection::server::Error| Error::Config(format!("reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_err)?;

    // The server drains in-flight calls only after this future returns, and
    // attached and exec calls last as long as their tunnels and commands: so
    // close those first, letting every call end with its last message.
    // Health turns NOT_SERVING as the shutdown sets the lifecycle to
    // Stopping.
    let stopping = {
        let shutdown = shutdown.clone();
        let daemon = daemon.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down");
            daemon.shutdown().await;
        }
    };
    let mut builder = Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = access.tls {
        builder = builder.tls_config(tls).map_err(|e| {
            Error::Config(format!(
                "TLS: {e} (check that --tls-cert and --tls-key are a PEM certificate and its key)"
            ))
        })?;
    }
    let tokens = access.auth.tokens.clone();
    // Metrics outside auth: a refused call is counted too (as
    // UNAUTHENTICATED or PERMISSION_DENIED), so probing shows.
    let router = builder
        .layer(GrpcMetricsLayer::new(grpc, served_methods()))
        .layer(AuthLayer::new(access.auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            TunnelServiceServer::new(TunnelApi::new(daemon.clone(), tokens))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
    let max = access.max_connections;
    let served = match listener {
        ApiListener::Tcp(listener) => {
            router
                .serve_with_incoming_shutdown(
                    incoming::incoming(listener, max, &incoming::API_AT_CAP),
                    stopping,
                )
                .await
        }
        ApiListener::Unix(listener, _file) => {
            // `_file` lives until serving ends, then removes the socket.
            router
                .serve_with_incoming_shutdown(
                    incoming::incoming(listener, max, &incoming::API_AT_CAP),
                    stopping,
                )
                .await
        }
    };
    // Already done unless serving failed; doing it again is harmless.
    daemon.shutdown().await;
    served.map_err(|e| Error::Io {
        context: "serving the gRPC API".into(),
        source: std::io::Error::other(e),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_service_has_its_methods() {
        let methods = super::served_methods();
        for m in [
            "tunnel.v1.TunnelService/List",
            "tunnel.v1.TunnelService/Close",
            "grpc.health.v1.Health/Check",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(
                methods.iter().any(|x| x == m),
                "{m} missing from {methods:?}"
            );
        }
    }
}
