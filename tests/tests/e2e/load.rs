//! Bounded load: hundreds of connections at once through one forward with
//! every byte verified and tunneld's file descriptors back to where they
//! were afterwards; the connection caps (per tunnel, per request, whole
//! daemon); the idle timeout.
//!
//! The heavy tests take [`HEAVY`] so that on a 2-core machine they never
//! compete with each other for the CPU (they still run alongside the rest of
//! the suite).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tunnel_proto::v1::{
    OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel, TunnelCounters, WatchRequest,
    watch_response,
};
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::exec::proto_duration;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd, fds, procs};

use crate::forward_remote::open_remote;
use crate::support::{
    Bed, IO_TIMEOUT, close, connect, connect_expecting_close, e2e, exchange, expect_closed,
    find_tunnel, local_port, localhost, open_local, remote_port,
};

/// Taken by the tests that saturate the machine (here and in `rekey`), so
/// that they run one at a time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bytes each connection of a burst sends (and gets echoed back).
const PER_CONNECTION: usize = 256 * 1024;

/// How long a burst's transfers may take, all together.
const BURST_TIMEOUT: Duration = Duration::from_secs(40);

/// How long tunneld may take to let go of a closed connection's resources.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Descriptors tunneld may hold above its baseline once every connection
/// has closed (lazily created runtime resources, a log file reopened...).
const FD_SLACK: usize = 2;

/// The sshd for load tests. Every connection of a burst is a channel of
/// one SSH connection: `direct-tcpip` and `forwarded-tcpip` channels do not
/// count against `MaxSessions` (checked: 500 went through with
/// `MaxSessions 2`) and `MaxStartups` limits only unauthenticated
/// connections, so the defaults do. Its per-connection process holds one
/// socket per channel, within the descriptor limit it inherits from this
/// process (see [`raise_limit`]).
fn load_sshd() -> Result<Sshd> {
    Sshd::start()
}

/// Raises this process's descriptor limit (children inherit it) and checks
/// it leaves room for `n` connections: each has a client end and a peer end
/// here.
fn raise_limit(n: usize) -> Result<()> {
    let limit = fds::raise_nofile_limit()?;
    ensure!(
        limit >= 4 * n as u64,
        "RLIMIT_NOFILE hard limit {limit} is too low for {n} connections \
         (client and target ends both live in this process); raise it (ulimit -Hn)"
    );
    Ok(())
}

/// A tunnel's counters as List shows them now.
pub async fn counters(client: &Client, id: &str) -> Result<TunnelCounters> {
    let t = find_tunnel(client, id)
        .await?
        .with_context(|| format!("tunnel {id} is not in List"))?;
    Ok(t.counters.unwrap_or_default())
}

/// Polls until the tunnel's counters satisfy `ok`; returns them.
pub async fn wait_counters(
    client: &Client,
    id: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&TunnelCounters) -> bool,
) -> Result<TunnelCounters> {
    poll_until(what, timeout, || async {
        let c = counters(client, id).await?;
        if ok(&c) { Ok(Some(c)) } else { bail!("{c:?}") }
    })
    .await
}

/// What a burst measured.
struct BurstReport {
    baseline: usize,
    all_open: usize,
    peak: usize,
    after: usize,
    elapsed: Duration,
}

