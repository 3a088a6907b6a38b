//! SOCKS dynamic forwards: `ssh -D` (OpenDynamicForward) and the reverse
//! dynamic `ssh -R PORT` (OpenRemoteForward with `dynamic`), driven by curl's
//! SOCKS4, SOCKS4a and SOCKS5 clients and by raw SOCKS5 for the load and
//! optimistic-data cases.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnel_proto::v1::{OpenDynamicForwardRequest, OpenRemoteForwardRequest, Tunnel, TunnelKind};
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{HttpPeer, TcpPeer, refused_port};
use tunneld_tests::{Client, Sshd};

use crate::support::{self, Bed, Curl, e2e, find_tunnel, local_port, remote_port};

async fn open_dynamic(client: &Client) -> Result<Tunnel> {
    client
        .clone()
        .open_dynamic_forward(OpenDynamicForwardRequest::default())
        .await
        .context("OpenDynamicForward")?
        .into_inner()
        .tunnel
        .context("no tunnel")
}

async fn open_reverse(client: &Client, permit: &[String]) -> Result<Tunnel> {
    client
        .clone()
        .open_remote_forward(OpenRemoteForwardRequest {
            remote_bind_address: "127.0.0.1".into(),
            dynamic: true,
            permit_remote_open: permit.to_vec(),
            ..Default::default()
        })
        .await
        .context("OpenRemoteForward dynamic")?
        .into_inner()
        .tunnel
        .context("no tunnel")
}

/// `curl -sS --max-time 10 FLAG 127.0.0.1:PROXY URL`.
async fn curl(flag: &str, proxy: u16, url: &str) -> Result<Curl> {
    support::curl(&[flag, &format!("127.0.0.1:{proxy}"), url]).await
}

async fn counters(client: &Client, id: &str) -> Result<tunnel_proto::v1::TunnelCounters> {
    find_tunnel(client, id)
        .await?
        .context("tunnel gone")?
        .counters
        .context("no counters")
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_reaches_a_server_through_socks5h_socks4a_and_socks4_by_name_and_ip() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("reached over SOCKS").await?;
        let t = open_dynamic(&bed.client).await?;
        ensure!(t.kind == TunnelKind::Dynamic as i32, "kind {}", t.kind);
        let remote = t.remote.clone().unwrap_or_default();
        ensure!(
            remote.host.is_empty() && remote.port == 0,
            "SOCKS side {remote:?}"
        );
        let proxy = local_port(&t)?;
        let by_name = format!("http://localhost:{}/", http.port());
        let by_ip = format!("http://127.0.0.1:{}/", http.port());
        let cases = [
            ("--socks5-hostname", &by_name),
            ("--socks5-hostname", &by_ip),
            ("--socks5", &by_ip),
            ("--socks4a", &by_name),
            ("--socks4a", &by_ip),
            ("--socks4", &by_ip),
            ("--socks4", &by_name),
        ];
        for (flag, url) in cases {
            let c = curl(flag, proxy, url).await?;
            ensure!(
                c.code == Some(0) && c.out == http.body(),
                "curl {flag} {url}: exit {:?}, {:?} {:?}",
                c.code,
                c.out,
                c.err
            );
        }
        let c = counters(&bed.client, &t.id).await?;
        ensure!(
            c.total_connections == cases.len() as u64 && c.failed_connections == 0,
            "counters {c:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_target_gets_the_socks_error_at_once_and_is_counted() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let t = open_dynamic(&bed.client).await?;
        let dead = refused_port()?;
        for flag in ["--socks5-hostname", "--socks4a"] {
            let c = curl(flag, local_port(&t)?, &format!("http://127.0.0.1:{dead}/")).await?;
            // 97: CURLE_PROXY, the SOCKS handshake's failure.
            ensure!(
                c.code == Some(97),
                "curl {flag}: exit {:?}: {}",
                c.code,
                c.err
            );
            ensure!(
                c.took < Duration::from_secs(5),
                "curl {flag} took {:?}",
                c.took
            );
        }
        let c = counters(&bed.client, &t.id).await?;
        ensure!(c.failed_connections == 2, "counters {c:?}");
        ensure!(
            bed.daemon.log().contains("SOCKS CONNECT to 127.0.0.1:"),
            "the refusal is not logged:\n{}",
            bed.daemon.log()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_outside_permit_open_is_refused_by_ruleset_and_never_dialled() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let allowed = HttpPeer::start("allowed").await?;
        let other = TcpPeer::echo().await?;
        let rule = format!("127.0.0.1:{}", allowed.port());
        let bed = Bed::with(sshd, |b| b.arg("--permit-open").arg(&rule)).await?;
        let t = open_dynamic(&bed.client).await?;
        let proxy = local_port(&t)?;
        let ok = curl(
            "--socks5-hostname",
            proxy,
            &format!("http://127.0.0.1:{}/", allowed.port()),
        )
        .await?;
        ensure!(
            ok.code == Some(0) && ok.out == "allowed",
            "allowed target: {:?} {}",
            ok.code,
            ok.err
        );
        let refused = curl(
            "--socks5-hostname",
            proxy,
            &format!("http://127.0.0.1:{}/", other.port()),
        )
        .await?;
        ensure!(
            refused.code == Some(97),
            "exit {:?}: {}",
            refused.code,
            refused.err
        );
        // curl's words for SOCKS5 reply 2, "connection not allowed by ruleset".
        ensure!(
            refused.err.contains("(2)") || refused.err.to_lowercase().contains("not allowed"),
            "curl said {:?}",
            refused.err
        );
        ensure!(other.accepted() == 0, "the refused target was dialled");
        let log = bed.sshd.log();
        ensure!(
            !log.contains(&format!("port {}", other.port())),
            "sshd's log mentions the refused target:\n{log}"
        );
        let by_name = curl(
            "--socks5-hostname",
            proxy,
            &format!("http://localhost:{}/", allowed.port()),
        )
        .await?;
        ensure!(
            by_name.code == Some(97),
            "a name is compared as written: {:?}",
            by_name.code
        );
        Ok(())
    })
    .await
}

