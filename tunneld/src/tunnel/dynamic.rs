//! The SOCKS side of dynamic forwards. `ssh -D`: a connection accepted here
//! speaks SOCKS, its target is checked against the host's `permit_open`,
//! and the `direct-tcpip` channel is opened before the reply says success.
//! Reverse dynamic (`ssh -R PORT`): a channel the server forwards speaks
//! SOCKS, its target is checked against the tunnel's `permit_remote_open`,
//! and tunneld connects from its own machine before replying. In both,
//! bytes the client sent after its request reach the target first.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use russh::ChannelMsg;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::{Connection, Endpoint, Tunnel, local, remote};
use crate::{
    error::Error,
    logging::Throttle,
    policy::RemoteOpenPolicy,
    relay::LocalStream,
    socks::{self, Handshake, Refusal, Request, Step},
    ssh::{ForwardedChannel, SshChannel, SshHost},
};

/// SOCKS requests refused (protocol errors, rules, unreachable targets):
/// whoever reaches the proxy may send as many as they like.
static REFUSED: Throttle = Throttle::new("refused SOCKS requests", 10, Duration::from_secs(10));

/// Carries a connection accepted by a dynamic forward: reads its SOCKS
/// request, checks the target against the host's `permit_open`, opens the
/// channel, then replies.
pub(super) async fn carry_local<S: LocalStream>(
    mut stream: S,
    originator: SocketAddr,
    conn: &Connection<'_>,
    tunnel: &Arc<Tunnel>,
    host: &Arc<SshHost>,
) {
    let read = tokio::select! {
        () = tunnel.cancel.cancelled() => return,
        r = socks::read_request(&mut stream) => r,
    };
    let (request, leftover) = match read {
        Ok(r) => r,
        Err(e) => return refused(conn, format!("SOCKS request refused: {e}")),
    };
    let target = &request.target;
    let config = host.config();
    if let Err(e) = config
        .settings
        .policy
        .check_open(&config.name, &target.host(), target.port())
    {
        return refuse(
            &mut stream,
            &request,
            Refusal::NotAllowed,
            conn,
            e.to_string(),
        )
        .await;
    }
    let endpoint = Endpoint::Tcp {
        host: target.host(),
        port: target.port(),
    };
    let Some(opened) = local::open_channel(tunnel, host, &endpoint, originator).await else {
        return;
    };
    let (channel, session) = match opened {
        Ok(c) => c,
        Err(e) => {
            let refusal = refusal_of_channel(&e);
            return refuse(&mut stream, &request, refusal, conn, e.to_string()).await;
        }
    };
    if let Err(e) = stream.write_all(&request.success(None)).await {
        conn.fail(format!("the SOCKS client went away before the reply: {e}"));
        return;
    }
    if !leftover.is_empty() {
        if channel.data(&leftover[..]).await.is_err() {
            conn.fail("the channel closed before the client's first bytes were sent");
            return;
        }
        conn.count_to_target(leftover.len());
    }
    tracing::debug!(target = %request.target, "SOCKS CONNECT carried");
    tunnel
        .relay_connection(conn, stream, channel, Some(&session))
        .await;
}

/// Carries a channel forwarded to a reverse dynamic forward: accepts it,
/// reads its SOCKS request, checks `targets`, connects from here, then
/// replies.
pub(super) async fn carry_remote(
    fc: ForwardedChannel,
    conn: &Connection<'_>,
    tunnel: &Arc<Tunnel>,
    targets: &RemoteOpenPolicy,
) {
    fc.reply.accept().await;
    let mut channel = fc.channel;
    let read = tokio::select! {
        () = tunnel.cancel.cancelled() => return,
        r = tokio::time::timeout(socks::HANDSHAKE_TIMEOUT, read_channel_request(&mut channel)) => r,
    };
    let (request, leftover) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => {
            let _ = channel.close().await;
            return refused(conn, format!("SOCKS request refused: {why}"));
        }
        Err(_) => {
            let _ = channel.close().await;
            return refused(
                conn,
                format!(
                    "SOCKS request refused: none arrived within {}s",
                    socks::HANDSHAKE_TIMEOUT.as_secs()
                ),
            );
        }
    };
    let target = &request.target;
    if let Err(why) = targets.check(&target.host(), target.port()) {
        end_channel(&channel, &request.failure(Refusal::NotAllowed)).await;
        return refused(conn, why);
    }
    let connect = async {
        match target {
            socks::Target::Ip(addr) => TcpStream::connect(*addr).await,
            socks::Target::Domain { name, port } => {
                TcpStream::connect((name.as_str(), *port)).await
            }
        }
    };
    let connected = tokio::select! {
        () = tunnel.cancel.cancelled() => return,
        r = tokio::time::timeout(remote::LOCAL_CONNECT_TIMEOUT, connect) => r,
    };
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        failed => {
            let (refusal, why) = match failed {
                Ok(Err(e)) => (
                    refusal_of_io(&e),
                    format!("cannot connect to {target}: {e}"),
                ),
                _ => (
                    Refusal::TtlExpired,
                    format!(
                        "connecting to {target} timed out after {}s",
                        remote::LOCAL_CONNECT_TIMEOUT.as_secs()
                    ),
                ),
            };
            end_channel(&channel, &request.failure(refusal)).await;
            return refused(conn, why);
        }
    };
    let _ = tcp.set_nodelay(true);
    if channel
        .data(&request.success(tcp.local_addr().ok())[..])
        .await
        .is_err()
    {
        conn.fail("the channel closed before the SOCKS reply");
        return;
    }
    let mut tcp = tcp;
    if !leftover.is_empty() {
        if let Err(e) = tcp.write_all(&leftover).await {
            conn.fail(format!("cannot write to {target}: {e}"));
            return;
        }
        // The local side is the target of a reverse forward.
        conn.count_to_target(leftover.len());
    }
    tracing::debug!(%target, "reverse SOCKS CONNECT carried");
    // Never alone: the remote forward itself needs the session loop.
    tunnel.relay_connection(conn, tcp, channel, None).await;
}

