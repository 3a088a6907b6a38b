//! Routing of `forwarded-tcpip` channels (connections the SSH server accepted
//! on a remote forward) to the tunnel that asked for that forward.

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

struct Route {
    address: String,
    port: u32,
    tx: mpsc::Sender<ForwardedChannel>,
}

/// Who receives the channels for each (bind address, port) forwarded.
#[derive(Default)]
pub struct ForwardRoutes {
    // std Mutex: held only for a lookup, never across an await.
    routes: Mutex<Vec<Route>>,
}

impl ForwardRoutes {
    /// Sends channels for `address:port` to `tx` from now on.
    pub fn add(&self, address: &str, port: u32, tx: mpsc::Sender<ForwardedChannel>) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| !(r.port == port && r.address == address));
        routes.push(Route {
            address: address.to_string(),
            port,
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

    /// Stops routing `address:port`.
    pub fn remove(&self, address: &str, port: u32) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| !(r.port == port && r.address == address));
    }

    /// Hands a channel to the tunnel listening on `address:port`. Never
    /// blocks (it runs inside russh's session loop): when no tunnel wants it
    /// or the tunnel's queue is full, the channel is dropped, which rejects it.
    pub fn dispatch(&self, address: &str, port: u32, fc: ForwardedChannel) {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        // The server reports the port it bound and the address as we asked
        // for it; match the port and prefer an exact address match.
        let route = routes
            .iter()
            .find(|r| r.port == port && r.address == address)
            .or_else(|| routes.iter().find(|r| r.port == port));
        match route {
            Some(r) => {
                if let Err(e) = r.tx.try_send(fc) {
                    tracing::warn!(%address, port, "remote forward busy or closing; rejecting connection: {e}");
                }
            }
            None => {
                tracing::warn!(%address, port, "forwarded connection for a port no tunnel owns; rejecting")
            }
        }
    }
}