/// A raw SOCKS5 CONNECT to 127.0.0.1:`port` through `proxy`. With
/// `optimistic`, greeting, request and data go in one write before any
/// reply (nothing sent after the request may be lost); else step by step.
async fn socks5_digest(proxy: u16, port: u16, data: &[u8], optimistic: bool) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await?;
    let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&port.to_be_bytes());
    if optimistic {
        let mut all = request.clone();
        all.extend_from_slice(data);
        s.write_all(&all).await?;
        s.shutdown().await?;
    } else {
        s.write_all(&request[..3]).await?;
        let mut method = [0u8; 2];
        s.read_exact(&mut method).await?;
        ensure!(method == [5, 0], "method selection {method:?}");
        s.write_all(&request[3..]).await?;
    }
    let mut reply = [0u8; 10];
    if optimistic {
        let mut method = [0u8; 2];
        s.read_exact(&mut method).await?;
        ensure!(method == [5, 0], "method selection {method:?}");
    }
    s.read_exact(&mut reply).await?;
    ensure!(reply[..2] == [5, 0], "SOCKS5 reply {reply:?}");
    if !optimistic {
        s.write_all(data).await?;
        s.shutdown().await?;
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got).await?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_connects_are_byte_exact_optimistic_data_included() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let digest = TcpPeer::digest().await?;
        let t = open_dynamic(&bed.client).await?;
        let proxy = local_port(&t)?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100usize {
            let port = digest.port();
            tasks.spawn(async move {
                let data = random_bytes(16 * 1024 + i * 4099);
                let got = socks5_digest(proxy, port, &data, i % 2 == 0).await?;
                ensure!(
                    got == sha256_hex(&data).as_bytes(),
                    "connection {i}: digest mismatch"
                );
                anyhow::Ok(data.len() as u64)
            });
        }
        let mut sent = 0;
        while let Some(r) = tasks.join_next().await {
            sent += r??;
        }
        let c = counters(&bed.client, &t.id).await?;
        ensure!(
            c.total_connections == 100 && c.failed_connections == 0 && c.bytes_to_target == sent,
            "counters {c:?}, sent {sent}"
        );
        ensure!(digest.accepted() == 100, "target saw {}", digest.accepted());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reverse_dynamic_forward_serves_socks_on_the_server_within_permit_remote_open()
-> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("reached from the server's side").await?;
        let other = TcpPeer::echo().await?;
        // Any target, as OpenSSH's default.
        let open = open_reverse(&bed.client, &[]).await?;
        ensure!(
            open.kind == TunnelKind::RemoteDynamic as i32,
            "kind {}",
            open.kind
        );
        let url = format!("http://localhost:{}/", http.port());
        let c = curl("--socks5-hostname", remote_port(&open)?, &url).await?;
        ensure!(
            c.code == Some(0) && c.out == http.body(),
            "exit {:?}: {} {}",
            c.code,
            c.out,
            c.err
        );
        let c = curl(
            "--socks4",
            remote_port(&open)?,
            &format!("http://127.0.0.1:{}/", http.port()),
        )
        .await?;
        ensure!(
            c.code == Some(0) && c.out == http.body(),
            "socks4: exit {:?}: {}",
            c.code,
            c.err
        );

        // Narrowed: only the HTTP server, by name.
        let rule = vec![format!("localhost:{}", http.port())];
        let narrow = open_reverse(&bed.client, &rule).await?;
        ensure!(
            narrow.permit_remote_open == rule,
            "rule shown {:?}",
            narrow.permit_remote_open
        );
        let proxy = remote_port(&narrow)?;
        let c = curl("--socks5-hostname", proxy, &url).await?;
        ensure!(
            c.code == Some(0) && c.out == http.body(),
            "allowed: exit {:?}: {}",
            c.code,
            c.err
        );
        let c = curl(
            "--socks5-hostname",
            proxy,
            &format!("http://localhost:{}/", other.port()),
        )
        .await?;
        ensure!(c.code == Some(97), "refused: exit {:?}: {}", c.code, c.err);
        ensure!(other.accepted() == 0, "the refused target was dialled");
        let c = counters(&bed.client, &narrow.id).await?;
        ensure!(
            c.failed_connections == 1 && c.total_connections == 2,
            "counters {c:?}"
        );
        Ok(())
    })
    .await
}
