//! Routing of `forwarded-tcpip` and `forwarded-streamlocal@openssh.com`
//! channels (connections the SSH server accepted on a remote forward) to the
//! tunnel that asked for that forward.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::SshChannel;

/// A connection the SSH server accepted on a remote forward, not yet
/// accepted or rejected by us.
pub struct ForwardedChannel {
    /// The channel; usable once `reply` is accepted.
    pub channel: SshChannel,
    /// Accept or reject the channel; dropping it rejects.
    pub reply: russh::client::ChannelOpenHandle,
    /// Address and port of the peer that connected to the server.
    pub originator: String,
}

/// Where the SSH server listens for a remote forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteListener {
    /// `tcpip-forward`: an address and port (0 until the server picked one).
    Tcp {
        /// The bind address, as asked.
        address: String,
        /// The port.
        port: u16,
    },
    /// `streamlocal-forward@openssh.com`: a unix socket's path.
    Unix {
        /// The path, on the server.
        path: String,
    },
}

impl std::fmt::Display for RemoteListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteListener::Tcp { address, port } => {
                f.write_str(&tunnel_proto::addr::join_host_port(address, *port))
            }
            RemoteListener::Unix { path } => f.write_str(path),
        }
    }
}

struct Route {
    listener: RemoteListener,
    tx: mpsc::Sender<ForwardedChannel>,
}

/// Who receives the channels for each (bind address, port) forwarded.
#[derive(Default)]
pub struct ForwardRoutes {
    // std Mutex: held only for a lookup, never across an await.
    routes: Mutex<Vec<Route>>,
}

impl ForwardRoutes {
    /// Sends channels for `listener` to `tx` from now on.
    pub fn add(&self, listener: &RemoteListener, tx: mpsc::Sender<ForwardedChannel>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| r.listener != *listener);
        routes.push(Route {
            listener: listener.clone(),
            tx,
        });
    }

    /// Whether no remote forward is registered.
    pub fn is_empty(&self) -> bool {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Stops routing `listener`.
    pub fn remove(&self, listener: &RemoteListener) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| r.listener != *listener);
    }

    /// Hands a `forwarded-tcpip` channel to the tunnel listening on
    /// `address:port`. Never blocks (it runs inside russh's session loop):
    /// when no tunnel wants it or the tunnel's queue is full, the channel is
    /// dropped, which rejects it.
    pub fn dispatch(&self, address: &str, port: u32, fc: ForwardedChannel) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let port_is = |r: &&Route| matches!(&r.listener, RemoteListener::Tcp { port: p, .. } if u32::from(*p) == port);
        // The server reports the port it bound and the address as we asked
        // for it; match the port and prefer an exact address match.
        let route = routes
            .iter()
            .filter(port_is)
            .find(|r| matches!(&r.listener, RemoteListener::Tcp { address: a, .. } if a == address))
            .or_else(|| routes.iter().find(port_is));
        let shown = tunnel_proto::addr::join_host_port(address, port);
        hand_over(route, &shown, fc);
    }

    /// Hands a `forwarded-streamlocal@openssh.com` channel to the tunnel
    /// listening on the socket at `path`, as [`ForwardRoutes::dispatch`].
    pub fn dispatch_unix(&self, path: &str, fc: ForwardedChannel) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let route = routes
            .iter()
            .find(|r| matches!(&r.listener, RemoteListener::Unix { path: p } if p == path));
        hand_over(route, path, fc);
    }
}

fn hand_over(route: Option<&Route>, listener: &str, fc: ForwardedChannel) {
    match route {
        Some(r) => {
            if let Err(e) = r.tx.try_send(fc) {
                tracing::warn!(%listener, "remote forward busy or closing; rejecting connection: {e}");
            }
        }
        None => {
            tracing::warn!(%listener, "forwarded connection for a listener no tunnel owns; rejecting")
        }
    }
}
