//! Shared test plumbing: the timeout wrapper, a sshd+tunneld pair that
//! prints its logs when a test fails, and small helpers for forwards and
//! TCP round trips.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Command;
use tunnel_proto::v1::{
    CloseRequest, ExecRequest, ListRequest, ListResponse, OpenLocalForwardRequest, Tunnel,
};
use tunneld_tests::{Client, Sshd, Tunneld, TunneldBuilder, binaries, exec};

/// Upper bound for one test, fixtures included (but not the one-time build
/// of the binaries, which happens before the clock starts).
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a single network operation in a test may take before the test
/// calls it hung.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a test body that needs the tunneld binary: builds it first (once per
/// process, outside the timeout), then runs `body` under [`TEST_TIMEOUT`].
pub async fn e2e<F: Future<Output = Result<()>>>(body: F) -> Result<()> {
    tokio::task::spawn_blocking(binaries::bin_dir)
        .await
        .context("build task panicked")?
        .context("building tunneld")?;
    bounded(body).await
}

/// Runs `body` under [`TEST_TIMEOUT`].
pub async fn bounded<F: Future<Output = Result<()>>>(body: F) -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .with_context(|| format!("test did not finish within {TEST_TIMEOUT:?}"))?
}

/// An sshd, a tunneld whose default host is that sshd, and a client. When
/// dropped, prints both logs to the (captured) test output: libtest shows
/// them only for tests that fail.
pub struct Bed {
    pub daemon: Tunneld,
    pub sshd: Sshd,
    pub client: Client,
}

impl Bed {
    /// Default sshd, default daemon.
    pub async fn start() -> Result<Bed> {
        let sshd = Sshd::start()?;
        Self::with(sshd, |b| b).await
    }

    /// A daemon on `sshd`, configured further by `configure`.
    pub async fn with(
        sshd: Sshd,
        configure: impl FnOnce(TunneldBuilder) -> TunneldBuilder,
    ) -> Result<Bed> {
        let daemon = configure(Tunneld::builder(&sshd)).start().await?;
        Ok(Self::adopt(daemon, sshd))
    }

    /// A bed of a daemon started otherwise (e.g. from an ssh_config alias).
    pub fn adopt(daemon: Tunneld, sshd: Sshd) -> Bed {
        let client = daemon.client();
        Bed {
            daemon,
            sshd,
            client,
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        eprintln!(
            "==== tunneld stderr (last lines) ====\n{}",
            tail(&self.daemon.log(), 150)
        );
        eprintln!(
            "==== sshd log (last lines) ====\n{}",
            tail(&self.sshd.log(), 60)
        );
    }
}

/// Runs `echo ok` on `host` through Exec; the outcome.
pub async fn echo_on(bed: &Bed, host: &str) -> exec::ExecOutcome {
    exec::run(
        &bed.client,
        ExecRequest {
            host: host.into(),
            command: "echo ok".into(),
            ..Default::default()
        },
    )
    .await
}

/// Checks `echo ok` on `host` exits 0 printing `ok`.
pub async fn echo_ok_on(bed: &Bed, host: &str) -> Result<()> {
    let out = echo_on(bed, host).await;
    ensure!(
        out.code().ok() == Some(0) && out.stdout_text() == "ok\n",
        "on {host}: {out}"
    );
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Opens a local forward on 127.0.0.1:0 to 127.0.0.1:`remote_port` over
/// `host` ("" for the default host).
pub async fn open_local(client: &Client, host: &str, remote_port: u16) -> Result<Tunnel> {
    let resp = client
        .clone()
        .open_local_forward(OpenLocalForwardRequest {
            host: host.into(),
            local_port: 0,
            remote_host: "127.0.0.1".into(),
            remote_port: remote_port.into(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("OpenLocalForward to 127.0.0.1:{remote_port}"))?
        .into_inner();
    resp.tunnel
        .context("OpenLocalForwardResponse without a tunnel")
}

/// The port a local forward listens on.
pub fn local_port(t: &Tunnel) -> Result<u16> {
    let port = t
        .local
        .as_ref()
        .context("tunnel without a local endpoint")?
        .port;
    ensure!(
        port != 0 && port <= 65535,
        "tunnel {} has local port {port}",
        t.id
    );
    Ok(port as u16)
}

/// The port a remote forward listens on (on the SSH server).
pub fn remote_port(t: &Tunnel) -> Result<u16> {
    let port = t
        .remote
        .as_ref()
        .context("tunnel without a remote endpoint")?
        .port;
    ensure!(
        port != 0 && port <= 65535,
        "tunnel {} has remote port {port}",
        t.id
    );
    Ok(port as u16)
}

/// 127.0.0.1:`port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects to 127.0.0.1:`port` (bounded by [`IO_TIMEOUT`]).
pub async fn connect(port: u16) -> Result<TcpStream> {
    tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(localhost(port)))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port} hung"))?
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))
}

