//! `bench`: tunneld's local forward against OpenSSH's `ssh -N -L`, side by
//! side in one run, on one throwaway sshd, with the same key and target.
//!
//! Measures, alternating the two forwards each round so drift on a shared
//! machine hits both alike:
//! - download: MB/s of one connection reading `--mib` MiB from a source;
//! - upload: MB/s of one connection writing `--mib` MiB to a sink;
//! - parallel: MB/s of 8 connections downloading at once;
//! - connect+rtt: a new connection and one 64-byte round trip;
//! - rtt: one 64-byte round trip on an open connection;
//! - rtt under stall: the same while another connection on the same forward
//!   requested a large response and never reads it (isolation).
//!
//! Prints a table with medians and tunneld/ssh ratios. Run with:
//! `cargo run --release -p tunneld-tests --bin bench -- [--mib N] [--rounds N]`
//! (uses loopback only; every process it starts is stopped on exit).

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tunnel_proto::v1::OpenLocalForwardRequest;
use tunneld_tests::{Sshd, Tunneld, sshd::free_port};

/// Request byte selecting what a bench peer connection does.
const SOURCE: u8 = b'S';
const SINK: u8 = b'K';
const ECHO: u8 = b'E';
/// Bytes a stalled connection asks for (never read).
const STALL_BYTES: u64 = 256 << 20;

struct Options {
    mib: u64,
    rounds: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        mib: 256,
        rounds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .context("missing value")
                .and_then(|v| Ok(v.parse::<u64>()?))
        };
        match a.as_str() {
            "--mib" => o.mib = value()?,
            "--rounds" => o.rounds = value()? as usize,
            other => bail!("unknown argument {other:?}; usage: bench [--mib N] [--rounds N]"),
        }
    }
    Ok(o)
}

