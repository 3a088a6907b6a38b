//! Remote forwards (`ssh -R`): the SSH server listens, tunneld carries each
//! connection back to a target on its own side — here a real HTTP server,
//! fetched with a real HTTP client.

use anyhow::{Context, Result, ensure};
use tunnel_proto::v1::{OpenRemoteForwardRequest, Tunnel, TunnelKind, TunnelState};
use tunneld_tests::Client;
use tunneld_tests::data::random_token;
use tunneld_tests::peers::{HttpPeer, http_get};

use crate::support::{Bed, e2e, remote_port};

/// Opens a remote forward with a server-picked port to 127.0.0.1:`local_port`.
pub async fn open_remote(
    client: &Client,
    host: &str,
    local_port: u16,
) -> Result<Tunnel, tonic::Status> {
    let resp = client
        .clone()
        .open_remote_forward(OpenRemoteForwardRequest {
            host: host.into(),
            remote_port: 0,
            local_host: "127.0.0.1".into(),
            local_port: local_port.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    resp.tunnel
        .ok_or_else(|| tonic::Status::internal("OpenRemoteForwardResponse without a tunnel"))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_through_a_server_allocated_port() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let body = format!("served locally {}", random_token());
        let http = HttpPeer::start(body.clone()).await?;
        let tunnel = open_remote(&bed.client, "", http.port())
            .await
            .context("OpenRemoteForward")?;
        ensure!(
            tunnel.kind == TunnelKind::Remote as i32,
            "kind {:?}",
            tunnel.kind
        );
        ensure!(
            tunnel.state == TunnelState::Open as i32,
            "state {:?}",
            tunnel.state
        );
        let port = remote_port(&tunnel)?;
        ensure!(
            port != http.port(),
            "remote port equals the local target's port"
        );

        let (status, got) = http_get(&format!("http://127.0.0.1:{port}/")).await?;
        ensure!(
            status == 200 && got == body,
            "GET / via remote port {port}: {status} {got:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_fetches_each_get_their_own_answer() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("root").await?;
        let port = remote_port(
            &open_remote(&bed.client, "", http.port())
                .await
                .context("OpenRemoteForward")?,
        )?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            tasks.spawn(async move {
                let word = format!("fetch-{i}-{}", random_token());
                let (status, got) =
                    http_get(&format!("http://127.0.0.1:{port}/echo/{word}")).await?;
                ensure!(
                    status == 200 && got == word,
                    "fetch {i}: {status} {got:?}, expected {word:?}"
                );
                anyhow::Ok(())
            });
        }
        let mut failures = Vec::new();
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res.context("fetch task panicked").and_then(|r| r) {
                failures.push(format!("{e:#}"));
            }
        }
        ensure!(
            failures.is_empty(),
            "{} of 20 fetches failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    })
    .await
}