/// Connects to `port`, where the daemon is expected to end the connection
/// at once (a refused target, a cap). `None` when it was already reset
/// before `connect` returned: on a busy machine the RST can arrive before
/// this task polls the connect's completion, and that is the same outcome.
pub async fn connect_expecting_close(port: u16) -> Result<Option<TcpStream>> {
    match connect(port).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if e.root_cause()
                .downcast_ref::<std::io::Error>()
                .map(|e| e.kind())
                == Some(std::io::ErrorKind::ConnectionReset) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What curl did: its exit code, stdout, stderr, and how long it took.
#[derive(Debug)]
pub struct Curl {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
    pub took: Duration,
}

/// `curl -sS --max-time 10 ARGS...`, killed if the test ends first.
pub async fn curl<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<Curl> {
    let started = std::time::Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running curl")?;
    Ok(Curl {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    })
}

/// `curl --socks5-hostname 127.0.0.1:PROXY URL`: the body, or an error
/// with what curl said.
pub async fn curl_socks(proxy: u16, url: &str) -> Result<String> {
    let c = curl(&["--socks5-hostname", &format!("127.0.0.1:{proxy}"), url]).await?;
    ensure!(
        c.code == Some(0),
        "curl --socks5-hostname 127.0.0.1:{proxy} {url}: exit {:?}, {}",
        c.code,
        c.err
    );
    Ok(c.out)
}

/// `curl --unix-socket PATH http://tunneld.test/`: the body, or an error
/// with what curl said.
pub async fn curl_unix(sock: &Path) -> Result<String> {
    let c = curl(&[
        std::ffi::OsStr::new("--unix-socket"),
        sock.as_os_str(),
        std::ffi::OsStr::new("http://tunneld.test/"),
    ])
    .await?;
    ensure!(
        c.code == Some(0),
        "curl --unix-socket {}: exit {:?}, {}",
        sock.display(),
        c.code,
        c.err
    );
    Ok(c.out)
}

/// Sends 256 KiB of random bytes through 127.0.0.1:`port` to an echo peer
/// and checks, by their SHA-256, that the same bytes come back; `what`
/// names the path in the error.
pub async fn carries(port: u16, what: &str) -> Result<()> {
    let sent = tunneld_tests::data::random_bytes(256 * 1024);
    let got = exchange(port, &sent, IO_TIMEOUT)
        .await
        .with_context(|| format!("through {what}"))?;
    ensure!(
        tunneld_tests::data::sha256_hex(&got) == tunneld_tests::data::sha256_hex(&sent),
        "{what}: {} bytes came back, not the {} sent intact",
        got.len(),
        sent.len()
    );
    Ok(())
}

/// Opens the local forward `req` as given; the tunnel.
pub async fn open_local_req(client: &Client, req: OpenLocalForwardRequest) -> Result<Tunnel> {
    client
        .clone()
        .open_local_forward(req)
        .await
        .context("OpenLocalForward")?
        .into_inner()
        .tunnel
        .context("OpenLocalForwardResponse without a tunnel")
}

/// Connects, writes `data` (concurrently with reading), half-closes, and
/// reads until EOF; returns what was read. Bounded by `limit`.
pub async fn exchange(port: u16, data: &[u8], limit: Duration) -> Result<Vec<u8>> {
    let work = async {
        let stream = connect(port).await?;
        tunneld_tests::peers::exchange_on(stream, data).await
    };
    tokio::time::timeout(limit, work).await.with_context(|| {
        format!(
            "exchange of {} bytes via 127.0.0.1:{port} took longer than {limit:?}",
            data.len()
        )
    })?
}

/// Reads from `stream` until EOF or a reset, bounded by `limit`; fails if the
/// peer keeps the connection open. Returns the bytes read before the end.
pub async fn expect_closed(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(limit, read).await.is_err() {
        bail!("connection still open after {limit:?}");
    }
    Ok(got)
}

/// Reads `stream` until it ends, within `limit`, and fails unless it ends
/// with a reset: a clean EOF would let the reader take a cut stream for a
/// complete one. Returns what was read before the reset.
pub async fn expect_reset(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(None),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Ok::<_, anyhow::Error>(Some(e)),
            }
        }
    };
    match tokio::time::timeout(limit, read).await {
        Err(_) => bail!("connection still open after {limit:?}"),
        Ok(Ok(Some(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Ok(Ok(Some(e))) => bail!("ended with {e} after {} bytes, not a reset", got.len()),
        Ok(Ok(None)) => bail!(
            "ended with a clean EOF after {} bytes, not a reset: the reader would take the cut stream for a complete one",
            got.len()
        ),
        Ok(Err(e)) => Err(e),
    }
}

/// The daemon's List.
pub async fn list(client: &Client) -> Result<ListResponse> {
    Ok(client
        .clone()
        .list(ListRequest {})
        .await
        .context("List")?
        .into_inner())
}

/// Closes the tunnel `id`; returns it as Close answered (state CLOSED).
pub async fn close(client: &Client, id: &str) -> Result<Tunnel> {
    client
        .clone()
        .close(CloseRequest { id: id.into() })
        .await
        .with_context(|| format!("Close({id})"))?
        .into_inner()
        .tunnel
        .context("CloseResponse without a tunnel")
}

/// The tunnel with this id in List, if present.
pub async fn find_tunnel(client: &Client, id: &str) -> Result<Option<Tunnel>> {
    Ok(list(client).await?.tunnels.into_iter().find(|t| t.id == id))
}

/// Asserts that `result` is a gRPC error with `code` whose message contains
/// at least one of `needles` (what the message must name).
pub fn expect_status<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    needles: &[&str],
) -> Result<tonic::Status> {
    let status = match result {
        Ok(v) => bail!("{what}: expected {code:?}, got success: {v:?}"),
        Err(s) => s,
    };
    ensure!(
        status.code() == code,
        "{what}: expected {code:?}, got {:?}: {:?}",
        status.code(),
        status.message()
    );
    ensure!(
        needles.is_empty() || needles.iter().any(|n| status.message().contains(n)),
        "{what}: {code:?} message {:?} names none of {needles:?}",
        status.message()
    );
    Ok(status)
}

/// `ssh` with only the options given here: no user config, no agent, strict
/// host key checking against `known_hosts`.
pub fn ssh(sshd: &Sshd, identity: &Path, known_hosts: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .args(["-o", "StrictHostKeyChecking=yes", "-o"])
    .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
    .arg("-i")
    .arg(identity)
    .arg("-p")
    .arg(sshd.port().to_string())
    .arg(format!("{}@127.0.0.1", sshd.user()))
    .env_remove("SSH_AUTH_SOCK")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}
