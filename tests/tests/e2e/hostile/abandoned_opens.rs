//! Finding 6: an OpenRemoteForward cancelled while sshd's reply is pending
//! left sshd listening, unlisted and unclosable; reopening the port got
//! PERMISSION_DENIED until the SSH connection dropped. Now an abandoned
//! open is rolled back (cancel-tcpip-forward) or completes and is listed.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{OpenLocalForwardRequest, OpenRemoteForwardRequest};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;

use crate::support::{Bed, close, e2e, exchange, list};

#[tokio::test(flavor = "multi_thread")]
async fn remote_forwards_abandoned_at_any_moment_are_rolled_back_and_the_port_reopens() -> Result<()>
{
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let bed = Bed::start().await?;
        // Below the ephemeral range: no client connection elsewhere can take
        // it as its source port between two rounds (sshd would then refuse
        // to listen, EADDRINUSE).
        let port = tunneld_tests::sshd::free_port()?;
        let request = || OpenRemoteForwardRequest {
            remote_bind_address: "127.0.0.1".into(),
            remote_port: port.into(),
            local_host: "127.0.0.1".into(),
            local_port: echo.port().into(),
            ..Default::default()
        };
        // Warm the SSH connection, so the deadlines fall on the forward.
        list(&bed.client).await?;
        tunneld_tests::exec::run_ok(&bed.client, "true").await?;
        for ms in [1u64, 2, 3, 5, 8, 10, 15, 20, 30, 40] {
            let mut req = tonic::Request::new(request());
            req.set_timeout(Duration::from_millis(ms));
            let outcome = bed.client.clone().open_remote_forward(req).await;
            let kept = match outcome {
                Ok(r) => Some(r.into_inner().tunnel.context("no tunnel")?.id),
                Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled) => None,
                Err(s) => anyhow::bail!("{ms} ms deadline: {s:?}"),
            };
            // Whatever the caller saw, the same port opens again: at once if
            // the open was rolled back, after a Close if it completed. An open
            // whose reply crossed the caller's deadline (the caller saw
            // DEADLINE_EXCEEDED, tunneld had finished) completed: it is
            // listed, and closed like a kept one.
            if let Some(id) = &kept {
                close(&bed.client, id).await?;
            } else {
                for t in list(&bed.client).await?.tunnels {
                    close(&bed.client, &t.id).await?;
                }
            }
            let reopened = poll_until(
                &format!("port {port} to reopen after a {ms} ms deadline"),
                Duration::from_secs(10),
                || async {
                    match bed.client.clone().open_remote_forward(request()).await {
                        Ok(r) => Ok(Some(r.into_inner().tunnel.context("no tunnel")?)),
                        // The rollback's cancel-tcpip-forward may still be on its way.
                        Err(s) if s.code() == Code::PermissionDenied => Ok(None),
                        Err(s) => Err(s).context("reopening"),
                    }
                },
            )
            .await?;
            let listed = list(&bed.client).await?;
            ensure!(
                listed.tunnels.len() == 1,
                "{ms} ms: {} tunnels listed: {:?}",
                listed.tunnels.len(),
                listed.tunnels
            );
            // The reopened forward carries, then frees the port on the server.
            let got = exchange(port, b"via the server", Duration::from_secs(10)).await?;
            ensure!(got == b"via the server", "{ms} ms: {got:?}");
            close(&bed.client, &reopened.id).await?;
            poll_until(
                "the server's port to close",
                Duration::from_secs(10),
                || async { Ok(port_is_free(port).then_some(())) },
            )
            .await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn local_forwards_abandoned_at_any_moment_never_keep_a_port() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let bed = Bed::start().await?;
        // Below the ephemeral range: no client connection elsewhere can take
        // it as its source port between two rounds (sshd would then refuse
        // to listen, EADDRINUSE).
        let port = tunneld_tests::sshd::free_port()?;
        for ms in [1u64, 2, 5, 10, 20] {
            let request = || {
                let mut req = tonic::Request::new(OpenLocalForwardRequest {
                    local_port: port.into(),
                    remote_host: "127.0.0.1".into(),
                    remote_port: echo.port().into(),
                    ..Default::default()
                });
                req.set_timeout(Duration::from_millis(ms));
                req
            };
            // The previous round's abandoned open may still be finishing
            // (opened after its caller left, then closed): its port is
            // taken for that moment, never for good.
            let started = std::time::Instant::now();
            let outcome = loop {
                match bed.client.clone().open_local_forward(request()).await {
                    Err(s)
                        if s.code() == Code::AlreadyExists
                            && started.elapsed() < Duration::from_secs(5) =>
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    other => break other,
                }
            };
            let kept = match outcome {
                Ok(r) => Some(r.into_inner().tunnel.context("no tunnel")?.id),
                Err(s) if matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled) => None,
                Err(s) => anyhow::bail!("{ms} ms deadline: {s:?}"),
            };
            let listed = list(&bed.client).await?;
            match kept {
                Some(id) => {
                    ensure!(
                        listed.tunnels.iter().any(|t| t.id == id),
                        "{ms} ms: opened but not listed"
                    );
                    close(&bed.client, &id).await?;
                }
                None => {
                    // Rolled back, or listed: never bound and unlisted.
                    for t in &listed.tunnels {
                        close(&bed.client, &t.id).await?;
                    }
                }
            }
            poll_until(
                "the local port to be free",
                Duration::from_secs(10),
                || async {
                    Ok(
                        (port_is_free(port) && list(&bed.client).await?.tunnels.is_empty())
                            .then_some(()),
                    )
                },
            )
            .await
            .with_context(|| format!("{ms} ms"))?;
        }
        // Whatever the last round left finishing, nothing stays.
        poll_until(
            "the local port to stay free",
            Duration::from_secs(10),
            || async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(
                    (port_is_free(port) && list(&bed.client).await?.tunnels.is_empty())
                        .then_some(()),
                )
            },
        )
        .await?;
        Ok(())
    })
    .await
}
