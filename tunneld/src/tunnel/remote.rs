//! Remote forwards (`ssh -R`): the SSH server listens, on a TCP port or a
//! unix socket, and each connection it accepts comes back as a
//! `forwarded-tcpip` or `forwarded-streamlocal@openssh.com` channel, carried
//! to a local host and port, a local unix socket, or (reverse dynamic) where
//! the connection's SOCKS request asks.

use std::{sync::Arc, time::Duration};

use tokio::{
    net::{TcpStream, UnixStream},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Connection, ConnectionLimits, Endpoint, Tunnel, TunnelKind, TunnelOptions, TunnelState, dynamic,
};
use crate::{
    error::{Error, Result},
    logging::Throttle,
    policy::RemoteOpenPolicy,
    relay::LocalStream,
    ssh::{ForwardedChannel, RemoteListener, SshHost, SshSession},
};

/// Pause between a restore the server refused and the next try: the host's
/// reconnect backoff, counted per refusal.
fn restore_delay(host: &SshHost, refusals: u32) -> Duration {
    host.config().settings.reconnect.delay(refusals)
}

/// Bound on connecting to the local target of a forwarded connection.
pub(super) const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on forwarded connections waiting to be picked up by the tunnel's
/// task (russh's loop hands them over without waiting). No more than the
/// tunnel's cap could be carried anyway.
const MAX_PENDING_CONNECTIONS: usize = 4096;

/// Default bind address of remote forwards on the server, as `ssh -R`.
pub const DEFAULT_REMOTE_BIND: &str = "localhost";

/// What the server listens on and where connections go.
#[derive(Debug, Clone)]
pub struct RemoteForwardSpec {
    /// Where the server listens: a bind address and port (0 lets it pick),
    /// or a unix socket on the server.
    pub listen: Endpoint,
    /// Where tunneld connects: a host and port, a local unix socket, or
    /// [`Endpoint::Socks`] for a reverse dynamic forward.
    pub target: Endpoint,
    /// With a SOCKS target, the targets its requests may name.
    pub permit_remote_open: RemoteOpenPolicy,
    /// Limits on its connections.
    pub limits: ConnectionLimits,
}

/// Asks the server to listen and starts carrying its connections.
pub async fn open_remote(
    host: Arc<SshHost>,
    spec: RemoteForwardSpec,
    id: String,
    parent: &CancellationToken,
    options: TunnelOptions,
) -> Result<Arc<Tunnel>> {
    let asked = match &spec.listen {
        Endpoint::Tcp { host, port } => RemoteListener::Tcp {
            address: host.clone(),
            port: *port,
        },
        Endpoint::Unix { path } => RemoteListener::Unix {
            path: path.to_string_lossy().into_owned(),
        },
        Endpoint::Socks => {
            return Err(Error::InvalidArgument(
                "a remote forward listens on a TCP port or a unix socket, not SOCKS".into(),
            ));
        }
    };
    let session = host.session().await?;
    let routes = host.routes().clone();
    // A burst up to the tunnel's cap is queued, not rejected, while the
    // task is busy.
    let pending = (options.max_connections as usize).clamp(1, MAX_PENDING_CONNECTIONS);
    let (tx, rx) = mpsc::channel(pending);
    // Route before asking when the listener is known (not a port the server
    // picks), so no early connection finds no taker.
    let known = !matches!(asked, RemoteListener::Tcp { port: 0, .. });
    if known {
        routes.add(&asked, tx.clone());
    }
    let listener = match session.forward(&asked).await {
        Ok(l) => l,
        Err(e) => {
            if known {
                routes.remove(&asked);
            }
            return Err(e);
        }
    };
    routes.add(&listener, tx);
    let remote = match &listener {
        RemoteListener::Tcp { address, port } => Endpoint::Tcp {
            host: address.clone(),
            port: *port,
        },
        RemoteListener::Unix { .. } => spec.listen.clone(),
    };
    let kind = match spec.target {
        Endpoint::Socks => TunnelKind::RemoteDynamic,
        _ => TunnelKind::Remote,
    };
    let tunnel = Arc::new(
        Tunnel::new(id, kind, &host, (spec.target, remote), parent, options)
            .with_permit_remote_open(spec.permit_remote_open.entries()),
    );
    let span = tracing::info_span!("remote_forward", tunnel = %tunnel.id, host = %tunnel.host, listen = %tunnel.remote, target = %tunnel.local);
    // Carried on the host's I/O thread, next to its SSH session.
    let io = host.io().handle();
    let targets = Arc::new(spec.permit_remote_open);
    tunnel.tasks.spawn_on(
        serve(rx, tunnel.clone(), host, session, listener, targets).instrument(span),
        &io,
    );
    tracing::info!(tunnel = %tunnel.id, listen = %tunnel.remote, target = %tunnel.local, host = %tunnel.host, "remote forward open");
    Ok(tunnel)
}

