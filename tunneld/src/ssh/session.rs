//! One authenticated SSH connection and the channels opened over it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use russh::{
    ChannelOpenFailure,
    client::{self, Handle},
};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_util::sync::CancellationToken;

use super::{
    ForwardRoutes, HostConfig, RemoteListener, SessionUse, SshChannel,
    auth::Credentials,
    dial::dial,
    handler::{ClientHandler, HandlerError, describe_russh_error},
    jump::Route,
    known_hosts,
};
use crate::error::{Error, Result};

/// Bound on the SSH handshake and authentication after the stream is open.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a request to the server that expects a reply (channel open,
/// tcpip-forward).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Read buffer between the SSH connection's socket and russh. russh reads
/// each packet with two unbuffered reads (its length, then the rest), over
/// two syscalls per 32 KiB packet; through this buffer one read takes many
/// packets. Pulling through a local forward went from 0.85× to 0.89–0.95×
/// `ssh -L` with it (docs/BENCHMARKS.md). One per SSH connection.
const SSH_READ_BUFFER: usize = 256 * 1024;

/// A live, authenticated SSH connection.
pub struct SshSession {
    host: Arc<HostConfig>,
    handle: Handle<ClientHandler>,
    /// Cancelled when the connection's task ends.
    closed: CancellationToken,
    close_reason: Arc<Mutex<Option<String>>>,
    /// Whether russh ended it for unanswered keepalives.
    keepalive_lost: Arc<AtomicBool>,
    /// Who uses the connection (see `session_use.rs`).
    usage: Arc<SessionUse>,
    /// The jump hosts the connection runs through (`jump.rs`), held as
    /// long as it is; `None` when dialled directly.
    route: Option<Route>,
    /// When authentication succeeded.
    pub connected_at: SystemTime,
}

impl SshSession {
    /// Connects, verifies the host key, and authenticates with the host's
    /// credentials: [`Credentials::load`], [`dial`] (or, through jump
    /// hosts, [`Route::open`]), then [`SshSession::handshake`].
    pub async fn connect(host: Arc<HostConfig>, routes: Arc<ForwardRoutes>) -> Result<SshSession> {
        let credentials = Credentials::load(&host).await?;
        if host.jump.is_empty() {
            let stream = dial(&host).await?;
            return Self::handshake(host, routes, stream, credentials).await;
        }
        let (route, stream) = Route::open(&host).await?;
        let mut session = Self::handshake(host, routes, stream, credentials).await?;
        session.route = Some(route);
        Ok(session)
    }

    /// Runs the SSH handshake over `stream` (whatever [`dial`] opened),
    /// verifies the host key against known_hosts, and authenticates with
    /// `credentials`, all within [`HANDSHAKE_TIMEOUT`].
    pub async fn handshake(
        host: Arc<HostConfig>,
        routes: Arc<ForwardRoutes>,
        stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
        credentials: Credentials,
    ) -> Result<SshSession> {
        let addr = host.addr();
        let config = client_config(&host);
        let closed = CancellationToken::new();
        let close_reason = Arc::new(Mutex::new(None));
        let keepalive_lost = Arc::new(AtomicBool::new(false));
        let usage = Arc::new(SessionUse::new(routes.clone()));
        let handler = ClientHandler {
            host: host.clone(),
            routes,
            close_reason: close_reason.clone(),
            keepalive_lost: keepalive_lost.clone(),
            _closed: closed.clone().drop_guard(),
        };
        let ssh_failed = |reason: String| host.connection_failed(reason);
        let handshake = async {
            let mut handle = client::connect_stream(
                config,
                BufReader::with_capacity(SSH_READ_BUFFER, stream),
                handler,
            )
            .await
            .map_err(|e| match e {
                HandlerError::HostKey(e) => e,
                HandlerError::Russh(e) => ssh_failed(describe_russh_error(&e)),
            })?;
            credentials.authenticate(&mut handle, &host).await?;
            Ok(handle)
        };
        let handle = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                ssh_failed(format!(
                    "SSH handshake did not finish within {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ))
            })??;
        tracing::info!(host = %host.name, %addr, user = %host.user, "SSH connection established");
        Ok(SshSession {
            host,
            handle,
            closed,
            close_reason,
            keepalive_lost,
            usage,
            route: None,
            connected_at: SystemTime::now(),
        })
    }

    /// Who uses this connection; a carried connection registers itself here
    /// so that its slow reader may hold the connection back while it is
    /// alone on it.
    pub fn usage(&self) -> &Arc<SessionUse> {
        &self.usage
    }

