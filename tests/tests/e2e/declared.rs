//! Tunnels declared in the config file (`[tunnels.NAME]`): opened at
//! start, shown as declared, closed only by the file, retried while they
//! cannot open.

use std::net::TcpListener;

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{CloseRequest, Tunnel, TunnelSource, TunnelState};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Sshd, data, sshd};

use crate::support::{Bed, IO_TIMEOUT, e2e, exchange, expect_status, list};

fn table(pairs: &[(&str, &str)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::from(*v)))
        .collect()
}

/// Waits until the tunnel named `name` is listed in `state`.
async fn named(bed: &Bed, name: &str, state: TunnelState) -> Result<Tunnel> {
    poll_until(
        &format!("tunnel {name} to be {state:?}"),
        IO_TIMEOUT,
        || {
            let client = bed.client.clone();
            async move {
                let tunnels = list(&client).await?.tunnels;
                let t = tunnels.into_iter().find(|t| t.name == name);
                match t {
                    Some(t) if t.state == state as i32 => Ok(Some(t)),
                    other => anyhow::bail!("listed: {other:?}"),
                }
            }
        },
    )
    .await
}

async fn carries(port: u16, what: &str) -> Result<()> {
    let sent = data::random_bytes(128 * 1024);
    let got = exchange(port, &sent, IO_TIMEOUT)
        .await
        .with_context(|| format!("through {what}"))?;
    ensure!(
        data::sha256_hex(&got) == data::sha256_hex(&sent),
        "{what}: {} bytes came back, not the {} sent",
        got.len(),
        sent.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_tunnels_open_at_start_and_only_the_file_closes_them() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let service = TcpPeer::echo().await?;
        let (lport, rport) = (sshd::free_port()?, sshd::free_port()?);
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| {
            b.tunnel(
                "db",
                table(&[("local", &format!("{lport}:127.0.0.1:{}", echo.port()))]),
            )
            .tunnel(
                "web",
                table(&[
                    ("host", "default"),
                    ("remote", &format!("{rport}:127.0.0.1:{}", service.port())),
                ]),
            )
        })
        .await?;
        let db = named(&bed, "db", TunnelState::Open).await?;
        let web = named(&bed, "web", TunnelState::Open).await?;
        for t in [&db, &web] {
            ensure!(
                t.source == TunnelSource::Declared as i32,
                "not shown as declared: {t:?}"
            );
        }
        carries(lport, "declared local forward db").await?;
        carries(rport, "declared remote forward web").await?;
        for key in ["db", db.id.as_str()] {
            expect_status(
                "closing a declared tunnel",
                bed.client
                    .clone()
                    .close(CloseRequest { id: key.into() })
                    .await,
                Code::FailedPrecondition,
                &["tunneld.toml"],
            )?;
        }
        // Still there and carrying after the refusals.
        carries(lport, "db after the refused close").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_tunnel_that_cannot_open_is_listed_as_failed_and_retried() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let port = sshd::free_port()?;
        // Someone else holds the port when tunneld starts.
        let squatter = TcpListener::bind(("127.0.0.1", port))?;
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| {
            b.tunnel(
                "db",
                table(&[("local", &format!("{port}:127.0.0.1:{}", echo.port()))]),
            )
        })
        .await?;
        let failed = named(&bed, "db", TunnelState::Failed).await?;
        ensure!(
            failed.state_detail.contains("in use")
                || failed.state_detail.contains(&port.to_string()),
            "the reason does not name the port: {failed:?}"
        );
        drop(squatter);
        named(&bed, "db", TunnelState::Open).await?;
        carries(port, "db once its port was free").await?;
        Ok(())
    })
    .await
}