/// Carries the server's connections; when the SSH connection is replaced
/// after a loss, asks the new one to listen on the same address and port
/// again, retrying with backoff while the server refuses.
async fn serve(
    mut rx: mpsc::Receiver<ForwardedChannel>,
    tunnel: Arc<Tunnel>,
    host: Arc<SshHost>,
    session: Arc<SshSession>,
    listener: RemoteListener,
    targets: Arc<RemoteOpenPolicy>,
) {
    let mut link = host.subscribe();
    // The connection the server listens for us on, if any.
    let mut listening: Option<Arc<SshSession>> = Some(session.clone());
    // The connection last asked to listen: a new one is asked at once.
    let mut asked_on = session;
    let mut refusals = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let restore_now = tokio::select! {
            () = tunnel.accepting.cancelled() => break,
            Some(fc) = rx.recv() => {
                let span = tracing::debug_span!("conn", peer = %fc.originator);
                tunnel
                    .tasks
                    .spawn(carry(fc, tunnel.clone(), targets.clone()).instrument(span));
                false
            }
            r = link.changed() => {
                if r.is_err() {
                    break;
                }
                let now = link.borrow_and_update().clone();
                match now.live() {
                    Some(s) if Arc::ptr_eq(&s, &asked_on) => false,
                    Some(_) => {
                        listening = None;
                        refusals = 0;
                        true
                    }
                    None => {
                        listening = None;
                        retry_at = None;
                        tunnel.on_link(&now);
                        false
                    }
                }
            }
            () = wait_until(retry_at) => true,
        };
        if !restore_now {
            continue;
        }
        retry_at = None;
        let Some(session) = link.borrow().live() else {
            continue;
        };
        asked_on = session.clone();
        let asked = tokio::select! {
            () = tunnel.accepting.cancelled() => break,
            r = session.forward(&listener) => r,
        };
        match asked {
            Ok(_) => {
                listening = Some(session);
                tunnel.restored();
            }
            Err(e) => {
                refusals += 1;
                let delay = restore_delay(&host, refusals);
                tracing::warn!("remote forward not restored: {e}; retrying in {delay:?}");
                tunnel.set_state(
                    TunnelState::Failed,
                    format!(
                        "not restored after reconnecting: {e}; retrying in {} (attempt {refusals})",
                        humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                    ),
                );
                retry_at = Some(tokio::time::Instant::now() + delay);
            }
        }
    }
    host.routes().remove(&listener);
    if let Some(session) = listening.filter(|s| !s.is_closed())
        && let Err(e) = session.cancel_forward(&listener).await
    {
        tracing::warn!("cancelling the remote forward failed: {e}");
    }
    tracing::info!("remote forward closed");
}

/// Resolves at `at`, or never when there is none.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn carry(fc: ForwardedChannel, tunnel: Arc<Tunnel>, targets: Arc<RemoteOpenPolicy>) {
    let Some(conn) = tunnel.connection(&fc.originator) else {
        fc.reply
            .reject(russh::ChannelOpenFailure::ResourceShortage)
            .await;
        return;
    };
    match &tunnel.local {
        Endpoint::Tcp { host, port } => {
            let connect = TcpStream::connect((host.as_str(), *port));
            if let Some(tcp) = connect_local(connect, &fc, &conn, &tunnel.local).await {
                let _ = tcp.set_nodelay(true);
                accept_and_relay(fc, &conn, &tunnel, tcp).await;
            } else {
                refuse_unconnected(fc).await;
            }
        }
        Endpoint::Unix { path } => {
            let connect = UnixStream::connect(path);
            match connect_local(connect, &fc, &conn, &tunnel.local).await {
                Some(unix) => accept_and_relay(fc, &conn, &tunnel, unix).await,
                None => refuse_unconnected(fc).await,
            }
        }
        Endpoint::Socks => dynamic::carry_remote(fc, &conn, &tunnel, &targets).await,
    }
}

/// Connects to the local target within [`LOCAL_CONNECT_TIMEOUT`]; a failure
/// is logged (throttled) and recorded on the connection.
async fn connect_local<S>(
    connect: impl Future<Output = std::io::Result<S>>,
    fc: &ForwardedChannel,
    conn: &Connection<'_>,
    target: &Endpoint,
) -> Option<S> {
    let why = match tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(stream)) => return Some(stream),
        Ok(Err(e)) => format!("cannot connect to {target}: {e}"),
        Err(_) => format!("connecting to {target} timed out"),
    };
    if REFUSED.admit() {
        tracing::warn!(from = %fc.originator, "refusing forwarded connection: {why}");
    }
    conn.fail(why);
    None
}

async fn accept_and_relay<S: LocalStream>(
    fc: ForwardedChannel,
    conn: &Connection<'_>,
    tunnel: &Tunnel,
    local: S,
) {
    fc.reply.accept().await;
    // Never alone: the remote forward itself needs the session loop.
    tunnel.relay_connection(conn, local, fc.channel, None).await;
}

/// Rejects a forwarded channel whose local target could not be reached, as
/// OpenSSH does.
async fn refuse_unconnected(fc: ForwardedChannel) {
    fc.reply
        .reject(russh::ChannelOpenFailure::ConnectFailed)
        .await;
}

/// Refused forwarded connections: their peers are on the server's side,
/// as many as they like.
static REFUSED: Throttle = Throttle::new(
    "refused forwarded connections of remote forwards",
    10,
    Duration::from_secs(10),
);
