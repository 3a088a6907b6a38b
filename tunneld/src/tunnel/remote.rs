//! Remote forwards (`ssh -R`): the SSH server listens and each connection it
//! accepts comes back as a `forwarded-tcpip` channel, carried to a local
//! host and port.

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Connection, Endpoint, Tunnel, TunnelKind, TunnelOptions, TunnelState};
use crate::{
    error::Result,
    ssh::{ForwardedChannel, SshHost, SshSession},
};

/// Bound on connecting to the local target of a forwarded connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Forwarded connections waiting to be picked up by the tunnel's task.
const PENDING_CONNECTIONS: usize = 128;

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
    let (tx, rx) = mpsc::channel(PENDING_CONNECTIONS);
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
    let remote = Endpoint {
        host: spec.bind_address,
        port,
    };
    let local = Endpoint {
        host: spec.local_host,
        port: spec.local_port,
    };
    let tunnel = Arc::new(Tunnel::new(
        id,
        TunnelKind::Remote,
        &host.config().name,
        (local, remote),
        parent,
        options,
    ));
    let span = tracing::info_span!("remote_forward", tunnel = %tunnel.id, host = %tunnel.host, listen = %tunnel.remote, target = %tunnel.local);
    tunnel
        .tasks
        .spawn(serve(rx, tunnel.clone(), host, session).instrument(span));
    tracing::info!(tunnel = %tunnel.id, listen = %tunnel.remote, target = %tunnel.local, host = %tunnel.host, "remote forward open");
    Ok(tunnel)
}

async fn serve(
    mut rx: mpsc::Receiver<ForwardedChannel>,
    tunnel: Arc<Tunnel>,
    host: Arc<SshHost>,
    session: Arc<SshSession>,
) {
    let mut lost = false;
    loop {
        tokio::select! {
            () = tunnel.cancel.cancelled() => break,
            () = session.closed(), if !lost => {
                lost = true;
                tunnel.set_state(TunnelState::Failed, format!(
                    "{}; the server no longer listens on {} (close this tunnel and open it again)",
                    session.close_reason(), tunnel.remote));
                tracing::warn!("remote forward lost with its SSH connection");
            }
            Some(fc) = rx.recv() => {
                let span = tracing::debug_span!("conn", peer = %fc.originator);
                tunnel.tasks.spawn(carry(fc, tunnel.clone()).instrument(span));
            }
        }
    }
    let remote = &tunnel.remote;
    host.routes().remove(&remote.host, u32::from(remote.port));
    if !session.is_closed()
        && let Err(e) = session
            .cancel_tcpip_forward(&remote.host, remote.port)
            .await
    {
        tracing::warn!("cancel-tcpip-forward failed: {e}");
    }
    tracing::info!("remote forward closed");
}

async fn carry(fc: ForwardedChannel, tunnel: Arc<Tunnel>) {
    let conn = tunnel.connection(&fc.originator);
    let target = &tunnel.local;
    let connect = TcpStream::connect((target.host.as_str(), target.port));
    let tcp = match tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return refuse(fc, &conn, format!("cannot connect to {target}: {e}")).await;
        }
        Err(_) => return refuse(fc, &conn, format!("connecting to {target} timed out")).await,
    };
    let _ = tcp.set_nodelay(true);
    fc.reply.accept().await;
    tunnel.relay_connection(&conn, tcp, fc.channel).await;
}

async fn refuse(fc: ForwardedChannel, conn: &Connection<'_>, why: String) {
    tracing::warn!(from = %fc.originator, "refusing forwarded connection: {why}");
    conn.fail(why);
    fc.reply
        .reject(russh::ChannelOpenFailure::ConnectFailed)
        .await;
}