    /// The host this connection is to.
    pub fn host(&self) -> &HostConfig {
        &self.host
    }

    /// Whether the connection has ended, or a jump host it runs through.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
            || self.handle.is_closed()
            || self.route.as_ref().is_some_and(Route::is_closed)
    }

    /// Resolves when the connection ends, or a jump host it runs through
    /// (whose loss ends it an instant later).
    pub async fn closed(&self) {
        match &self.route {
            None => self.closed.cancelled().await,
            Some(route) => tokio::select! {
                () = self.closed.cancelled() => {}
                () = route.closed() => {}
            },
        }
    }

    /// Why the connection ended, if it has and we know: a lost jump host
    /// first, since it takes the connection with it.
    pub fn close_reason(&self) -> String {
        if let Some(lost) = self.route.as_ref().and_then(Route::lost) {
            return lost;
        }
        self.close_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the SSH connection was lost".into())
    }

    /// Whether the connection ended because the server stopped answering
    /// keepalives.
    pub fn lost_keepalives(&self) -> bool {
        self.keepalive_lost.load(Ordering::Acquire)
    }

    /// The error for a request that found the connection gone.
    pub fn lost(&self) -> Error {
        self.failed(self.close_reason())
    }

    /// An error about this connection, with `reason`.
    pub fn failed(&self, reason: String) -> Error {
        self.host.connection_failed(reason)
    }

    fn map_request_error(&self, what: &str, e: russh::Error) -> Error {
        match e {
            russh::Error::ChannelOpenFailure(reason) => Error::ChannelRefused {
                host: self.host.name.clone(),
                what: what.to_string(),
                prohibited: matches!(reason, ChannelOpenFailure::AdministrativelyProhibited),
                connect_failed: matches!(reason, ChannelOpenFailure::ConnectFailed),
                reason: match reason {
                    ChannelOpenFailure::AdministrativelyProhibited => {
                        "administratively prohibited (sshd_config AllowTcpForwarding/PermitOpen/MaxSessions)".into()
                    }
                    ChannelOpenFailure::ConnectFailed => "the server could not connect there".into(),
                    ChannelOpenFailure::UnknownChannelType => "channel type not supported".into(),
                    ChannelOpenFailure::ResourceShortage => "resource shortage on the server".into(),
                    other => format!("{other:?}"),
                },
            },
            _ if self.is_closed() => self.lost(),
            other => self.failed(describe_russh_error(&other)),
        }
    }

    async fn bounded<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, russh::Error>>,
    ) -> Result<T> {
        // Counted while under way: a connection holding the session back
        // lets go, or this request would wait for its reader.
        let _request = self.usage.request();
        match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
            Ok(r) => r.map_err(|e| self.map_request_error(what, e)),
            Err(_) => Err(self.failed(format!(
                "the server did not answer a request for {what} within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Opens a `session` channel (for exec).
    pub async fn open_session(&self) -> Result<SshChannel> {
        self.bounded("a session", self.handle.channel_open_session())
            .await
    }

    /// Opens a `direct-tcpip` channel: the server connects to `host:port`.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        originator: std::net::SocketAddr,
    ) -> Result<SshChannel> {
        let what = format!("{host}:{port}");
        self.bounded(
            &what,
            self.handle.channel_open_direct_tcpip(
                host,
                u32::from(port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            ),
        )
        .await
    }

    /// Opens a `direct-streamlocal@openssh.com` channel: the server connects
    /// to the unix socket at `path`.
    pub async fn open_direct_streamlocal(&self, path: &str) -> Result<SshChannel> {
        self.bounded(path, self.handle.channel_open_direct_streamlocal(path))
            .await
    }

    /// Asks the server to listen on the unix socket at `path`
    /// (`streamlocal-forward@openssh.com`).
    pub async fn streamlocal_forward(&self, path: &str) -> Result<()> {
        // A refusal is an answer, not a failure of the connection.
        let reply = self
            .bounded(path, async {
                match self.handle.streamlocal_forward(path).await {
                    Err(russh::Error::RequestDenied) => Ok(false),
                    other => other.map(|()| true),
                }
            })
            .await?;
        if reply {
            Ok(())
        } else {
            Err(Error::RemoteSocketRefused {
                host: self.host.name.clone(),
                path: path.to_string(),
            })
        }
    }

    /// Cancels a remote unix socket forward
    /// (`cancel-streamlocal-forward@openssh.com`).
    pub async fn cancel_streamlocal_forward(&self, path: &str) -> Result<()> {
        self.bounded(path, self.handle.cancel_streamlocal_forward(path))
            .await
    }

    /// Asks the server to listen on `address:port` (0: it picks); returns the
    /// port it listens on.
    pub async fn tcpip_forward(&self, address: &str, port: u16) -> Result<u16> {
        let what = format!("{address}:{port}");
        // A refusal is an answer, not a failure of the connection.
        let reply = self
            .bounded(&what, async {
                match self.handle.tcpip_forward(address, u32::from(port)).await {
                    Err(russh::Error::RequestDenied) => Ok(None),
                    other => other.map(Some),
                }
            })
            .await?;
        match reply {
            None => Err(Error::RemoteForwardRefused {
                host: self.host.name.clone(),
                addr: what,
            }),
            Some(_) if port != 0 => Ok(port),
            Some(bound) => u16::try_from(bound)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    self.failed(format!(
                        "the server reported listening on invalid port {bound} for {what}"
                    ))
                }),
        }
    }

    /// Cancels a remote forward (`cancel-tcpip-forward`).
    pub async fn cancel_tcpip_forward(&self, address: &str, port: u16) -> Result<()> {
        let what = format!("{address}:{port}");
        self.bounded(
            &what,
            self.handle.cancel_tcpip_forward(address, u32::from(port)),
        )
        .await
    }

    /// Asks the server to listen on `listener`; returns it as bound (with
    /// the port the server picked for port 0).
    pub async fn forward(&self, listener: &RemoteListener) -> Result<RemoteListener> {
        match listener {
            RemoteListener::Tcp { address, port } => {
                let port = self.tcpip_forward(address, *port).await?;
                Ok(RemoteListener::Tcp {
                    address: address.clone(),
                    port,
                })
            }
            RemoteListener::Unix { path } => {
                self.streamlocal_forward(path).await?;
                Ok(listener.clone())
            }
        }
    }

    /// Stops the server listening on `listener`.
    pub async fn cancel_forward(&self, listener: &RemoteListener) -> Result<()> {
        match listener {
            RemoteListener::Tcp { address, port } => {
                self.cancel_tcpip_forward(address, *port).await
            }
            RemoteListener::Unix { path } => self.cancel_streamlocal_forward(path).await,
        }
    }

    /// Says goodbye to the server, then to the jump hosts; the
    /// connections' tasks then end.
    pub async fn disconnect(&self) {
        self.goodbye().await;
        if let Some(route) = &self.route {
            route.disconnect().await;
        }
    }

    /// Says goodbye to this connection's server only.
    pub(super) async fn goodbye(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "tunneld closing", "en")
            .await;
    }
}

