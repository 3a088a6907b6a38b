//! The client side of every data-path row: connections made to a port (a
//! forward's listening end, or the peer itself for raw TCP), speaking the
//! peer's protocol (see `peer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::peer::{CHUNK, ECHO, SINK, SOURCE};

/// Bytes of the small request and reply of a round trip.
pub const RTT_BYTES: usize = 64;

/// Slowest rate a transfer may run at before it counts as hung: a
/// transfer of `n` bytes gets `n / MIN_RATE` seconds plus
/// [`TIMEOUT_FLOOR`].
const MIN_RATE: u64 = 5_000_000;
/// Time every bounded step gets at least.
pub const TIMEOUT_FLOOR: Duration = Duration::from_secs(60);

/// The time bound of a step moving `bytes` bytes.
pub fn transfer_timeout(bytes: u64) -> Duration {
    TIMEOUT_FLOOR + Duration::from_secs(bytes / MIN_RATE)
}

/// Runs `f` under `limit`, naming `what` when it runs out.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .with_context(|| format!("{what}: no result within {limit:?}"))?
        .with_context(|| what.to_owned())
}

async fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One stream writing `bytes` towards the peer; returns MB/s (10^6 bytes).
pub async fn push(port: u16, bytes: u64) -> Result<f64> {
    let start = Instant::now();
    let mut s = connect(port).await?;
    s.write_u8(SINK).await?;
    let chunk = vec![0xa5u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let seen = s
        .read_u64()
        .await
        .context("reading the sink's byte count")?;
    ensure!(seen == bytes, "the sink saw {seen} of {bytes} bytes");
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// One stream reading `bytes` from the peer; returns MB/s.
pub async fn pull(port: u16, bytes: u64) -> Result<f64> {
    let start = Instant::now();
    let mut s = connect(port).await?;
    let mut req = [0u8; 9];
    req[0] = SOURCE;
    req[1..].copy_from_slice(&bytes.to_be_bytes());
    s.write_all(&req).await?;
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    ensure!(got == bytes, "pulled {got} of {bytes} bytes");
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// `streams` connections pulling `total / streams` bytes each at once;
/// returns the aggregate MB/s from the first connect to the last byte.
pub async fn aggregate_pull(port: u16, total: u64, streams: usize) -> Result<f64> {
    let each = (total / streams as u64).max(1);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..streams {
        set.spawn(pull(port, each));
    }
    while let Some(r) = set.join_next().await {
        r.context("a stream task panicked")??;
    }
    Ok((each * streams as u64) as f64 / start.elapsed().as_secs_f64() / 1e6)
}

/// Connects, sends the echo request byte with a [`RTT_BYTES`]-byte message
/// in one write, and reads the echo.
async fn echo_round_trip(port: u16) -> Result<TcpStream> {
    let mut s = connect(port).await?;
    let mut msg = [7u8; RTT_BYTES + 1];
    msg[0] = ECHO;
    s.write_all(&msg).await?;
    let mut back = [0u8; RTT_BYTES];
    s.read_exact(&mut back).await.context("reading the echo")?;
    ensure!(back == [7u8; RTT_BYTES], "the echo came back altered");
    Ok(s)
}

/// One more [`RTT_BYTES`]-byte round trip on a connection in echo mode;
/// returns its duration in ms.
async fn round_trip(s: &mut TcpStream) -> Result<f64> {
    let start = Instant::now();
    let msg = [9u8; RTT_BYTES];
    s.write_all(&msg).await?;
    let mut back = [0u8; RTT_BYTES];
    s.read_exact(&mut back).await.context("reading the echo")?;
    ensure!(back == msg, "the echo came back altered");
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Retries one echo round trip through `port` until one succeeds or
/// `limit` has passed: a chain of forwards is ready once a byte makes it
/// to the peer and back, not when its first listener accepts.
pub async fn wait_for_echo(port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let e = match tokio::time::timeout(Duration::from_secs(5), echo_round_trip(port)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => anyhow!("no echo within 5 s"),
        };
        if Instant::now() > deadline {
            return Err(e.context(format!(
                "no round trip through 127.0.0.1:{port} within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Longest a paced pull's read, or a sibling's round trip, may wait before
/// the connection counts as stalled.
const STALL: Duration = Duration::from_secs(30);

/// What a rate-limited pull beside busy siblings saw
/// ([`paced_pull_beside_siblings`]).
#[derive(Debug)]
pub struct PacedPull {
    /// Bytes that arrived.
    pub got: u64,
    /// Seconds from the connect to the last byte (or to the failure).
    pub secs: f64,
    /// Why the pull got fewer bytes than it asked for (a reset, an early
    /// EOF, a stall); `None` when all arrived.
    pub error: Option<anyhow::Error>,
    /// The busy sibling's round trips (ms) while the pull ran, or why it or
    /// the idle sibling failed.
    pub sibling: Result<Vec<f64>>,
}

/// Through `port`: opens an idle connection (one round trip, then held)
/// and a busy one (small echo round trips back to back), then pulls
/// `bytes` from the peer reading at `rate` bytes/s: up to [`CHUNK`] bytes
/// per read, then a wait until `got / rate` seconds have passed since the
/// connect. When the pull ends the busy sibling stops and the idle one
/// must still answer a round trip. All three are connections of the same
/// forward, so for a forward client they share one SSH connection.
///
/// Errs only when a sibling cannot be opened; what happened to the pull
/// and the siblings is in the result.
pub async fn paced_pull_beside_siblings(port: u16, bytes: u64, rate: f64) -> Result<PacedPull> {
    let mut idle = echo_round_trip(port)
        .await
        .context("opening the idle sibling")?;
    let mut busy = echo_round_trip(port)
        .await
        .context("opening the busy sibling")?;
    let stop = Arc::new(AtomicBool::new(false));
    let echoing = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut ms = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rtt = tokio::time::timeout(STALL, round_trip(&mut busy))
                    .await
                    .map_err(|_| anyhow!("no echo within {STALL:?}"))
                    .and_then(|r| r)
                    .with_context(|| {
                        format!("busy sibling, round trip {} during the pull", ms.len() + 1)
                    })?;
                ms.push(rtt);
            }
            anyhow::Ok(ms)
        }
    });

    let start = Instant::now();
    let mut got = 0u64;
    let pulled: Result<()> = async {
        let mut s = connect(port).await?;
        let mut req = [0u8; 9];
        req[0] = SOURCE;
        req[1..].copy_from_slice(&bytes.to_be_bytes());
        s.write_all(&req).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = tokio::time::timeout(STALL, s.read(&mut buf))
                .await
                .map_err(|_| anyhow!("stalled: no byte for {STALL:?}"))??;
            if n == 0 {
                break;
            }
            got += n as u64;
            let due = start + Duration::from_secs_f64(got as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        Ok(())
    }
    .await;
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);

    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let error = match pulled {
        Ok(()) if got == bytes => None,
        Ok(()) => Some(anyhow!(
            "pulled {got} of {bytes} bytes ({:.2} of {:.2} MiB) in {secs:.1} s: the connection \
             ended early (closed or reset before the peer's last byte)",
            mib(got),
            mib(bytes)
        )),
        Err(e) => Some(e.context(format!(
            "pulled {got} of {bytes} bytes ({:.2} of {:.2} MiB) in {secs:.1} s, then",
            mib(got),
            mib(bytes)
        ))),
    };
    let sibling = match echoing.await {
        Ok(r) => r,
        Err(e) => Err(anyhow!("the busy sibling's task failed: {e}")),
    };
    let idle_ok = tokio::time::timeout(STALL, round_trip(&mut idle))
        .await
        .map_err(|_| anyhow!("no echo within {STALL:?}"))
        .and_then(|r| r)
        .context("idle sibling, round trip after the pull");
    let sibling = sibling.and_then(|ms| idle_ok.map(|_| ms));
    Ok(PacedPull {
        got,
        secs,
        error,
        sibling,
    })
}

/// `n` times, one after another: a new connection and one small round trip
/// on it, then close. Returns each duration in ms.
pub async fn setup_round_trips(port: u16, n: usize) -> Result<Vec<f64>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let s = echo_round_trip(port).await?;
        v.push(start.elapsed().as_secs_f64() * 1e3);
        drop(s);
    }
    Ok(v)
}

/// How many idle connections are opened at once.
const IDLE_OPEN_CONCURRENCY: usize = 32;

/// Opens `n` connections that each complete one round trip (so the whole
/// path, through the SSH channel to the peer, is established), and returns
/// them open.
pub async fn open_idle(port: u16, n: usize) -> Result<Vec<TcpStream>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..IDLE_OPEN_CONCURRENCY.min(n) {
        let next = next.clone();
        set.spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                mine.push(echo_round_trip(port).await?);
            }
            anyhow::Ok(mine)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        match r.context("an opener task panicked")? {
            Ok(mine) => all.extend(mine),
            Err(e) => {
                set.abort_all();
                bail!("opening idle connection {} of {n}: {e:#}", all.len() + 1);
            }
        }
    }
    Ok(all)
}