/// `n` connections to `port` (which reaches `echo` through the tunnel `id`),
/// all open at once before any sends, then each sends its own unique
/// [`PER_CONNECTION`] bytes and checks by SHA-256 that exactly they come back.
/// Measures tunneld's descriptors before, while all are open, at their peak
/// and after, and checks they return to the baseline.
async fn burst(bed: &Bed, id: &str, port: u16, echo: &TcpPeer, n: usize) -> Result<BurstReport> {
    let pid = bed.daemon.pid().context("tunneld has exited")?;
    // A warm-up connection creates whatever tunneld sets up lazily on its
    // first connection, so the baseline is its steady state.
    let hello = b"warm-up";
    ensure!(exchange(port, hello, IO_TIMEOUT).await? == hello, "warm-up");
    wait_counters(
        &bed.client,
        id,
        "the warm-up connection to end",
        SETTLE_TIMEOUT,
        |c| c.active_connections == 0,
    )
    .await?;
    let accepted_before = echo.accepted();
    let baseline = fds::count(pid)?;

    let peak = Arc::new(AtomicUsize::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Ok(n) = fds::count(pid) {
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Everyone connects, then waits at `connected`; the test checks that
    // every connection reached the target, then releases `go`.
    let connected = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let unconnected = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (connected, go, unconnected) = (connected.clone(), go.clone(), unconnected.clone());
        tasks.spawn(async move {
            let stream = connect(port).await;
            if stream.is_err() {
                unconnected.fetch_add(1, Ordering::Relaxed);
            }
            connected.wait().await;
            go.wait().await;
            let stream = stream.with_context(|| format!("connection {i}"))?;
            echo_verified(stream, unique_bytes(PER_CONNECTION))
                .await
                .with_context(|| format!("connection {i}"))
        });
    }
    connected.wait().await;
    let all_reached = poll_until(
        &format!("all {n} connections to reach the target"),
        BURST_TIMEOUT,
        || async {
            let c = counters(&bed.client, id).await?;
            let reached = echo.accepted() - accepted_before;
            if reached == n && c.active_connections == n as u64 {
                Ok(Some(()))
            } else {
                bail!(
                    "target accepted {reached}, tunnel counters {c:?}, {} clients could not connect",
                    unconnected.load(Ordering::Relaxed)
                )
            }
        },
    )
    .await;
    let all_open = fds::count(pid)?;
    let start = Instant::now();
    go.wait().await;
    // Released even when not every connection arrived, so the tasks end.
    all_reached?;

    let mut failures = Vec::new();
    let collect = async {
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res.context("connection task panicked").and_then(|r| r) {
                failures.push(format!("{e:#}"));
            }
        }
    };
    tokio::time::timeout(BURST_TIMEOUT, collect)
        .await
        .with_context(|| format!("{n} transfers did not end within {BURST_TIMEOUT:?}"))?;
    let elapsed = start.elapsed();
    ensure!(
        failures.is_empty(),
        "{} of {n} connections failed; first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );

    let c = wait_counters(
        &bed.client,
        id,
        "every connection to end",
        SETTLE_TIMEOUT,
        |c| c.active_connections == 0,
    )
    .await?;
    let settled = fds::wait_at_most(pid, baseline + FD_SLACK, SETTLE_TIMEOUT).await;
    sampler.abort();
    let after = fds::count(pid)?;
    let peak = peak.load(Ordering::Relaxed).max(all_open);
    eprintln!(
        "tunneld fds: baseline {baseline}, all {n} open {all_open}, peak {peak}, after {after}; \
         {n} x {} KiB echoed in {elapsed:.2?}",
        PER_CONNECTION / 1024
    );
    settled.with_context(|| {
        format!("tunneld's descriptors did not return to its baseline of {baseline} (+{FD_SLACK})")
    })?;
    ensure!(
        all_open >= baseline + n,
        "with {n} connections open tunneld held {all_open} descriptors, baseline {baseline}: \
         the count does not see the connections"
    );
    ensure!(c.failed_connections == 0, "counters {c:?}");
    ensure!(
        c.total_connections == n as u64 + 1,
        "counters {c:?}, expected {n} + 1 warm-up connections"
    );
    let expected_bytes = (n * PER_CONNECTION + hello.len()) as u64;
    ensure!(
        c.bytes_to_target == expected_bytes && c.bytes_from_target == expected_bytes,
        "counters {c:?}, expected {expected_bytes} bytes each way"
    );
    Ok(BurstReport {
        baseline,
        all_open,
        peak,
        after,
        elapsed,
    })
}

/// Sends `data` while reading, half-closes, reads to EOF, and checks the
/// SHA-256 of what came back against that of `data`.
async fn echo_verified(stream: TcpStream, data: Vec<u8>) -> Result<()> {
    let (mut r, mut w) = stream.into_split();
    let write = async {
        w.write_all(&data).await.context("writing")?;
        w.shutdown().await.context("half-closing")
    };
    let read = async {
        let mut back = Vec::with_capacity(data.len());
        r.read_to_end(&mut back).await.context("reading")?;
        anyhow::Ok(back)
    };
    let ((), back) = tokio::try_join!(write, read)?;
    ensure!(
        sha256_hex(&back) == sha256_hex(&data),
        "sent {} bytes, got {} bytes back that differ",
        data.len(),
        back.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_connections_at_once_through_a_local_forward() -> Result<()> {
    let _heavy = HEAVY.lock().await;
    raise_limit(500)?;
    e2e(async {
        let bed = Bed::with(load_sshd()?, |b| b).await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let r = burst(&bed, &tunnel.id, local_port(&tunnel)?, &echo, 500).await?;
        eprintln!(
            "local forward, 500 connections: fds {} -> {} (peak {}) -> {}, {:.2?}",
            r.baseline, r.all_open, r.peak, r.after, r.elapsed
        );
        Ok(())
    })
    .await
}

/// How long each client of [`a_burst_while_tunneld_is_paused_waits_in_the_listen_backlog`]
/// may take to connect: past the first SYN retransmission (1 s), so a SYN
/// dropped for a full backlog fails the test instead of slipping in later.
const PAUSED_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// Connections that arrive while tunneld is not accepting (here stopped
/// with SIGSTOP, as a busy or swapped-out process would be) wait in the
/// kernel's listen backlog: all 500 clients connect at once and each is
/// carried, byte-exact, once tunneld runs again. With the backlog of 128
/// that tokio asks for by default, 371 of them timed out (their SYNs dropped
/// until a retransmission found room), which is how the 500-connection
/// burst above once lost 122 connections in CI.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_while_tunneld_is_paused_waits_in_the_listen_backlog() -> Result<()> {
    const N: usize = 500;
    let _heavy = HEAVY.lock().await;
    raise_limit(N)?;
    e2e(async {
        let bed = Bed::with(load_sshd()?, |b| b).await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&tunnel)?;
        ensure!(exchange(port, b"warm-up", IO_TIMEOUT).await? == b"warm-up", "warm-up");

        let paused = procs::Paused::new(bed.daemon.pid().context("tunneld has exited")?)?;
        let mut connecting = JoinSet::new();
        for _ in 0..N {
            connecting.spawn(tokio::time::timeout(
                PAUSED_CONNECT_WAIT,
                TcpStream::connect(localhost(port)),
            ));
        }
        let mut streams = Vec::with_capacity(N);
        let mut failed = Vec::new();
        while let Some(r) = connecting.join_next().await {
            match r.context("a connecting task panicked")? {
                Ok(Ok(stream)) => streams.push(stream),
                Ok(Err(e)) => failed.push(e.to_string()),
                Err(_) => failed.push(format!("not connected within {PAUSED_CONNECT_WAIT:?}")),
            }
        }
        drop(paused);
        ensure!(
            failed.is_empty(),
            "{} of {N} connects failed while tunneld was paused (its listen backlog is too short); first: {}",
            failed.len(),
            failed[0]
        );

        let mut echoing = JoinSet::new();
        for stream in streams {
            echoing.spawn(echo_verified(stream, unique_bytes(1024)));
        }
        let mut errors = Vec::new();
        while let Some(r) = echoing.join_next().await {
            if let Err(e) = r.context("an echo task panicked").and_then(|r| r) {
                errors.push(format!("{e:#}"));
            }
        }
        ensure!(
            errors.is_empty(),
            "{} of {N} connections were not carried after tunneld resumed; first: {}",
            errors.len(),
            errors[0]
        );
        let c = counters(&bed.client, &tunnel.id).await?;
        ensure!(
            c.total_connections == N as u64 + 1 && c.failed_connections == 0,
            "tunnel counters after {N} connections and the warm-up: {c:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_connections_at_once_through_a_remote_forward() -> Result<()> {
    let _heavy = HEAVY.lock().await;
    raise_limit(200)?;
    e2e(async {
        let bed = Bed::with(load_sshd()?, |b| b).await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_remote(&bed.client, "", echo.port())
            .await
            .context("OpenRemoteForward")?;
        let r = burst(&bed, &tunnel.id, remote_port(&tunnel)?, &echo, 200).await?;
        eprintln!(
            "remote forward, 200 connections: fds {} -> {} (peak {}) -> {}, {:.2?}",
            r.baseline, r.all_open, r.peak, r.after, r.elapsed
        );
        Ok(())
    })
    .await
}

/// `len` bytes from xorshift64 with a random seed: as unpredictable to the
/// daemon as [`random_bytes`], at a fraction of its cost in an unoptimised
/// test build (hundreds of MiB per test add up).
pub fn unique_bytes(len: usize) -> Vec<u8> {
    let seed = random_bytes(8);
    let mut x = u64::from_le_bytes(seed.try_into().expect("8 bytes")) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Connects to `port` and makes one echo round trip, so the connection is
/// known to be carried end to end; returns it still open.
async fn held(port: u16, label: &str) -> Result<TcpStream> {
    let mut s = connect(port).await?;
    round_trip(&mut s, label)
        .await
        .with_context(|| format!("{label}: first round trip"))?;
    Ok(s)
}

/// Writes `label` on `s` and reads the same bytes back.
async fn round_trip(s: &mut TcpStream, label: &str) -> Result<()> {
    s.write_all(label.as_bytes()).await.context("writing")?;
    let mut back = vec![0u8; label.len()];
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut back))
        .await
        .context("no echo")?
        .context("reading the echo")?;
    ensure!(
        back == label.as_bytes(),
        "echoed {:?}",
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

/// A new connection to `port` is refused: whatever it sends, nothing comes
/// back and the connection ends (reset or EOF) promptly.
async fn refused(port: u16, what: &str) -> Result<()> {
    let Some(mut s) = connect_expecting_close(port).await? else {
        return Ok(());
    };
    // May fail with a reset already; the read below tells.
    let _ = s.write_all(b"refuse me").await;
    let got = expect_closed(&mut s, IO_TIMEOUT)
        .await
        .with_context(|| format!("{what} was not refused"))?;
    ensure!(
        got.is_empty(),
        "{what} was carried: {:?} came back",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

/// Waits until the tunnel counts exactly `active` connections.
async fn wait_active(client: &Client, id: &str, active: u64) -> Result<TunnelCounters> {
    wait_counters(
        client,
        id,
        &format!("tunnel {id} to carry {active} connections"),
        SETTLE_TIMEOUT,
        |c| c.active_connections == active,
    )
    .await
}

/// Waits until the tunnel has refused exactly `refused` connections.
async fn wait_refused(client: &Client, id: &str, refused: u64) -> Result<TunnelCounters> {
    wait_counters(
        client,
        id,
        &format!("tunnel {id} to count {refused} refused connection(s)"),
        SETTLE_TIMEOUT,
        |c| c.refused_connections == refused,
    )
    .await
}

/// Opens a local forward to `target` with the given per-request cap and
/// idle timeout (0 / `None`: the daemon's defaults).
async fn open_local_with(
    client: &Client,
    target: u16,
    max_connections: u32,
    idle_timeout: Option<Duration>,
) -> Result<Tunnel> {
    client
        .clone()
        .open_local_forward(OpenLocalForwardRequest {
            remote_host: "127.0.0.1".into(),
            remote_port: target.into(),
            max_connections,
            idle_timeout: idle_timeout.map(proto_duration),
            ..Default::default()
        })
        .await
        .context("OpenLocalForward")?
        .into_inner()
        .tunnel
        .context("OpenLocalForwardResponse without a tunnel")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_tunnel_cap_refuses_and_counts_the_connection_over_it() -> Result<()> {
    e2e(async {
        let bed = Bed::with(Sshd::start()?, |b| {
            b.arg("--max-connections-per-tunnel").arg("3")
        })
        .await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        ensure!(
            tunnel.max_connections == 3,
            "tunnel opened under --max-connections-per-tunnel 3 shows max_connections {}",
            tunnel.max_connections
        );
        let (id, port) = (tunnel.id.as_str(), local_port(&tunnel)?);

        let mut conns = Vec::new();
        for i in 0..3 {
            conns.push(held(port, &format!("held-{i}")).await?);
        }
        wait_active(&bed.client, id, 3).await?;
        refused(port, "the 4th connection").await?;
        let c = wait_refused(&bed.client, id, 1).await?;
        ensure!(
            c.total_connections == 3 && c.failed_connections == 0,
            "a refused connection is counted only as refused: {c:?}"
        );
        for (i, s) in conns.iter_mut().enumerate() {
            round_trip(s, &format!("still-{i}"))
                .await
                .with_context(|| format!("held connection {i} after the refusal"))?;
        }

        drop(conns.remove(0));
        wait_active(&bed.client, id, 2).await?;
        conns.push(held(port, "after-one-closed").await?);
        let c = counters(&bed.client, id).await?;
        ensure!(
            c.refused_connections == 1 && c.total_connections == 4,
            "{c:?}"
        );

        // A request's max_connections overrides the daemon's default.
        let two = open_local_with(&bed.client, echo.port(), 2, None).await?;
        ensure!(
            two.max_connections == 2,
            "requested max_connections 2, tunnel shows {}",
            two.max_connections
        );
        let two_port = local_port(&two)?;
        let _a = held(two_port, "two-a").await?;
        let _b = held(two_port, "two-b").await?;
        wait_active(&bed.client, &two.id, 2).await?;
        refused(two_port, "the 3rd connection of a max_connections 2 tunnel").await?;
        wait_refused(&bed.client, &two.id, 1).await?;
        ensure!(
            counters(&bed.client, id).await?.refused_connections == 1,
            "a refusal on one tunnel was counted on another"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_forward_at_its_cap_rejects_the_channel() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = bed
            .client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                local_host: "127.0.0.1".into(),
                local_port: echo.port().into(),
                max_connections: 1,
                ..Default::default()
            })
            .await
            .context("OpenRemoteForward")?
            .into_inner()
            .tunnel
            .context("OpenRemoteForwardResponse without a tunnel")?;
        ensure!(tunnel.max_connections == 1, "{tunnel:?}");
        let (id, port) = (tunnel.id.as_str(), remote_port(&tunnel)?);

        let first = held(port, "the one allowed").await?;
        wait_active(&bed.client, id, 1).await?;
        refused(port, "a 2nd connection to the remote port").await?;
        let c = wait_refused(&bed.client, id, 1).await?;
        ensure!(
            c.total_connections == 1 && c.failed_connections == 0,
            "{c:?}"
        );
        ensure!(
            echo.accepted() == 1,
            "the refused connection reached the target"
        );
        drop(first);
        wait_active(&bed.client, id, 0).await?;
        held(port, "after the first closed").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_wide_cap_counts_connections_of_every_tunnel() -> Result<()> {
    e2e(async {
        let bed = Bed::with(Sshd::start()?, |b| b.arg("--max-connections").arg("4")).await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let (a_port, b_port) = (local_port(&a)?, local_port(&b)?);

        let mut on_a = Vec::new();
        for i in 0..3 {
            on_a.push(held(a_port, &format!("a-{i}")).await?);
        }
        let _on_b = held(b_port, "b-0").await?;
        wait_active(&bed.client, &a.id, 3).await?;
        wait_active(&bed.client, &b.id, 1).await?;

        refused(b_port, "a 5th connection, on the tunnel with 1").await?;
        refused(a_port, "a 5th connection, on the tunnel with 3").await?;
        wait_refused(&bed.client, &b.id, 1).await?;
        wait_refused(&bed.client, &a.id, 1).await?;

        drop(on_a.remove(0));
        wait_active(&bed.client, &a.id, 2).await?;
        held(b_port, "b-1, once below the cap").await?;
        Ok(())
    })
    .await
}

/// One event of a Watch call, or how the call ended.
type WatchItem = Result<watch_response::Event, tonic::Status>;

/// Starts `Watch` for one tunnel and forwards its events to a channel.
async fn watch(
    client: &Client,
    id: &str,
) -> Result<tokio::sync::mpsc::UnboundedReceiver<WatchItem>> {
    let mut stream = client
        .clone()
        .watch(WatchRequest {
            tunnel_id: id.into(),
        })
        .await
        .with_context(|| format!("Watch {id}"))?
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let item = match stream.message().await {
                Ok(Some(msg)) => match msg.event {
                    Some(event) => Ok(event),
                    None => continue,
                },
                Ok(None) => break,
                Err(status) => Err(status),
            };
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_busy_ones_are_not() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let idle_timeout = Duration::from_secs(1);
        let tunnel = open_local_with(&bed.client, echo.port(), 0, Some(idle_timeout)).await?;
        ensure!(
            tunnel.idle_timeout == Some(proto_duration(idle_timeout)),
            "tunnel shows idle_timeout {:?}",
            tunnel.idle_timeout
        );
        let (id, port) = (tunnel.id.as_str(), local_port(&tunnel)?);
        let mut events = watch(&bed.client, id).await?;

        // Connection 1 falls silent after one round trip; connection 2
        // sends a byte every 300 ms.
        let mut silent = held(port, "then silence").await?;
        let silent_since = Instant::now();
        let mut busy = held(port, "busy").await?;
        let busy_task = tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(3500) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                round_trip(&mut busy, "b")
                    .await
                    .with_context(|| format!("busy connection after {:?}", start.elapsed()))?;
            }
            anyhow::Ok(busy)
        });

        expect_closed(&mut silent, Duration::from_secs(4))
            .await
            .context("a silent connection with idle_timeout 1s")?;
        let closed_after = silent_since.elapsed();
        ensure!(
            closed_after >= idle_timeout - Duration::from_millis(100)
                && closed_after <= Duration::from_secs(3),
            "the silent connection was closed {closed_after:?} after its last byte \
             (idle_timeout {idle_timeout:?})"
        );
        let mut busy = busy_task.await.context("busy task panicked")??;
        round_trip(&mut busy, "still open after 3.5 s")
            .await
            .context("the busy connection")?;

        let closed = tokio::time::timeout(IO_TIMEOUT, async {
            while let Some(item) = events.recv().await {
                if let watch_response::Event::ConnectionClosed(c) = item? {
                    return anyhow::Ok(c);
                }
            }
            bail!("Watch ended without a ConnectionClosed")
        })
        .await
        .context("no ConnectionClosed event on Watch")??;
        ensure!(
            closed.connection_id == 1 && closed.error.contains("idle"),
            "the idle connection's ConnectionClosed: {closed:?}"
        );
        let c = counters(&bed.client, id).await?;
        ensure!(
            c.failed_connections == 0 && c.active_connections == 1,
            "closing an idle connection is not a failure: {c:?}"
        );
        eprintln!("silent connection closed {closed_after:?} after its last byte: {closed:?}");
        Ok(())
    })
    .await
}

/// tunneld's resident memory, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")
}

/// Open tunnels cost little memory: 500 local forwards with no connection
/// add less than 20 MB to tunneld (each held a 1,024-event buffer of
/// ~120 KB before, 60 MB for these 500).
#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_open_tunnels_take_little_memory() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        // The SSH connection and the first tunnel's one-time costs first.
        close(
            &bed.client,
            &open_local(&bed.client, "", echo.port()).await?.id,
        )
        .await?;
        let pid = bed.daemon.pid().context("tunneld not running")?;
        let before = rss_kib(pid)?;
        for _ in 0..500 {
            open_local(&bed.client, "", echo.port()).await?;
        }
        let grown = rss_kib(pid)?.saturating_sub(before);
        ensure!(
            grown < 20 * 1024,
            "500 open tunnels took {} MB of tunneld's memory",
            grown / 1024
        );
        Ok(())
    })
    .await
}
