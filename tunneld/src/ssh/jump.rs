//! Jump hosts (`ssh -J`, ProxyJump): another way to get the byte stream a
//! handshake runs over. The first hop is dialled ([`dial`]), each next hop
//! is reached through a `direct-tcpip` channel of the one before, and the
//! target's stream is such a channel of the last hop. Every hop is an
//! [`SshSession`] of its own: its host key checked and its user
//! authenticated under its own name, known_hosts and policy.
//!
//! The target's session holds the [`Route`], so the hops live exactly as
//! long as it does. The target does not count on its stream reading EOF
//! when a hop goes away: in the e2e test the old target session logged no
//! end of its own after its hop died, so russh may only notice through
//! keepalives. [`Route::closed`] is what makes the target's `closed()`
//! fire at once, and names the hop that was lost.

use std::{net::SocketAddr, sync::Arc};

use futures_util::future::select_all;
use russh::{ChannelStream, client::Msg};

use super::{HostConfig, SshSession, auth::Credentials, dial::dial};
use crate::error::{Error, Result};

/// The originator a `direct-tcpip` channel to the next hop names: no local
/// socket connected to it (OpenSSH's `-W` says the same).
const ORIGINATOR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));

/// The jump sessions a connection runs through, first hop first.
pub struct Route {
    hops: Vec<SshSession>,
}

impl Route {
    /// Connects `target`'s jump hosts in order and opens the channel to
    /// `target` through the last; returns them and the stream the target's
    /// handshake runs over. Every hop's credentials are read before any
    /// traffic. Each step is bounded (connect, handshake, channel open).
    pub async fn open(target: &HostConfig) -> Result<(Route, ChannelStream<Msg>)> {
        let mut credentials = Vec::with_capacity(target.jump.len());
        for hop in &target.jump {
            credentials.push(Credentials::load(hop).await?);
        }
        let mut hops: Vec<SshSession> = Vec::with_capacity(target.jump.len());
        for (hop, credentials) in target.jump.iter().zip(credentials) {
            let config = Arc::new(hop.clone());
            // A hop carries no remote forward: its own empty routes refuse
            // any forwarded channel.
            let session = match hops.last() {
                None => {
                    let stream = dial(hop).await?;
                    SshSession::handshake(config, Arc::default(), stream, credentials).await?
                }
                Some(previous) => {
                    let stream = forward(previous, hop, target).await?;
                    SshSession::handshake(config, Arc::default(), stream, credentials).await?
                }
            };
            tracing::debug!(host = %target.name, hop = %hop.name, "jump host connected");
            hops.push(session);
        }
        let last = hops.last().ok_or_else(|| {
            target.connection_failed("a route without jump hosts (tunneld bug)".into())
        })?;
        let stream = forward(last, target, target).await?;
        Ok((Route { hops }, stream))
    }

    /// Resolves when any hop's connection ends.
    pub async fn closed(&self) {
        if self.hops.is_empty() {
            return std::future::pending().await;
        }
        select_all(self.hops.iter().map(|h| Box::pin(h.closed()))).await;
    }

    /// Whether any hop's connection has ended.
    pub fn is_closed(&self) -> bool {
        self.hops.iter().any(SshSession::is_closed)
    }

    /// Why the route broke: the first hop (in order) that is gone, and why;
    /// the hops after it went with it.
    pub fn lost(&self) -> Option<String> {
        self.hops.iter().find(|h| h.is_closed()).map(|h| {
            format!(
                "lost jump host {:?} ({}): {}",
                h.host().name,
                h.host().addr(),
                h.close_reason()
            )
        })
    }

    /// Says goodbye to every hop, last first.
    pub async fn disconnect(&self) {
        for hop in self.hops.iter().rev() {
            hop.goodbye().await;
        }
    }
}

/// Opens the channel from `via` to `next`'s SSH server (`next` is a hop or
/// the `target` itself); a refusal names the jump host and where it was
/// asked to forward to.
async fn forward(
    via: &SshSession,
    next: &HostConfig,
    target: &HostConfig,
) -> Result<ChannelStream<Msg>> {
    match via
        .open_direct_tcpip(&next.hostname, next.port, ORIGINATOR)
        .await
    {
        Ok(channel) => Ok(channel.into_stream()),
        Err(Error::ChannelRefused {
            host,
            reason,
            prohibited,
            ..
        }) => Err(Error::JumpRefused {
            jump: host,
            host: target.name.clone(),
            addr: next.addr(),
            reason,
            prohibited,
        }),
        Err(other) => Err(other),
    }
}
