//! Remote forwards (`ssh -R`): the SSH server listens and each connection it
//! accepts comes back as a `forwarded-tcpip` channel, carried to a local
//! host and port.

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Connection, ConnectionLimits, Endpoint, Tunnel, TunnelKind, TunnelOptions, TunnelState,
};
use crate::{
    error::Result,
    logging::Throttle,
    ssh::{ForwardedChannel, SshHost, SshSession},
};

/// Pause between a restore the server refused and the next try: the host's
/// reconnect backoff, counted per refusal.
fn restore_delay(host: &SshHost, refusals: u32) -> Duration {
    host.config().settings.reconnect.delay(refusals)
}

/// Bound on connecting to the local target of a forwarded connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on forwarded connections waiting to be picked up by the tunnel's
/// task (russh's loop hands them over without waiting). No more than the
/// tunnel's cap could be carried anyway.
const MAX_PENDING_CONNECTIONS: usize = 4096;

/// What the server listens on and where connections go.
#[derive(Debug, Clone)]
pub struct RemoteForwardSpec {
    /// Address the server listens on.
    pub bind_address: String,
    /// Port the server listens on; 0 lets it pick.
    pub remote_port: u16,
    /// Host tunneld connects to.
    pub local_host: String,
    /// Port tunneld connects to.
    pub local_port: u16,
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
    let session = host.session().await?;
    let routes = host.routes().clone();
    // A burst up to the tunnel's cap is queued, not rejected, while the
    // task is busy.
    let pending = (options.max_connections as usize).clamp(1, MAX_PENDING_CONNECTIONS);
    let (tx, rx) = mpsc::channel(pending);
    // Route before asking when the port is known, so no early connection
    // finds no taker.
    if spec.remote_port != 0 {
        routes.add(&spec.bind_address, u32::from(spec.remote_port), tx.clone());
    }
    let port = match session
        .tcpip_forward(&spec.bind_address, spec.remote_port)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            if spec.remote_port != 0 {
                routes.remove(&spec.bind_address, u32::from(spec.remote_port));
            }
            return Err(e);
        }
    };
    routes.add(&spec.bind_address, u32::from(port), tx);
    let remote = Endpoint::Tcp {
        host: spec.bind_address,
        port,
    };
    let local = Endpoint::Tcp {
        host: spec.local_host,
        port: spec.local_port,
    };
    let tunnel = Arc::new(Tunnel::new(
        id,
        TunnelKind::Remote,
        &host,
        (local, remote),
        parent,
        options,
    ));
    let span = tracing::info_span!("remote_forward", tunnel = %tunnel.id, host = %tunnel.host, listen = %tunnel.remote, target = %tunnel.local);
    // Carried on the host's I/O thread, next to its SSH session.
    let io = host.io().handle();
    tunnel.tasks.spawn_on(
        serve(rx, tunnel.clone(), host, session).instrument(span),
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
) {
    // Where the server listens for us.
    let Endpoint::Tcp {
        host: bind_address,
        port,
    } = tunnel.remote.clone();
    let mut link = host.subscribe();
    // The connection the server listens for us on, if any.
    let mut listening: Option<Arc<SshSession>> = Some(session.clone());
    // The connection last asked to listen: a new one is asked at once.
    let mut asked_on = session;
    let mut refusals = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let restore_now = tokio::select! {
            () = tunnel.cancel.cancelled() => break,
            Some(fc) = rx.recv() => {
                let span = tracing::debug_span!("conn", peer = %fc.originator);
                tunnel.tasks.spawn(carry(fc, tunnel.clone()).instrument(span));
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
            () = tunnel.cancel.cancelled() => break,
            r = session.tcpip_forward(&bind_address, port) => r,
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
    host.routes().remove(&bind_address, u32::from(port));
    if let Some(session) = listening.filter(|s| !s.is_closed())
        && let Err(e) = session.cancel_tcpip_forward(&bind_address, port).await
    {
        tracing::warn!("cancel-tcpip-forward failed: {e}");
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

async fn carry(fc: ForwardedChannel, tunnel: Arc<Tunnel>) {
    let Some(conn) = tunnel.connection(&fc.originator) else {
        fc.reply
            .reject(russh::ChannelOpenFailure::ResourceShortage)
            .await;
        return;
    };
    let target = &tunnel.local;
    let Endpoint::Tcp { host, port } = target;
    let connect = TcpStream::connect((host.as_str(), *port));
    let tcp = match tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return refuse(fc, &conn, format!("cannot connect to {target}: {e}")).await;
        }
        Err(_) => return refuse(fc, &conn, format!("connecting to {target} timed out")).await,
    };
    let _ = tcp.set_nodelay(true);
    fc.reply.accept().await;
    // Never alone: the remote forward itself needs the session loop.
    tunnel.relay_connection(&conn, tcp, fc.channel, None).await;
}

/// Refused forwarded connections: their peers are on the server's side,
/// as many as they like.
static REFUSED: Throttle = Throttle::new(
    "refused forwarded connections of remote forwards",
    10,
    Duration::from_secs(10),
);

async fn refuse(fc: ForwardedChannel, conn: &Connection<'_>, why: String) {
    if REFUSED.admit() {
        tracing::warn!(from = %fc.originator, "refusing forwarded connection: {why}");
    }
    conn.fail(why);
    fc.reply
        .reject(russh::ChannelOpenFailure::ConnectFailed)
        .await;
}
