//! Local forwards (`ssh -L`, and `ssh -D`): listen on tunneld's machine, on
//! a TCP port or a unix socket, and carry each accepted connection through a
//! `direct-tcpip` or `direct-streamlocal@openssh.com` channel; for a SOCKS
//! target, to wherever the connection asks.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ConnectionLimits, Endpoint, Tunnel, TunnelKind, TunnelOptions, dynamic};
use crate::{
    error::{Error, Result},
    relay::LocalStream,
    ssh::{SessionUse, SshChannel, SshHost, SshSession},
    sys::{accept_backoff::AcceptBackoff, unix_listener::SocketFile},
};

/// The originator a `direct-tcpip` request names for a connection accepted
/// on a unix socket, which has no address: OpenSSH's own stand-in.
const UNIX_ORIGINATOR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 65535);

/// Default listen address of local forwards, as `ssh -L`.
pub const DEFAULT_LOCAL_BIND: &str = "127.0.0.1";

/// The address a local forward binds for OpenSSH's `*` ("every
/// interface"), which tunneld must turn into one it can bind: `0.0.0.0`,
/// what `ssh -L '*:...'` binds first.
pub const ANY_LOCAL_BIND: &str = "0.0.0.0";

/// What a local forward listens on and where it connects.
#[derive(Debug, Clone)]
pub struct LocalForwardSpec {
    /// Where tunneld listens: a TCP bind address and port (0 picks one), or
    /// a unix socket.
    pub listen: Endpoint,
    /// Where the SSH server connects: a TCP host and port, a unix socket on
    /// the server, or [`Endpoint::Socks`] for a dynamic forward.
    pub target: Endpoint,
    /// Limits on its connections.
    pub limits: ConnectionLimits,
}

/// A bound listener of either kind.
enum Listener {
    Tcp(std::net::TcpListener),
    /// The socket file goes with the listener: removed when it is dropped.
    Unix(std::os::unix::net::UnixListener, SocketFile),
}

/// Connects the host (so errors surface now), binds the listener and starts
/// accepting. The tunnel is returned running.
pub async fn open_local(
    host: Arc<SshHost>,
    spec: LocalForwardSpec,
    id: String,
    parent: &CancellationToken,
    options: TunnelOptions,
) -> Result<Arc<Tunnel>> {
    host.session().await?;
    let (listener, local) = match &spec.listen {
        Endpoint::Tcp { host, port } => {
            let listener = bind(host, *port).await?;
            let bind_failed = |e: io::Error| Error::LocalBind {
                addr: tunnel_proto::addr::join_host_port(host, *port),
                reason: e.to_string(),
                permission: false,
            };
            let bound = listener.local_addr().map_err(bind_failed)?;
            let listener = listener.into_std().map_err(bind_failed)?;
            let local = Endpoint::Tcp {
                host: bound.ip().to_string(),
                port: bound.port(),
            };
            (Listener::Tcp(listener), local)
        }
        Endpoint::Unix { path } => {
            let (listener, file) = bind_unix(path)?;
            (Listener::Unix(listener, file), spec.listen.clone())
        }
        Endpoint::Socks => {
            return Err(Error::InvalidArgument(
                "a local forward listens on a TCP port or a unix socket, not SOCKS".into(),
            ));
        }
    };
    let kind = match spec.target {
        Endpoint::Socks => TunnelKind::Dynamic,
        _ => TunnelKind::Local,
    };
    let tunnel = Arc::new(Tunnel::new(
        id,
        kind,
        &host,
        (local, spec.target),
        parent,
        options,
    ));
    let span = tracing::info_span!("local_forward", tunnel = %tunnel.id, host = %tunnel.host, listen = %tunnel.local, target = %tunnel.remote);
    tunnel
        .tasks
        .spawn(follow_link(tunnel.clone(), host.clone()).instrument(span.clone()));
    // Accepting and carrying run on the host's I/O thread, next to its SSH
    // session; the listener moves to that thread's reactor.
    let io = host.io().handle();
    let accepting = {
        let tunnel = tunnel.clone();
        async move {
            match listener {
                Listener::Tcp(l) => match TcpListener::from_std(l) {
                    Ok(l) => accept_loop(l, tunnel, host).await,
                    Err(e) => tracing::error!("cannot accept on the forward's port: {e}"),
                },
                Listener::Unix(l, file) => {
                    match UnixListener::from_std(l) {
                        Ok(l) => accept_loop(l, tunnel, host).await,
                        Err(e) => tracing::error!("cannot accept on the forward's socket: {e}"),
                    }
                    // Removed once nothing accepts on it any more.
                    drop(file);
                }
            }
        }
    };
    tunnel.tasks.spawn_on(accepting.instrument(span), &io);
    tracing::info!(tunnel = %tunnel.id, listen = %tunnel.local, target = %tunnel.remote, host = %tunnel.host, "local forward open");
    Ok(tunnel)
}