/// russh's client settings for `host`: its ciphers, window, packet size,
/// keepalives and rekey limit, the host key types its known_hosts lists
/// offered first, and host certificates offered where known_hosts has a CA
/// for it.
fn client_config(host: &HostConfig) -> Arc<client::Config> {
    let mut preferred = russh::Preferred {
        cipher: host.settings.ciphers.clone().into(),
        ..russh::Preferred::default()
    };
    // Offer first the host key types known_hosts lists for this host, as
    // OpenSSH does, and their certificate variants (ahead of plain keys)
    // only to a host an `@cert-authority` line names (see
    // `known_hosts::certificate_algorithms`). Only host key algorithms are
    // touched: russh's default key-exchange list is kept, it carries the
    // strict-kex countermeasure to the Terrapin attack.
    if let Ok(text) = std::fs::read_to_string(&host.settings.known_hosts) {
        preferred.key =
            known_hosts::preferred_host_key_order(&text, &host.hostname, host.port, &preferred.key)
                .into();
        preferred.host_key_certificates =
            known_hosts::certificate_algorithms(&text, &host.hostname, host.port, &preferred.key)
                .into();
    }
    Arc::new(client::Config {
        keepalive_interval: Some(host.settings.keepalive_interval),
        keepalive_max: host.settings.keepalive_max,
        nodelay: true,
        window_size: host.settings.window_size,
        maximum_packet_size: host.settings.max_packet,
        preferred,
        limits: russh::Limits {
            rekey_write_limit: host.settings.rekey_limit,
            rekey_read_limit: host.settings.rekey_limit,
            ..Default::default()
        },
        ..Default::default()
    })
}