/// Reads a SOCKS request from a channel's data messages, answering the
/// method selection on the channel; returns the request and what followed
/// it, or why it was refused (the refusal's reply already sent).
async fn read_channel_request(channel: &mut SshChannel) -> Result<(Request, Vec<u8>), String> {
    let mut handshake = Handshake::new();
    loop {
        let data = match channel.wait().await {
            Some(ChannelMsg::Data { data }) => data,
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                return Err("the client closed the connection before its request".into());
            }
            Some(_) => continue,
        };
        let mut step = handshake.feed(&data);
        loop {
            match step {
                Step::NeedMore => break,
                Step::Reply(bytes) => {
                    channel
                        .data(&bytes[..])
                        .await
                        .map_err(|e| format!("cannot answer the SOCKS greeting: {e}"))?;
                    // The request may have come in the same message.
                    step = handshake.feed(&[]);
                }
                Step::Request { request, leftover } => return Ok((request, leftover)),
                Step::Refuse { reply, reason } => {
                    end_channel(channel, &reply).await;
                    return Err(reason);
                }
            }
        }
    }
}

/// Sends `reply` (if any) on a reverse dynamic forward's channel, then its
/// EOF and close: the end of a refused request.
async fn end_channel(channel: &SshChannel, reply: &[u8]) {
    if !reply.is_empty() {
        let _ = channel.data(reply).await;
    }
    let _ = channel.eof().await;
    let _ = channel.close().await;
}

/// Writes the failure reply for `refusal`, then ends the connection.
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &Request,
    refusal: Refusal,
    conn: &Connection<'_>,
    why: String,
) {
    let _ = stream.write_all(&request.failure(refusal)).await;
    let _ = stream.shutdown().await;
    refused(
        conn,
        format!("SOCKS CONNECT to {} refused: {why}", request.target),
    );
}

/// Records a refused SOCKS request: failed on the connection, logged
/// (throttled).
fn refused(conn: &Connection<'_>, why: String) {
    if REFUSED.admit() {
        tracing::warn!("{why}");
    }
    conn.fail(why);
}

/// The SOCKS reply for a channel the SSH server would not open. sshd says
/// only "connect failed" for a refused port, an unreachable host and a name
/// it cannot resolve alike; curl shows that as "Connection refused".
fn refusal_of_channel(e: &Error) -> Refusal {
    match e {
        Error::ChannelRefused {
            prohibited: true, ..
        } => Refusal::NotAllowed,
        Error::ChannelRefused {
            connect_failed: true,
            ..
        } => Refusal::ConnectionRefused,
        Error::SshUnreachable { .. } | Error::SshConnection { .. } | Error::ShuttingDown => {
            Refusal::NetworkUnreachable
        }
        _ => Refusal::GeneralFailure,
    }
}

/// The SOCKS reply for a local connect that failed.
fn refusal_of_io(e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Refusal::ConnectionRefused,
        io::ErrorKind::HostUnreachable => Refusal::HostUnreachable,
        io::ErrorKind::NetworkUnreachable => Refusal::NetworkUnreachable,
        io::ErrorKind::TimedOut => Refusal::TtlExpired,
        // A name that does not resolve.
        _ if e.raw_os_error().is_none() => Refusal::HostUnreachable,
        _ => Refusal::GeneralFailure,
    }
}