/// A peer whose first byte picks: source (then 8-byte length), sink, echo.
async fn start_peer() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut op = [0u8; 1];
                if s.read_exact(&mut op).await.is_err() {
                    return;
                }
                let chunk = vec![0x5au8; 256 * 1024];
                match op[0] {
                    SOURCE => {
                        let Ok(mut left) = s.read_u64().await else {
                            return;
                        };
                        while left > 0 {
                            let n = left.min(chunk.len() as u64) as usize;
                            if s.write_all(&chunk[..n]).await.is_err() {
                                return;
                            }
                            left -= n as u64;
                        }
                        let _ = s.shutdown().await;
                    }
                    SINK => {
                        let mut buf = vec![0u8; 256 * 1024];
                        let mut total = 0u64;
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                        let _ = s.write_u64(total).await;
                    }
                    _ => {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn connect(port: u16) -> Result<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn download(port: u16, bytes: u64) -> Result<f64> {
    let start = Instant::now();
    let mut s = connect(port).await?;
    s.write_u8(SOURCE).await?;
    s.write_u64(bytes).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    if got != bytes {
        bail!("download got {got} of {bytes} bytes");
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn upload(port: u16, bytes: u64) -> Result<f64> {
    let start = Instant::now();
    let mut s = connect(port).await?;
    s.write_u8(SINK).await?;
    let chunk = vec![0xa5u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    let seen = s.read_u64().await?;
    if seen != bytes {
        bail!("sink saw {seen} of {bytes} bytes");
    }
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn parallel(port: u16, bytes: u64, conns: u64) -> Result<f64> {
    let start = Instant::now();
    let each = bytes / conns;
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(download(port, each)))
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((each * conns) as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn round_trip(s: &mut TcpStream) -> Result<Duration> {
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let start = Instant::now();
    s.write_all(&msg).await?;
    s.read_exact(&mut back).await?;
    Ok(start.elapsed())
}

async fn echo_conn(port: u16) -> Result<TcpStream> {
    let mut s = connect(port).await?;
    s.write_u8(ECHO).await?;
    Ok(s)
}

/// Median of `n` connect+round-trip times, in ms.
async fn connect_rtt(port: u16, n: usize) -> Result<f64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut s = echo_conn(port).await?;
        round_trip(&mut s).await?;
        v.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut v))
}

/// Median of `n` round trips on one connection, in ms.
async fn rtt(port: u16, n: usize) -> Result<f64> {
    let mut s = echo_conn(port).await?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(round_trip(&mut s).await?.as_secs_f64() * 1e3);
    }
    Ok(median(&mut v))
}

/// Round trips while another connection on the same forward asked for a
/// large response and never reads it. Returns (median ms, max ms).
async fn rtt_under_stall(port: u16, n: usize) -> Result<(f64, f64)> {
    let mut stalled = connect(port).await?;
    stalled.write_u8(SOURCE).await?;
    stalled.write_u64(STALL_BYTES).await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the buffers fill
    let mut v = Vec::with_capacity(n);
    let mut s = tokio::time::timeout(Duration::from_secs(10), echo_conn(port))
        .await
        .context("a new connection during the stall timed out")??;
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(10), round_trip(&mut s))
            .await
            .context("a round trip during the stall timed out (the forward is not isolated)")??;
        v.push(d.as_secs_f64() * 1e3);
    }
    drop(stalled);
    let max = v.iter().cloned().fold(0.0, f64::max);
    Ok((median(&mut v), max))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// `ssh -N -L` with the same key, known_hosts and target; killed on drop.
struct SshForward(Child);

impl SshForward {
    async fn start(sshd: &Sshd, lport: u16, target: SocketAddr) -> Result<SshForward> {
        let child = Command::new("ssh")
            .args([
                "-N",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ExitOnForwardFailure=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                sshd.known_hosts().display()
            ))
            .arg("-i")
            .arg(sshd.identity())
            .args(["-p", &sshd.port().to_string()])
            .arg("-L")
            .arg(format!("127.0.0.1:{lport}:127.0.0.1:{}", target.port()))
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running ssh (install openssh-client)")?;
        let fwd = SshForward(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", lport)).await.is_err() {
            if Instant::now() > deadline {
                bail!("ssh -L did not start listening on {lport}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(fwd)
    }
}

impl Drop for SshForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Samples {
    download: Vec<f64>,
    upload: Vec<f64>,
    parallel: Vec<f64>,
    connect_rtt: Vec<f64>,
    rtt: Vec<f64>,
    stall_rtt: Vec<f64>,
    stall_max: Vec<f64>,
}

async fn measure(port: u16, bytes: u64, s: &mut Samples) -> Result<()> {
    s.download.push(download(port, bytes).await?);
    s.upload.push(upload(port, bytes).await?);
    s.parallel.push(parallel(port, bytes, 8).await?);
    s.connect_rtt.push(connect_rtt(port, 100).await?);
    s.rtt.push(rtt(port, 500).await?);
    let (m, max) = rtt_under_stall(port, 200).await?;
    s.stall_rtt.push(m);
    s.stall_max.push(max);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    let bytes = o.mib << 20;
    let sshd = Sshd::builder().config("MaxSessions 100").start()?;
    let daemon = Tunneld::start(&sshd).await?;
    let peer = start_peer().await?;

    let mut client = daemon.client();
    let t = client
        .open_local_forward(OpenLocalForwardRequest {
            remote_host: "127.0.0.1".into(),
            remote_port: u32::from(peer.port()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .tunnel
        .context("no tunnel in the reply")?;
    let tunneld_port = t.local.context("no local end")?.port as u16;
    let ssh_port = free_port()?;
    let _ssh = SshForward::start(&sshd, ssh_port, peer).await?;

    let (mut ours, mut theirs) = (Samples::default(), Samples::default());
    for round in 0..o.rounds {
        eprintln!("round {}/{}", round + 1, o.rounds);
        // Alternate who goes first so warm-up and drift hit both.
        if round % 2 == 0 {
            measure(tunneld_port, bytes, &mut ours).await?;
            measure(ssh_port, bytes, &mut theirs).await?;
        } else {
            measure(ssh_port, bytes, &mut theirs).await?;
            measure(tunneld_port, bytes, &mut ours).await?;
        }
    }

    println!("tunneld local forward vs ssh -N -L (OpenSSH client), same sshd, loopback");
    println!(
        "{} MiB per transfer, {} rounds, medians; ratio = tunneld / ssh",
        o.mib, o.rounds
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8}",
        "metric", "tunneld", "ssh -L", "ratio"
    );
    let rows: [(&str, &mut Vec<f64>, &mut Vec<f64>, &str); 7] = [
        (
            "download MB/s (higher=better)",
            &mut ours.download,
            &mut theirs.download,
            "",
        ),
        ("upload MB/s", &mut ours.upload, &mut theirs.upload, ""),
        (
            "8 parallel MB/s",
            &mut ours.parallel,
            &mut theirs.parallel,
            "",
        ),
        (
            "connect+rtt ms (lower=better)",
            &mut ours.connect_rtt,
            &mut theirs.connect_rtt,
            "",
        ),
        ("rtt ms", &mut ours.rtt, &mut theirs.rtt, ""),
        (
            "rtt ms, one reader stalled",
            &mut ours.stall_rtt,
            &mut theirs.stall_rtt,
            "",
        ),
        (
            "max rtt ms, reader stalled",
            &mut ours.stall_max,
            &mut theirs.stall_max,
            "",
        ),
    ];
    for (name, a, b, _) in rows {
        let (a, b) = (median(a), median(b));
        println!("{name:<28} {a:>12.3} {b:>12.3} {:>8.2}", a / b);
    }
    Ok(())
}
