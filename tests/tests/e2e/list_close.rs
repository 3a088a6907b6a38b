//! List and Close: what a user sees about tunnels and hosts, counters that
//! add up to the bytes actually sent, and Close really letting go.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_proto::v1::{CloseRequest, SshConnectionState, TunnelKind, TunnelState};
use tunneld_tests::data::random_bytes;
use tunneld_tests::exec;
use tunneld_tests::peers::{HttpPeer, TcpPeer, http_get, port_is_free};
use tunneld_tests::wait::poll_until;

use crate::forward_remote::open_remote;
use crate::support::{
    Bed, close, connect, e2e, exchange, expect_closed, expect_status, find_tunnel, list,
    local_port, open_local, remote_port,
};

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_the_tunnel_and_the_connected_host() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let opened = open_local(&bed.client, "", echo.port()).await?;
        // Make sure the SSH connection is up whether or not opening a forward
        // connects eagerly.
        exec::run_ok(&bed.client, "true").await?;

        let resp = list(&bed.client).await?;
        ensure!(
            resp.tunnels.len() == 1,
            "expected one tunnel, List has {:?}",
            resp.tunnels
        );
        let t = &resp.tunnels[0];
        ensure!(
            t.id == opened.id && !t.id.is_empty(),
            "List id {:?} vs opened {:?}",
            t.id,
            opened.id
        );
        ensure!(t.kind == TunnelKind::Local as i32, "kind {:?}", t.kind);
        ensure!(t.host == "default", "host {:?}", t.host);
        ensure!(
            t.state == TunnelState::Open as i32,
            "state {:?} ({})",
            t.state,
            t.state_detail
        );
        let local = t.local.as_ref().context("no local endpoint")?;
        ensure!(
            local.host == "127.0.0.1" && local.port == u32::from(local_port(&opened)?),
            "local end {local:?}"
        );
        let remote = t.remote.as_ref().context("no remote endpoint")?;
        ensure!(
            remote.host == "127.0.0.1" && remote.port == u32::from(echo.port()),
            "remote end {remote:?}"
        );
        ensure!(t.created_at.is_some(), "created_at unset");

        let host = resp
            .hosts
            .iter()
            .find(|h| h.name == "default")
            .context("no host named default")?;
        ensure!(
            host.state == SshConnectionState::Connected as i32,
            "default host state {:?} ({})",
            host.state,
            host.state_detail
        );
        ensure!(
            host.address == bed.sshd.address(),
            "address {:?}, expected {:?}",
            host.address,
            bed.sshd.address()
        );
        ensure!(host.tunnels == 1, "host reports {} tunnels", host.tunnels);
        ensure!(
            host.connected_at.is_some(),
            "connected_at unset on a connected host"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_match_the_bytes_sent_and_received() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // The digest server answers 64 bytes per connection, whatever it was
        // sent, so the two directions have different, known totals.
        let digest = TcpPeer::digest().await?;
        let tunnel = open_local(&bed.client, "", digest.port()).await?;
        let port = local_port(&tunnel)?;
        let sizes = [1usize, 1000, 65_536, 300_001];
        let mut sent = 0u64;
        let mut received = 0u64;
        for len in sizes {
            let reply = exchange(port, &random_bytes(len), Duration::from_secs(10)).await?;
            sent += len as u64;
            received += reply.len() as u64;
        }
        ensure!(
            received == 64 * sizes.len() as u64,
            "digest replies totalled {received} bytes"
        );

        let want = (sizes.len() as u64, sent, received);
        poll_until(
            "counters to settle at the bytes sent and received",
            Duration::from_secs(5),
            || async {
                let t = find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("tunnel vanished")?;
                let c = t.counters.unwrap_or_default();
                let got = (c.total_connections, c.bytes_to_target, c.bytes_from_target);
                if got == want && c.active_connections == 0 && c.failed_connections == 0 {
                    Ok(Some(()))
                } else {
                    bail!("counters {c:?}, want total/to/from {want:?}, 0 active, 0 failed")
                }
            },
        )
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_frees_the_local_port_and_ends_active_connections() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&tunnel)?;
        ensure!(
            !port_is_free(port),
            "forward port {port} is not taken while open"
        );

        let mut active = connect(port).await?;
        active.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), active.read_exact(&mut buf)).await??;
        poll_until(
            "the connection to show as active",
            Duration::from_secs(5),
            || async {
                let t = find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("tunnel vanished")?;
                Ok((t.counters.unwrap_or_default().active_connections == 1).then_some(()))
            },
        )
        .await?;

        let closed = close(&bed.client, &tunnel.id).await?;
        ensure!(closed.id == tunnel.id, "closed {:?}", closed.id);
        ensure!(
            closed.state == TunnelState::Closed as i32,
            "closed tunnel state {:?}",
            closed.state
        );
        let c = closed.counters.unwrap_or_default();
        ensure!(
            c.total_connections == 1 && c.bytes_to_target == 4,
            "final counters {c:?}"
        );

        poll_until(
            "the local port to be free after Close",
            Duration::from_secs(2),
            || async { Ok(port_is_free(port).then_some(())) },
        )
        .await?;
        expect_closed(&mut active, Duration::from_secs(5))
            .await
            .context("active connection survived Close")?;
        ensure!(
            find_tunnel(&bed.client, &tunnel.id).await?.is_none(),
            "closed tunnel still listed"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_remote_forward_stops_the_server_listening() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("still here").await?;
        let tunnel = open_remote(&bed.client, "", http.port())
            .await
            .context("OpenRemoteForward")?;
        let port = remote_port(&tunnel)?;
        let (status, body) = http_get(&format!("http://127.0.0.1:{port}/")).await?;
        ensure!(
            status == 200 && body == "still here",
            "before Close: {status} {body:?}"
        );

        close(&bed.client, &tunnel.id).await?;
        poll_until(
            "the remote port to refuse connections",
            Duration::from_secs(5),
            || async {
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Some(())),
                    Err(e) => bail!("connect error {e}"),
                    Ok(_) => bail!("port {port} still accepts"),
                }
            },
        )
        .await?;
        ensure!(
            find_tunnel(&bed.client, &tunnel.id).await?.is_none(),
            "closed tunnel still listed"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_an_unknown_id_is_not_found() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let res = bed
            .client
            .clone()
            .close(CloseRequest {
                id: "t-no-such-tunnel".into(),
            })
            .await;
        expect_status(
            "Close(t-no-such-tunnel)",
            res,
            tonic::Code::NotFound,
            &["t-no-such-tunnel"],
        )?;
        Ok(())
    })
    .await
}
