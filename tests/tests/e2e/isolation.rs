//! One slow reader must not stall the shared SSH connection: whatever the
//! daemon does with a connection (or an Exec stream) nobody reads — push back
//! through SSH flow control, buffer it, or reset it once over its buffer
//! limit — every other channel on the same SSH connection keeps moving.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_proto::v1::TunnelCounters;
use tunneld_tests::Client;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::exec;
use tunneld_tests::peers::{FLOOD_REQUEST, TcpPeer};
use tunneld_tests::wait::{POLL_INTERVAL, poll_until};

use crate::load::unique_bytes;
use crate::support::{Bed, connect, e2e, exchange, find_tunnel, local_port, open_local};

/// What the stalled connection's target tries to send: more than every
/// buffer on the way (socket buffers, SSH windows, the daemon's own).
const FLOOD_BYTES: usize = 64 * 1024 * 1024;

/// How long each round trip and the Exec may take while the flood is stalled.
const PROMPT: Duration = Duration::from_secs(2);

async fn counters(client: &Client, id: &str) -> Result<TunnelCounters> {
    let t = find_tunnel(client, id)
        .await?
        .context("tunnel vanished from List")?;
    Ok(t.counters.unwrap_or_default())
}

/// 20 echo round trips on new connections through `port`, then an Exec,
/// each within [`PROMPT`].
async fn prompt_traffic(bed: &Bed, port: u16, phase: &str) -> Result<()> {
    for i in 0..20 {
        let mut data = random_bytes(4096 + i);
        // The peer floods connections whose first byte is FLOOD_REQUEST.
        if data[0] == FLOOD_REQUEST {
            data[0] ^= 1;
        }
        let start = Instant::now();
        let back = exchange(port, &data, PROMPT)
            .await
            .with_context(|| format!("{phase}: round trip {i}"))?;
        ensure!(
            back == data,
            "{phase}: round trip {i} got {} different bytes back",
            back.len()
        );
        ensure!(
            start.elapsed() < PROMPT,
            "{phase}: round trip {i} took {:?}",
            start.elapsed()
        );
    }
    let start = Instant::now();
    let out = tokio::time::timeout(PROMPT, exec::run_ok(&bed.client, "echo still-responsive"))
        .await
        .with_context(|| format!("{phase}: Exec on the same host hung"))??;
    ensure!(out == "still-responsive\n", "{phase}: Exec stdout {out:?}");
    ensure!(
        start.elapsed() < PROMPT,
        "{phase}: Exec took {:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unread_connection_does_not_stall_the_others() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // One forward, one target: `F` first makes a connection a flood,
        // anything else an echo.
        let peer = TcpPeer::flood_or_echo(FLOOD_BYTES).await?;
        let tunnel = open_local(&bed.client, "", peer.port()).await?;
        let port = local_port(&tunnel)?;

        // The stalled connection: asks for the flood, then never reads.
        let mut stalled = connect(port).await?;
        stalled.write_all(&[FLOOD_REQUEST]).await?;
        poll_until(
            "the flood to start flowing",
            Duration::from_secs(10),
            || async {
                Ok((counters(&bed.client, &tunnel.id).await?.bytes_from_target > 0).then_some(()))
            },
        )
        .await?;

        // Phase 1: while the flood is still pushing into buffers.
        prompt_traffic(&bed, port, "during the flood").await?;

        // Phase 2: once it has stopped moving (every buffer full, or the
        // daemon reset the connection at its buffer limit).
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut seen, mut since) = (0u64, Instant::now());
        let settled = loop {
            let c = counters(&bed.client, &tunnel.id).await?;
            if c.bytes_from_target as usize >= FLOOD_BYTES {
                bail!(
                    "all {} bytes reached a client socket that never reads",
                    c.bytes_from_target
                );
            }
            if c.bytes_from_target != seen {
                (seen, since) = (c.bytes_from_target, Instant::now());
            } else if since.elapsed() >= Duration::from_millis(500) {
                break c;
            }
            if Instant::now() > deadline {
                bail!("the flood did not stop moving within 20 s: {c:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        prompt_traffic(&bed, port, "with the flood stalled").await?;

        // Only the flood may have been given up on; 40 echoes + 1 flood.
        let c = counters(&bed.client, &tunnel.id).await?;
        ensure!(c.total_connections == 41, "counters {c:?}");
        ensure!(c.failed_connections <= 1, "echo connections failed: {c:?}");
        eprintln!(
            "stalled connection: {} after {} bytes reached it",
            if settled.failed_connections == 1 {
                "reset at the daemon's buffer limit"
            } else {
                "held open"
            },
            settled.bytes_from_target
        );
        drop(stalled);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unread_exec_stream_does_not_stall_the_others() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // A command with far more output than any buffer on the way, whose
        // gRPC stream the client never reads.
        let mut client = bed.client.clone();
        let unread = client
            .exec(exec::request("head -c 67108864 /dev/zero"))
            .await
            .context("starting the flooding Exec")?
            .into_inner();
        for i in 0..5 {
            let start = Instant::now();
            let out = tokio::time::timeout(
                PROMPT * 2,
                exec::run_ok(&bed.client, &format!("echo still-responsive-{i}")),
            )
            .await
            .with_context(|| format!("Exec {i} hung while another Exec's output is unread"))??;
            ensure!(out == format!("still-responsive-{i}\n"), "stdout {out:?}");
            ensure!(
                start.elapsed() < PROMPT * 2,
                "Exec {i} took {:?}",
                start.elapsed()
            );
        }
        drop(unread);
        Ok(())
    })
    .await
}

/// What the slow reader below moves through the forward and back: six
/// times the daemon's default buffer, so it cannot all wait in tunneld.
const SLOW_READER_BYTES: usize = 48 << 20;

/// A reader that pauses for seconds, alone on the host's SSH connection,
/// gets every byte, as through `ssh -L`: with nobody else on the
/// connection, tunneld stops taking the channel's data once its buffer is
/// full instead of resetting the connection, and the whole path (sshd, the
/// echo target, the sender) waits for the reader. It wrote 48 MiB while not
/// reading for 3 s, then read in small steps with pauses.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_alone_on_its_ssh_connection_gets_every_byte() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let stream = connect(local_port(&tunnel)?).await?;
        let (mut r, mut w) = stream.into_split();

        let data = unique_bytes(SLOW_READER_BYTES);
        let want = sha256_hex(&data);
        let writer = tokio::spawn(async move {
            w.write_all(&data).await.context("writing")?;
            w.shutdown().await.context("half-closing")
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let held = counters(&bed.client, &tunnel.id).await?;
        ensure!(
            held.failed_connections == 0,
            "reset while its reader paused: {held:?}"
        );

        let mut back = Vec::with_capacity(SLOW_READER_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        let reading = async {
            loop {
                let n = r.read(&mut buf).await.context("reading")?;
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
                if back.len() % (8 << 20) < n {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(60), reading)
            .await
            .context("reading everything back took over 60 s")??;
        writer.await.context("the writer panicked")??;
        ensure!(
            back.len() == SLOW_READER_BYTES && sha256_hex(&back) == want,
            "got {} bytes back of {SLOW_READER_BYTES}, {}",
            back.len(),
            if sha256_hex(&back) == want {
                "identical"
            } else {
                "not the ones sent"
            }
        );
        let c = counters(&bed.client, &tunnel.id).await?;
        ensure!(c.failed_connections == 0, "counters {c:?}");
        eprintln!(
            "slow reader: {} MiB in tunneld's counters after the 3 s pause, all {} MiB back intact",
            held.bytes_from_target >> 20,
            SLOW_READER_BYTES >> 20
        );
        Ok(())
    })
    .await
}
