//! Several GiB through many connections at once while SSH key re-exchanges
//! run, initiated by both sides (sshd's `RekeyLimit`, tunneld's
//! `--rekey-limit`), over a local and a remote forward on one SSH
//! connection. Every tunnel must stay usable. If the SSH connection is lost
//! on the way (russh 0.65 was seen dropping it when a rekey met a burst of
//! channel data), tunneld must reconnect and restore both forwards, and only
//! connections in flight at that moment may fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tunnel_proto::v1::{SshHost, Tunnel, TunnelState};
use tunneld_tests::data::sha256_hex;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd};

use crate::forward_remote::open_remote;
use crate::load::{HEAVY, unique_bytes};
use crate::support::{
    Bed, IO_TIMEOUT, connect, e2e, find_tunnel, list, local_port, open_local, remote_port,
};

/// Bytes to move in total, over both forwards and both directions.
const TOTAL: u64 = 2 << 30;

/// Bytes one bulk connection moves before it ends (a worker then opens the
/// next), so connections keep starting and ending during the rekeys.
const CHUNK: u64 = 96 << 20;

/// Bulk workers per forward; half download, half upload.
const BULK_WORKERS: usize = 8;

/// Workers per forward that send unique bytes and check the target's
/// SHA-256 of them.
const HASHED_WORKERS: usize = 2;

/// Bytes each hashed connection sends (hashing is slow in a debug build).
const HASHED_LEN: usize = 2 << 20;

/// A worker whose connections failed this often gives up (the transfer
/// then falls short and the test fails with every failure listed).
const WORKER_FAILURES: usize = 5;

/// sshd re-keys after this much data ("server-initiated").
const SSHD_REKEY: &str = "RekeyLimit 64M";

/// tunneld re-keys after this much data ("client-initiated").
const TUNNELD_REKEY: &str = "128MiB";

/// How long the whole transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(45);

/// First byte of a connection to the [`bulk_peer`], saying what to do.
const FLOOD: u8 = b'F';
const SINK: u8 = b'S';
const HASH: u8 = b'H';

/// The target of both forwards. `F` + u64 n: sends n bytes and closes.
/// `S`: reads to EOF, replies with the count as u64. `H`: reads to EOF,
/// replies with the SHA-256 hex of what it read.
async fn bulk_peer() -> Result<TcpPeer> {
    TcpPeer::start(|mut s| async move {
        let mut op = [0u8; 1];
        s.read_exact(&mut op).await?;
        let mut buf = vec![0u8; 256 * 1024];
        match op[0] {
            FLOOD => {
                let n = s.read_u64().await?;
                let mut left = n;
                buf.fill(0xa5);
                while left > 0 {
                    let k = left.min(buf.len() as u64) as usize;
                    s.write_all(&buf[..k]).await?;
                    left -= k as u64;
                }
            }
            SINK => {
                let mut n = 0u64;
                loop {
                    let k = s.read(&mut buf).await?;
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                s.write_u64(n).await?;
            }
            _ => {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await?;
                s.write_all(sha256_hex(&got).as_bytes()).await?;
            }
        }
        s.shutdown().await
    })
    .await
}

/// Which way a bulk connection's bytes go.
#[derive(Debug, Clone, Copy)]
enum Direction {
    /// The target floods, the client counts.
    Down,
    /// The client sends, the target counts.
    Up,
}

/// One bulk connection moving `n` bytes; returns them once the other end
/// confirmed the count.
async fn bulk(port: u16, dir: Direction, n: u64) -> Result<u64> {
    let mut s = connect(port).await?;
    let mut buf = vec![0u8; 256 * 1024];
    match dir {
        Direction::Down => {
            s.write_u8(FLOOD).await?;
            s.write_u64(n).await?;
            let mut got = 0u64;
            loop {
                let k = s.read(&mut buf).await.context("reading the flood")?;
                if k == 0 {
                    break;
                }
                got += k as u64;
            }
            ensure!(got == n, "download of {n} bytes ended after {got}");
        }
        Direction::Up => {
            s.write_u8(SINK).await?;
            buf.fill(0x3c);
            let mut left = n;
            while left > 0 {
                let k = left.min(buf.len() as u64) as usize;
                s.write_all(&buf[..k]).await.context("uploading")?;
                left -= k as u64;
            }
            s.shutdown().await.context("half-closing")?;
            let got = tokio::time::timeout(IO_TIMEOUT, s.read_u64())
                .await
                .context("no count from the target after EOF")?
                .context("reading the target's count")?;
            ensure!(got == n, "upload of {n} bytes: the target counted {got}");
        }
    }
    Ok(n)
}

/// Sends `len` unique bytes through `port` and checks the target's SHA-256
/// of what it received.
async fn hashed(port: u16, len: usize) -> Result<()> {
    let data = unique_bytes(len);
    let mut s = connect(port).await?;
    s.write_u8(HASH).await?;
    s.write_all(&data).await.context("sending")?;
    s.shutdown().await.context("half-closing")?;
    let mut reply = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut reply))
        .await
        .context("no digest from the target")?
        .context("reading the digest")?;
    ensure!(
        reply == sha256_hex(&data).as_bytes(),
        "the target's SHA-256 of {len} bytes differs from the sender's"
    );
    Ok(())
}

