//! Graceful drain (SIGTERM): health turns NOT_SERVING, forwards stop taking
//! connections, a transfer in flight completes byte-exact, then tunneld
//! exits 0 with its ports freed; a second SIGTERM stops at once.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Sshd, daemon};

use crate::support::{Bed, connect, e2e, exchange, expect_closed, list, local_port, open_local};

/// The serving status of `service` ("" for the server as a whole).
async fn health(bed: &Bed, service: &str) -> Result<i32> {
    let channel = daemon::channel(bed.daemon.api_addr(), bed.daemon.credentials()).await?;
    Ok(HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?
        .into_inner()
        .status)
}

/// Waits for tunneld to exit; its status and how long that took.
async fn exited(bed: &mut Bed, within: Duration) -> Result<(std::process::ExitStatus, Duration)> {
    let started = Instant::now();
    let status = bed.daemon.exited_within(within).await?;
    Ok((status, started.elapsed()))
}

/// Waits until a connection to 127.0.0.1:`port` is refused.
async fn refused(port: u16) -> Result<()> {
    poll_until(
        &format!("port {port} to refuse connections"),
        Duration::from_secs(10),
        || async move {
            Ok(
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
                    _ => None,
                },
            )
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_transfer_in_flight_refuses_new_connections_then_exits_zero() -> Result<()>
{
    e2e(async {
        let sshd = Sshd::start()?;
        let mut bed = Bed::with(sshd, |b| b.arg("--drain-timeout=30s")).await?;
        let echo = TcpPeer::echo().await?;
        let t = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&t)?;
        // A transfer under way when SIGTERM comes: 32 MiB out and back.
        let sent = random_bytes(32 << 20);
        let transfer = tokio::spawn({
            let sent = sent.clone();
            async move { exchange(port, &sent, Duration::from_secs(50)).await }
        });
        poll_until("bytes to flow", Duration::from_secs(10), || {
            let client = bed.client.clone();
            async move {
                let l = list(&client).await?;
                let moved = l
                    .tunnels
                    .iter()
                    .filter_map(|t| t.counters.as_ref())
                    .map(|c| c.bytes_to_target)
                    .sum::<u64>();
                Ok((moved > 1 << 20).then_some(()))
            }
        })
        .await?;
        ensure!(
            health(&bed, "").await? == ServingStatus::Serving as i32,
            "not serving before"
        );

        bed.daemon.signal(Signal::SIGTERM)?;
        refused(port).await?;
        ensure!(
            health(&bed, "").await? == ServingStatus::NotServing as i32
                && health(&bed, "tunnel.v1.TunnelService").await?
                    == ServingStatus::NotServing as i32,
            "health still SERVING while draining"
        );
        let got = transfer.await.context("transfer task")??;
        ensure!(
            sha256_hex(&got) == sha256_hex(&sent),
            "the transfer in flight lost bytes: {} of {} came back",
            got.len(),
            sent.len()
        );
        // Drained as soon as the last connection ended, not after 30 s.
        let (status, took) = exited(&mut bed, Duration::from_secs(15)).await?;
        ensure!(status.code() == Some(0), "tunneld exited with {status}");
        ensure!(took < Duration::from_secs(15), "exit took {took:?}");
        ensure!(
            port_is_free(port),
            "port {port} still taken after the drain"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_cuts_the_drain_short() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let mut bed = Bed::with(sshd, |b| b.arg("--drain-timeout=60s")).await?;
        let echo = TcpPeer::echo().await?;
        let port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let mut idle = connect(port).await?;
        idle.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), idle.read_exact(&mut buf)).await??;

        bed.daemon.signal(Signal::SIGTERM)?;
        refused(port).await?;
        // The open connection still carries while the drain waits for it.
        idle.write_all(b"pong").await?;
        tokio::time::timeout(Duration::from_secs(10), idle.read_exact(&mut buf)).await??;
        ensure!(&buf == b"pong", "echo during the drain: {buf:?}");
        ensure!(
            bed.daemon.try_wait()?.is_none(),
            "tunneld exited before the drain ended"
        );

        bed.daemon.signal(Signal::SIGTERM)?;
        let (status, took) = exited(&mut bed, Duration::from_secs(10)).await?;
        ensure!(status.code() == Some(0), "tunneld exited with {status}");
        ensure!(
            took < Duration::from_secs(10),
            "the second SIGTERM took {took:?}"
        );
        expect_closed(&mut idle, Duration::from_secs(5))
            .await
            .context("the idle connection outlived tunneld")?;
        Ok(())
    })
    .await
}