/// Binds the unix socket of a local forward: private (0600) from the start,
/// a stale socket replaced, a live one refused.
fn bind_unix(path: &std::path::Path) -> Result<(std::os::unix::net::UnixListener, SocketFile)> {
    let shown = path.display().to_string();
    crate::sys::unix_listener::bind(path).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse | io::ErrorKind::AlreadyExists => Error::LocalSocketInUse {
            path: shown,
            reason: e.to_string(),
        },
        io::ErrorKind::PermissionDenied => Error::LocalBind {
            addr: shown,
            reason: format!("{e} (tunneld's user cannot create files in that directory)"),
            permission: true,
        },
        _ => Error::LocalBind {
            addr: shown,
            reason: e.to_string(),
            permission: false,
        },
    })
}

/// The socket address a local forward on `address:port` listens on: the
/// first the name resolves to, as `ssh -L` does.
pub async fn resolve_bind(address: &str, port: u16) -> Result<SocketAddr> {
    match tokio::net::lookup_host((address, port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(_) => None,
    }
    .ok_or_else(|| {
        Error::InvalidArgument(format!(
            "bind_address {address:?} does not resolve to an IP address"
        ))
    })
}

async fn bind(address: &str, port: u16) -> Result<TcpListener> {
    let shown = tunnel_proto::addr::join_host_port(address, port);
    let addr = resolve_bind(address, port).await?;
    crate::sys::tcp_listener::bind(addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => Error::LocalAddressInUse { addr: shown },
        io::ErrorKind::PermissionDenied => Error::LocalBind {
            addr: shown,
            reason: "permission denied (ports below 1024 need privileges)".into(),
            permission: true,
        },
        io::ErrorKind::AddrNotAvailable => Error::InvalidArgument(format!(
            "cannot listen on {shown}: the address is not on this machine"
        )),
        _ => Error::LocalBind {
            addr: shown,
            reason: e.to_string(),
            permission: false,
        },
    })
}

/// Shows the SSH connection's outages in the tunnel's state. The port stays
/// bound throughout; connections wait for the link in `carry`.
async fn follow_link(tunnel: Arc<Tunnel>, host: Arc<SshHost>) {
    let mut link = host.subscribe();
    loop {
        tokio::select! {
            () = tunnel.cancel.cancelled() => break,
            r = link.changed() => if r.is_err() { break },
        }
        let now = link.borrow_and_update().clone();
        if now.live().is_some() {
            tunnel.restored();
        } else {
            tunnel.on_link(&now);
        }
    }
}

/// What an accept loop needs of a listener: the next connection and a name
/// for its peer.
trait Accept: Send + 'static {
    type Stream: LocalStream;
    /// What the forward listens on, for messages.
    const WHAT: &'static str;
    fn accept(&self) -> impl std::future::Future<Output = io::Result<(Self::Stream, Peer)>> + Send;
}

