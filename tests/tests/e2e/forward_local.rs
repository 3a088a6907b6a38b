//! Local forwards (`ssh -L`): connections accepted by tunneld are carried
//! through the SSH server to a target, byte for byte, half-close included.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_proto::v1::{TunnelKind, TunnelState};
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{self, TcpPeer};
use tunneld_tests::wait::poll_until;

use crate::support::{
    Bed, connect, connect_expecting_close, e2e, exchange, expect_closed, find_tunnel, local_port,
    localhost, open_local,
};

#[tokio::test(flavor = "multi_thread")]
async fn bytes_go_through_to_an_echo_server_and_back() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        ensure!(
            tunnel.kind == TunnelKind::Local as i32,
            "kind {:?}",
            tunnel.kind
        );
        ensure!(
            tunnel.state == TunnelState::Open as i32,
            "state {:?}",
            tunnel.state
        );
        let port = local_port(&tunnel)?;

        let mut s = connect(port).await?;
        s.write_all(b"hello through ssh").await?;
        let mut buf = [0u8; 17];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
            .await
            .context("echo reply hung")??;
        ensure!(
            &buf == b"hello through ssh",
            "echoed {:?}",
            String::from_utf8_lossy(&buf)
        );
        // A second round trip on the same connection.
        s.write_all(b"again").await?;
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
            .await
            .context("second echo reply hung")??;
        ensure!(
            &buf == b"again",
            "echoed {:?}",
            String::from_utf8_lossy(&buf)
        );
        ensure!(
            echo.accepted() == 1,
            "echo server saw {} connections",
            echo.accepted()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn half_close_reaches_the_target_and_the_reply_comes_back() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let digest = TcpPeer::digest().await?;
        let port = local_port(&open_local(&bed.client, "", digest.port()).await?)?;
        let data = random_bytes(500_000);
        // `exchange` writes, shuts down the write side, and reads to EOF: the
        // digest server only answers after it has seen EOF.
        let reply = exchange(port, &data, Duration::from_secs(20)).await?;
        ensure!(
            reply == sha256_hex(&data).as_bytes(),
            "digest reply {:?}, expected {}",
            String::from_utf8_lossy(&reply),
            sha256_hex(&data)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_connections_carry_their_own_bytes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50usize {
            // 256 KiB .. 1 MiB, different for every connection.
            let len = 256 * 1024 + (i * 15_731) % (768 * 1024);
            tasks.spawn(async move {
                let data = random_bytes(len);
                let back = exchange(port, &data, Duration::from_secs(45))
                    .await
                    .with_context(|| format!("connection {i} ({len} bytes)"))?;
                ensure!(
                    sha256_hex(&back) == sha256_hex(&data),
                    "connection {i}: sent {len} bytes, got {} different bytes back",
                    back.len()
                );
                anyhow::Ok(())
            });
        }
        let mut failures = Vec::new();
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res.context("connection task panicked").and_then(|r| r) {
                failures.push(format!("{e:#}"));
            }
        }
        ensure!(
            failures.is_empty(),
            "{} of 50 connections failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_target_closes_the_client_and_the_tunnel_lives_on() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let target = peers::refused_port()?;
        let tunnel = open_local(&bed.client, "", target).await?;
        let port = local_port(&tunnel)?;

        if let Some(mut s) = connect_expecting_close(port).await? {
            let _ = s.write_all(b"anyone there?").await;
            expect_closed(&mut s, Duration::from_secs(10))
                .await
                .context("client connection to a refused target was not closed")?;
        }
        poll_until(
            "failed_connections to count the refused connection",
            Duration::from_secs(5),
            || async {
                let t = find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("tunnel vanished from List")?;
                let c = t.counters.unwrap_or_default();
                if c.failed_connections == 1 {
                    Ok(Some(()))
                } else {
                    anyhow::bail!("counters {c:?}")
                }
            },
        )
        .await?;

        // Something starts listening at the target: the same tunnel now works.
        let echo = TcpPeer::echo_at(localhost(target)).await?;
        let back = exchange(port, b"now it works", Duration::from_secs(10)).await?;
        ensure!(
            back == b"now it works",
            "echoed {:?}",
            String::from_utf8_lossy(&back)
        );
        ensure!(echo.accepted() == 1);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_reset_closes_the_target_connection() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // The target reports how many bytes it read once its connection ends.
        let (tx, mut ended) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let target = TcpPeer::start(move |mut s| {
            let tx = tx.clone();
            async move {
                let (mut buf, mut total) = ([0u8; 4096], 0);
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                let _ = tx.send(total);
                Ok(())
            }
        })
        .await?;
        let tunnel = open_local(&bed.client, "", target.port()).await?;
        let mut s = connect(local_port(&tunnel)?).await?;
        s.write_all(b"sent before the reset").await?;
        poll_until(
            "the bytes to reach the target",
            Duration::from_secs(10),
            || async {
                let t = find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("tunnel gone")?;
                Ok((t.counters.unwrap_or_default().bytes_to_target == 21).then_some(()))
            },
        )
        .await?;
        // An abortive close: RST, not FIN.
        #[allow(deprecated)]
        // tokio deprecates set_linger for its blocking-close caveat, moot here
        s.set_linger(Some(Duration::ZERO))?;
        drop(s);
        let seen = tokio::time::timeout(Duration::from_secs(10), ended.recv())
            .await
            .context("the target's connection stayed open after the client reset")?
            .context("target peer gone")?;
        ensure!(seen == 21, "target read {seen} bytes, expected 21");
        poll_until(
            "the connection to leave the active count",
            Duration::from_secs(10),
            || async {
                let t = find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("tunnel gone")?;
                Ok((t.counters.unwrap_or_default().active_connections == 0).then_some(()))
            },
        )
        .await?;
        Ok(())
    })
    .await
}
