//! Local forwards (`ssh -L`): listen on tunneld's machine and carry each
//! accepted connection through a `direct-tcpip` channel.

use std::{io, net::SocketAddr, sync::Arc};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ConnectionLimits, Endpoint, Tunnel, TunnelKind, TunnelOptions};
use crate::{
    error::{Error, Result},
    relay::LocalStream,
    ssh::SshHost,
    sys::accept_backoff::AcceptBackoff,
};

/// What a local forward listens on and where it connects.
#[derive(Debug, Clone)]
pub struct LocalForwardSpec {
    /// Address to listen on (IP or resolvable name).
    pub bind_address: String,
    /// Port to listen on; 0 picks one.
    pub local_port: u16,
    /// Host the SSH server connects to.
    pub remote_host: String,
    /// Port the SSH server connects to.
    pub remote_port: u16,
    /// Limits on its connections.
    pub limits: ConnectionLimits,
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
    let listener = bind(&spec.bind_address, spec.local_port).await?;
    let bind_failed = |e: io::Error| Error::LocalBind {
        addr: format!("{}:{}", spec.bind_address, spec.local_port),
        reason: e.to_string(),
        permission: false,
    };
    let bound = listener.local_addr().map_err(bind_failed)?;
    let listener = listener.into_std().map_err(bind_failed)?;
    let target = Endpoint::Tcp {
        host: spec.remote_host,
        port: spec.remote_port,
    };
    let local = Endpoint::Tcp {
        host: bound.ip().to_string(),
        port: bound.port(),
    };
    let tunnel = Arc::new(Tunnel::new(
        id,
        TunnelKind::Local,
        &host,
        (local, target),
        parent,
        options,
    ));
    let span = tracing::info_span!("local_forward", tunnel = %tunnel.id, host = %tunnel.host, listen = %bound, target = %tunnel.remote);
    tunnel
        .tasks
        .spawn(follow_link(tunnel.clone(), host.clone()).instrument(span.clone()));
    // Accepting and carrying run on the host's I/O thread, next to its SSH
    // session; the listener moves to that thread's reactor.
    let io = host.io().handle();
    let accepting = {
        let tunnel = tunnel.clone();
        async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, tunnel, host).await,
                Err(e) => tracing::error!("cannot accept on the forward's port: {e}"),
            }
        }
    };
    tunnel.tasks.spawn_on(accepting.instrument(span), &io);
    tracing::info!(tunnel = %tunnel.id, listen = %bound, target = %tunnel.remote, host = %tunnel.host, "local forward open");
    Ok(tunnel)
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

async fn accept_loop(listener: TcpListener, tunnel: Arc<Tunnel>, host: Arc<SshHost>) {
    let mut backoff = AcceptBackoff::new("the forward's port");
    loop {
        let accepted = tokio::select! {
            () = tunnel.cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.accepted();
                let span = tracing::debug_span!("conn", %peer);
                tunnel
                    .tasks
                    .spawn(carry(tcp, peer, tunnel.clone(), host.clone()).instrument(span));
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::select! {
                    () = tunnel.cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    tracing::info!("local forward closed; port released");
}

async fn carry(tcp: TcpStream, peer: SocketAddr, tunnel: Arc<Tunnel>, host: Arc<SshHost>) {
    let Some(conn) = tunnel.connection(peer) else {
        let _ = tcp.reset_on_close();
        return;
    };
    let _ = tcp.set_nodelay(true);
    let Endpoint::Tcp {
        host: target_host,
        port: target_port,
    } = &tunnel.remote;
    let opened = tokio::select! {
        () = tunnel.cancel.cancelled() => return,
        r = async {
            let session = host.wait_session(tunnel.reconnect_wait()).await?;
            let channel = session.open_direct_tcpip(target_host, *target_port, peer).await?;
            Ok::<_, Error>((channel, session.usage().clone()))
        } => r,
    };
    let (channel, session) = match opened {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot carry connection from {peer}: {e}");
            conn.fail(e.to_string());
            let _ = tcp.reset_on_close();
            return;
        }
    };
    tunnel
        .relay_connection(&conn, tcp, channel, Some(&session))
        .await;
}
