//! The client side of every data-path row: connections made to a port (a
//! forward's listening end, or the peer itself for raw TCP), speaking the
//! peer's protocol (see `peer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
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
