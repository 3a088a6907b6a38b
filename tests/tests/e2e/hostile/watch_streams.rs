//! Finding 2: one client opens 1,000 tunnels, then 2,000 Watch streams it
//! never reads. Before: each stream copied the whole snapshot and RSS went
//! from 9 MiB to 890 MiB, and stayed there.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tonic::transport::Endpoint;
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;
use tunnel_proto::v1::{OpenLocalForwardRequest, WatchRequest};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::procs::rss_kib;
use tunneld_tests::{Sshd, Tunneld};

use crate::support::{e2e, list};

/// Tunnels opened, and Watch streams started but never read.
const TUNNELS: usize = 1000;
const WATCHERS: usize = 2000;
/// Streams per HTTP/2 connection: below tunneld's 128 concurrent streams.
const PER_CONNECTION: usize = 125;

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_unread_watch_streams_over_a_thousand_tunnels_stay_small() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let target = TcpPeer::echo().await?;
        // The cap is raised so that every stream is served: this is about
        // what each one costs.
        let daemon = Tunneld::builder(&sshd)
            .arg("--max-watchers")
            // And one that reads, at the end.
            .arg((WATCHERS + 1).to_string())
            .start()
            .await?;
        let pid = daemon.pid().context("tunneld pid")?;
        let client = daemon.client();
        for i in 0..TUNNELS {
            client
                .clone()
                .open_local_forward(OpenLocalForwardRequest {
                    local_port: 0,
                    remote_host: "127.0.0.1".into(),
                    remote_port: target.port().into(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("opening tunnel {i}"))?;
        }
        let before = rss_kib(pid).context("tunneld RSS")?;

        let mut held = Vec::new();
        for c in 0..WATCHERS.div_ceil(PER_CONNECTION) {
            let channel = Endpoint::from_shared(format!("http://{}", daemon.addr()))?
                .connect()
                .await
                .with_context(|| format!("connection {c}"))?;
            let client = TunnelServiceClient::new(channel);
            for _ in 0..PER_CONNECTION.min(WATCHERS - held.len()) {
                let stream = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.clone().watch(WatchRequest::default()),
                )
                .await
                .context("Watch did not answer")??
                .into_inner();
                held.push(stream);
            }
        }
        ensure!(held.len() == WATCHERS, "{} streams", held.len());
        // Give every stream the time to send what it can.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = rss_kib(pid).context("tunneld RSS")?;
        ensure!(
            during < 256 * 1024,
            "tunneld RSS {during} KiB with {WATCHERS} unread Watch streams (before them: {before} KiB)"
        );
        // The daemon still answers, and a reader still gets the whole state.
        let listed = list(&client).await?;
        ensure!(listed.tunnels.len() == TUNNELS, "List has {}", listed.tunnels.len());
        let mut reader = client.clone().watch(WatchRequest::default()).await?.into_inner();
        let mut tunnels_seen = 0;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), reader.message())
                .await
                .context("a reading watcher stalled")??
                .context("watch ended")?;
            use tunnel_proto::v1::watch_response::Event;
            match msg.event {
                Some(Event::Tunnel(_)) => tunnels_seen += 1,
                Some(Event::Synced(_)) => break,
                _ => {}
            }
        }
        ensure!(tunnels_seen == TUNNELS, "the snapshot had {tunnels_seen} tunnels");
        drop(held);
        Ok(())
    })
    .await
}
