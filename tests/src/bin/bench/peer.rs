//! The target every forward reaches: a TCP server in a process of its own
//! (this binary run with `--serve-peer`), so that the bench process holds
//! only the client ends of the idle connections and both stay under
//! `RLIMIT_NOFILE` (the hard limit here is 20,000 and cannot be raised
//! without CAP_SYS_RESOURCE).
//!
//! Protocol: the first byte of a connection picks what it does.
//! - [`SOURCE`] + a big-endian u64 `n`: the peer writes `n` bytes and closes;
//! - [`SINK`]: the peer reads to EOF, then writes the count as a u64;
//! - [`ECHO`]: the peer echoes every following byte.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// First byte: send me `n` bytes.
pub const SOURCE: u8 = b'S';
/// First byte: count what I send.
pub const SINK: u8 = b'K';
/// First byte: echo what follows.
pub const ECHO: u8 = b'E';
/// Size of every read and write buffer, on both ends.
pub const CHUNK: usize = 256 * 1024;

/// What the peer process prints once it listens.
const READY_PREFIX: &str = "peer listening on port ";
/// How long the peer process may take to print its port.
const PEER_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs as the peer process: listens on 127.0.0.1:0, prints the port, and
/// serves until stdin closes (so it never outlives the bench, even one
/// killed with SIGKILL).
pub async fn serve() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{READY_PREFIX}{}", listener.local_addr()?.port());
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(handle(s));
                }
                Err(e) => {
                    // EMFILE and aborted handshakes pass; the client side
                    // notices the missing connection and fails the row.
                    eprintln!("peer: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let stdin_closed = async { while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    tokio::select! {
        () = accept => Ok(()),
        () = stdin_closed => Ok(()),
    }
}

async fn handle(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut op = [0u8; 1];
    if s.read_exact(&mut op).await.is_err() {
        return;
    }
    let _ = match op[0] {
        SOURCE => source(&mut s).await,
        SINK => sink(&mut s).await,
        ECHO => echo(&mut s).await,
        _ => Ok(()),
    };
}

async fn source(s: &mut TcpStream) -> std::io::Result<()> {
    let mut left = s.read_u64().await?;
    let chunk = vec![0x5au8; CHUNK];
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await
}

async fn sink(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    s.write_u64(total).await?;
    s.shutdown().await
}

async fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    // Small: an idle connection should cost the peer little.
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return s.shutdown().await;
        }
        s.write_all(&buf[..n]).await?;
    }
}

/// The peer process; killed when dropped.
pub struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    /// Starts this executable with `--serve-peer` and waits for its port.
    pub async fn start() -> Result<Peer> {
        let exe = std::env::current_exe().context("locating the bench executable")?;
        let mut child = Command::new(exe)
            .arg("--serve-peer")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the peer process")?;
        let stdout = child.stdout.take().context("peer stdout not piped")?;
        let mut line = String::new();
        tokio::time::timeout(
            PEER_READY_TIMEOUT,
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("the peer process did not print its port in time")??;
        let Some(port) = line.trim().strip_prefix(READY_PREFIX) else {
            bail!("the peer process printed {line:?}, expected {READY_PREFIX:?}PORT");
        };
        Ok(Peer {
            port: port.parse().context("peer port")?,
            child,
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