/// Who connected: an address, or (on a unix socket) the process's
/// credentials.
struct Peer {
    /// For logs and events.
    shown: String,
    /// The originator a `direct-tcpip` request names.
    originator: SocketAddr,
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    const WHAT: &'static str = "the forward's port";
    async fn accept(&self) -> io::Result<(Self::Stream, Peer)> {
        let (tcp, addr) = TcpListener::accept(self).await?;
        let _ = tcp.set_nodelay(true);
        Ok((
            tcp,
            Peer {
                shown: addr.to_string(),
                originator: addr,
            },
        ))
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    const WHAT: &'static str = "the forward's socket";
    async fn accept(&self) -> io::Result<(Self::Stream, Peer)> {
        let (stream, _) = UnixListener::accept(self).await?;
        let shown = match stream.peer_cred() {
            Ok(c) => match c.pid() {
                Some(pid) => format!("uid {} pid {pid}", c.uid()),
                None => format!("uid {}", c.uid()),
            },
            Err(_) => "unix peer".to_string(),
        };
        Ok((
            stream,
            Peer {
                shown,
                originator: UNIX_ORIGINATOR,
            },
        ))
    }
}

async fn accept_loop<L: Accept>(listener: L, tunnel: Arc<Tunnel>, host: Arc<SshHost>) {
    let mut backoff = AcceptBackoff::new(L::WHAT);
    loop {
        let accepted = tokio::select! {
            () = tunnel.accepting.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.accepted();
                let span = tracing::debug_span!("conn", peer = %peer.shown);
                tunnel
                    .tasks
                    .spawn(carry(stream, peer, tunnel.clone(), host.clone()).instrument(span));
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::select! {
                    () = tunnel.accepting.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    tracing::info!("local forward closed; {} released", L::WHAT);
}

async fn carry<S: LocalStream>(stream: S, peer: Peer, tunnel: Arc<Tunnel>, host: Arc<SshHost>) {
    let Some(conn) = tunnel.connection(&peer.shown) else {
        let _ = stream.reset_on_close();
        return;
    };
    if tunnel.remote == Endpoint::Socks {
        return dynamic::carry_local(stream, peer.originator, &conn, &tunnel, &host).await;
    }
    let Some(opened) = open_channel(&tunnel, &host, &tunnel.remote, peer.originator).await else {
        return;
    };
    let (channel, session) = match opened {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot carry connection from {}: {e}", peer.shown);
            conn.fail(e.to_string());
            let _ = stream.reset_on_close();
            return;
        }
    };
    tunnel
        .relay_connection(&conn, stream, channel, Some(&session))
        .await;
}

/// Opens one connection's channel to `target` over the host's connection,
/// waiting out an outage for up to the tunnel's `reconnect_wait`; with the
/// connection's use, so a slow reader may hold it back while alone. `None`
/// when the tunnel closes meanwhile.
pub(super) async fn open_channel(
    tunnel: &Tunnel,
    host: &Arc<SshHost>,
    target: &Endpoint,
    originator: SocketAddr,
) -> Option<Result<(SshChannel, Arc<SessionUse>)>> {
    tokio::select! {
        () = tunnel.cancel.cancelled() => None,
        r = async {
            let session = host.wait_session(tunnel.reconnect_wait()).await?;
            let channel = open_target(&session, target, originator).await?;
            Ok((channel, session.usage().clone()))
        } => Some(r),
    }
}

/// Opens the channel to a target: `direct-tcpip` for a host and port,
/// `direct-streamlocal@openssh.com` for a socket on the server.
async fn open_target(
    session: &SshSession,
    target: &Endpoint,
    originator: SocketAddr,
) -> Result<SshChannel> {
    match target {
        Endpoint::Tcp { host, port } => session.open_direct_tcpip(host, *port, originator).await,
        Endpoint::Unix { path } => {
            session
                .open_direct_streamlocal(&path.to_string_lossy())
                .await
        }
        Endpoint::Socks => Err(Error::InvalidArgument(
            "a SOCKS forward's connections name their own targets".into(),
        )),
    }
}
