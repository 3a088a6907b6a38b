//! Serving the API: `tunnel.v1.TunnelService`, gRPC server reflection (v1
//! and v1alpha, for grpcurl) and `grpc.health.v1`, on a listener handed in
//! from outside, behind the auth layer and optionally TLS, until a shutdown
//! token is cancelled.

mod tls;

pub use tls::TlsFiles;

use std::sync::Arc;

use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, ServerTlsConfig, server::TcpIncoming};
use tunnel_proto::v1::tunnel_service_server::TunnelServiceServer;

use crate::{
    daemon::Daemon,
    error::{Error, Result},
    grpc::{AuthLayer, AuthPolicy, TunnelApi},
    listen::ApiListener,
};

/// Largest request accepted: an Exec's stdin travels in its request.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Who may reach the API and how: the auth policy, and TLS if any.
#[derive(Debug)]
pub struct ApiAccess {
    /// Tokens and the unix socket's allowed uid.
    pub auth: AuthPolicy,
    /// TLS (and mTLS) for the listener.
    pub tls: Option<ServerTlsConfig>,
}

impl ApiAccess {
    /// No token, no TLS: for loopback and unix listeners (the unix socket's
    /// peer must still be tunneld's user or root).
    pub fn local() -> Self {
        ApiAccess {
            auth: AuthPolicy {
                tokens: None,
                owner_uid: rustix::process::geteuid().as_raw(),
            },
            tls: None,
        }
    }
}

/// Serves `daemon` on `listener` with `access` until `shutdown` is
/// cancelled, then closes every tunnel and SSH connection.
pub async fn serve(
    listener: ApiListener,
    access: ApiAccess,
    daemon: Arc<Daemon>,
    shutdown: CancellationToken,
) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TunnelServiceServer<TunnelApi>>().await;

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
    let stopping = {
        let shutdown = shutdown.clone();
        let health = health.clone();
        let daemon = daemon.clone();
        async move {
            shutdown.cancelled().await;
            tracing::info!("shutting down");
            health
                .set_not_serving::<TunnelServiceServer<TunnelApi>>()
                .await;
            daemon.shutdown().await;
        }
    };
    let mut builder = Server::builder();
    if let Some(tls) = access.tls {
        builder = builder.tls_config(tls).map_err(|e| {
            Error::Config(format!(
                "TLS: {e} (check that --tls-cert and --tls-key are a PEM certificate and its key)"
            ))
        })?;
    }
    let router = builder
        .layer(AuthLayer::new(access.auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            TunnelServiceServer::new(TunnelApi::new(daemon.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        );
    let served = match listener {
        ApiListener::Tcp(listener) => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, stopping)
                .await
        }
        ApiListener::Unix(listener, _file) => {
            // `_file` lives until serving ends, then removes the socket.
            let incoming = UnixListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, stopping)
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
