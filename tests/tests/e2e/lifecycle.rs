//! The daemon's life: a clean, quick exit on SIGTERM that lets go of its
//! ports, and recovery when its SSH connection dies under it.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_proto::v1::SshConnectionState;
use tunneld_tests::exec;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;

use crate::support::{Bed, connect, e2e, expect_closed, list, local_port, open_local};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_quickly_and_frees_the_forward_port() -> Result<()> {
    e2e(async {
        let mut bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let mut active = connect(port).await?;
        active.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), active.read_exact(&mut buf)).await??;

        let (status, took) = bed.daemon.terminate().await?;
        ensure!(
            status.code() == Some(0),
            "tunneld exited with {status} after SIGTERM"
        );
        ensure!(
            took < Duration::from_secs(5),
            "tunneld took {took:?} to exit after SIGTERM"
        );
        ensure!(
            port_is_free(port),
            "forward port {port} still taken after tunneld exited"
        );
        expect_closed(&mut active, Duration::from_secs(5))
            .await
            .context("client connection outlived the daemon")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_also_exits_zero() -> Result<()> {
    e2e(async {
        let mut bed = Bed::start().await?;
        exec::run_ok(&bed.client, "true").await?;
        bed.daemon.signal(nix::sys::signal::Signal::SIGINT)?;
        let status = bed.daemon.exited_within(Duration::from_secs(5)).await?;
        ensure!(
            status.code() == Some(0),
            "tunneld exited with {status} after SIGINT"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_ssh_connection_is_reopened_on_next_use() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        exec::run_ok(&bed.client, "true")
            .await
            .context("first Exec")?;
        let killed = bed.sshd.kill_connections()?;
        ensure!(killed >= 1, "no sshd connection process to kill");

        // Detection may take a moment: the first attempts may fail
        // (UNAVAILABLE), and one may still find the dead shared connection
        // not yet noticed (its Exec runs on a connection of its own, so it
        // succeeds, and List then shows the loss). Within a bounded time an
        // Exec works and the host shows connected again.
        let out = poll_until(
            "Exec to succeed and the host to show connected after the connection died",
            Duration::from_secs(20),
            || async {
                let out = exec::run(&bed.client, exec::request("echo back")).await;
                let stdout = match out.code() {
                    Ok(0) => out.stdout_text(),
                    _ => bail!("{out}"),
                };
                let hosts = list(&bed.client).await?.hosts;
                let host = hosts
                    .iter()
                    .find(|h| h.name == "default")
                    .context("no default host")?;
                if host.state != SshConnectionState::Connected as i32 {
                    bail!(
                        "default host state {:?} ({}) after the Exec",
                        host.state,
                        host.state_detail
                    );
                }
                Ok(Some(stdout))
            },
        )
        .await?;
        ensure!(out == "back\n", "stdout {out:?}");
        ensure!(
            bed.sshd.connection_count() >= 1,
            "no new SSH connection on the server"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_ssh_connection_carries_every_tunnel_and_one_more_the_execs() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        exec::run_ok(&bed.client, "true").await?;
        let port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let mut s = connect(port).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await??;
        crate::forward_remote::open_remote(&bed.client, "", echo.port()).await?;
        exec::run_ok(&bed.client, "true").await?;
        // As OpenSSH's ControlMaster: one SSH connection (one per-connection
        // sshd process) for every tunnel on this host; the Execs, one after
        // the other, reuse one connection of their own.
        ensure!(
            bed.sshd.connection_count() == 2,
            "sshd holds {} connections for one host",
            bed.sshd.connection_count()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_forward_lost_with_its_connection_is_restored_on_the_same_port() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = crate::forward_remote::open_remote(&bed.client, "", echo.port()).await?;
        let port = tunnel.remote.as_ref().context("no remote end")?.port as u16;
        ensure!(
            bed.sshd.kill_connections()? >= 1,
            "no sshd connection process to kill"
        );
        let restored = poll_until(
            "List to show the remote forward restored",
            Duration::from_secs(20),
            || async {
                let t = crate::support::find_tunnel(&bed.client, &tunnel.id)
                    .await?
                    .context("the tunnel vanished from List")?;
                Ok(
                    (t.restores == 1 && t.state == tunnel_proto::v1::TunnelState::Open as i32)
                        .then_some(t),
                )
            },
        )
        .await?;
        ensure!(
            restored.remote.as_ref().map(|e| e.port) == Some(u32::from(port)),
            "the remote port changed: {:?}",
            restored.remote
        );
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        conn.write_all(b"again").await?;
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut buf)).await??;
        ensure!(
            &buf == b"again",
            "echo through the restored forward: {buf:?}"
        );
        let closed = bed
            .client
            .clone()
            .close(tunnel_proto::v1::CloseRequest {
                id: tunnel.id.clone(),
            })
            .await?
            .into_inner()
            .tunnel
            .context("no tunnel in CloseResponse")?;
        ensure!(
            closed.state == tunnel_proto::v1::TunnelState::Closed as i32,
            "closed state {:?}",
            closed.state
        );
        Ok(())
    })
    .await
}