/// What the workers saw.
#[derive(Default)]
struct Tally {
    /// Bytes confirmed by the other end, per forward: [local, remote].
    bytes: [AtomicU64; 2],
    /// Connections that completed and were verified, per forward.
    ok: [AtomicUsize; 2],
    /// Hashed connections verified.
    hashed: AtomicUsize,
    /// Failed connections, with the forward and the error.
    failures: Mutex<Vec<String>>,
}

/// The default host as List shows it.
async fn default_host(client: &Client) -> Result<SshHost> {
    list(client)
        .await?
        .hosts
        .into_iter()
        .find(|h| h.name == "default")
        .context("host \"default\" is not in List")
}

/// Polls until the tunnel is OPEN; returns it.
async fn wait_open(client: &Client, id: &str) -> Result<Tunnel> {
    poll_until(
        &format!("tunnel {id} to be OPEN"),
        Duration::from_secs(15),
        || async {
            let t = find_tunnel(client, id)
                .await?
                .with_context(|| format!("tunnel {id} is not in List"))?;
            if t.state == TunnelState::Open as i32 {
                Ok(Some(t))
            } else {
                bail!("state {:?}: {}", t.state(), t.state_detail)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn gigabytes_through_both_forwards_while_keys_are_re_exchanged() -> Result<()> {
    let _heavy = HEAVY.lock().await;
    e2e(async {
        let sshd = Sshd::builder()
            .config(SSHD_REKEY)
            .config("LogLevel DEBUG1")
            .start()?;
        let bed = Bed::with(sshd, |b| {
            b.arg("--rekey-limit")
                .arg(TUNNELD_REKEY)
                .arg("--reconnect-min")
                .arg("100ms")
                .arg("--reconnect-max")
                .arg("1s")
        })
        .await?;
        let peer = bulk_peer().await?;
        let local = open_local(&bed.client, "", peer.port()).await?;
        let remote = open_remote(&bed.client, "", peer.port())
            .await
            .context("OpenRemoteForward")?;
        let ports = [local_port(&local)?, remote_port(&remote)?];
        let connected_at = default_host(&bed.client).await?.connected_at;

        let tally = Arc::new(Tally::default());
        let budget = Arc::new(AtomicU64::new(TOTAL));
        let mut workers = JoinSet::new();
        let start = Instant::now();
        for (f, &port) in ports.iter().enumerate() {
            for w in 0..BULK_WORKERS {
                let dir = if w % 2 == 0 {
                    Direction::Down
                } else {
                    Direction::Up
                };
                let (tally, budget) = (tally.clone(), budget.clone());
                workers.spawn(async move {
                    let mut failed = 0;
                    // Take a chunk of the budget, move it, repeat.
                    while failed < WORKER_FAILURES
                        && let Ok(before) =
                            budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                                left.checked_sub(CHUNK.min(left)).filter(|_| left > 0)
                            })
                    {
                        let n = CHUNK.min(before);
                        match bulk(port, dir, n).await {
                            Ok(n) => {
                                tally.bytes[f].fetch_add(n, Ordering::SeqCst);
                                tally.ok[f].fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                // Not moved: give the bytes back to the budget.
                                budget.fetch_add(n, Ordering::SeqCst);
                                failed += 1;
                                let which = ["local", "remote"][f];
                                tally
                                    .failures
                                    .lock()
                                    .await
                                    .push(format!("{which} {dir:?} {n}: {e:#}"));
                            }
                        }
                    }
                });
            }
            for _ in 0..HASHED_WORKERS {
                let (tally, budget) = (tally.clone(), budget.clone());
                workers.spawn(async move {
                    let mut failed = 0;
                    while failed < WORKER_FAILURES && budget.load(Ordering::SeqCst) > 0 {
                        match hashed(port, HASHED_LEN).await {
                            Ok(()) => {
                                tally.hashed.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => {
                                failed += 1;
                                let which = ["local", "remote"][f];
                                tally
                                    .failures
                                    .lock()
                                    .await
                                    .push(format!("{which} hashed: {e:#}"));
                            }
                        }
                    }
                });
            }
        }
        let all = async {
            while let Some(res) = workers.join_next().await {
                res.context("worker panicked")?;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, all)
            .await
            .with_context(|| {
                format!(
                    "{TOTAL} bytes did not go through within {TRANSFER_TIMEOUT:?}; moved {} + {}",
                    tally.bytes[0].load(Ordering::SeqCst),
                    tally.bytes[1].load(Ordering::SeqCst)
                )
            })??;
        let elapsed = start.elapsed();

        // Afterwards: both tunnels OPEN and carrying a fresh verified transfer.
        let local_after = wait_open(&bed.client, &local.id).await?;
        let remote_after = wait_open(&bed.client, &remote.id).await?;
        for (name, &port) in ["local", "remote"].iter().zip(&ports) {
            hashed(port, 1 << 20)
                .await
                .with_context(|| format!("a fresh transfer through the {name} forward"))?;
        }
        let host_after = default_host(&bed.client).await?;
        let reconnected = host_after.connected_at != connected_at;
        let restores = local_after.restores.max(remote_after.restores);

        let moved = tally.bytes[0].load(Ordering::SeqCst) + tally.bytes[1].load(Ordering::SeqCst);
        let failures = tally.failures.lock().await.clone();
        // sshd at DEBUG1 logs every key exchange it completes; the first of
        // each SSH connection (one, plus one per reconnect) is no rekey.
        let sshd_kex = bed.sshd.log().matches("SSH2_MSG_NEWKEYS received").count();
        let rekeys = sshd_kex.saturating_sub(1 + restores as usize);
        eprintln!(
            "rekey under load: {:.2} GiB in {elapsed:.1?} ({:.0} MiB/s): local {} MiB in {} \
             connections, remote {} MiB in {} connections, {} hashed connections verified; \
             failed connections {}; reconnected {reconnected} (restores: local {}, remote {}); \
             key re-exchanges seen by sshd: {rekeys}",
            moved as f64 / f64::from(1u32 << 30),
            moved as f64 / f64::from(1u32 << 20) / elapsed.as_secs_f64(),
            tally.bytes[0].load(Ordering::SeqCst) >> 20,
            tally.ok[0].load(Ordering::SeqCst),
            tally.bytes[1].load(Ordering::SeqCst) >> 20,
            tally.ok[1].load(Ordering::SeqCst),
            tally.hashed.load(Ordering::SeqCst),
            failures.len(),
            local_after.restores,
            remote_after.restores,
        );
        for f in &failures {
            eprintln!("  failed: {f}");
        }

        ensure!(moved >= TOTAL, "moved {moved} of {TOTAL} bytes");
        ensure!(
            rekeys >= 2,
            "sshd completed {sshd_kex} key exchanges: the keys were not re-exchanged under load"
        );
        ensure!(
            local_after.restores == remote_after.restores,
            "after the same reconnects the forwards were restored {} (local) and {} (remote) times",
            local_after.restores,
            remote_after.restores
        );
        ensure!(
            reconnected == (restores > 0),
            "the host reconnected: {reconnected}, but the tunnels were restored {restores} times"
        );
        // Only connections in flight when a link dropped may fail: at most
        // every worker's current one, per reconnect.
        let in_flight = 2 * (BULK_WORKERS + HASHED_WORKERS);
        ensure!(
            failures.len() <= restores as usize * in_flight,
            "{} connections failed with {restores} reconnect(s) (at most {in_flight} in flight \
             each):\n{}",
            failures.len(),
            failures.join("\n")
        );
        Ok(())
    })
    .await
}
