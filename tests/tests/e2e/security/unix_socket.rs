//! The unix socket: created mode 0600, and even when someone widens it,
//! tunneld serves only its own uid and root (SO_PEERCRED), health included.
//!
//! Another uid is played by a child process run as `nobody` (65534): a
//! relay that connects to the socket and copies bytes between it and its
//! stdin/stdout, so that the gRPC client here — a real tonic client — speaks
//! through a connection whose peer credentials are the child's. That needs
//! root (CI runs as root); run as another user, the test checks the mode
//! and says on stderr why it could not check the uid.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, ensure};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tunnel_proto::v1::GetInfoRequest;
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;
use tunneld_tests::Sshd;

use super::{chmod, mode};
use crate::support::{Bed, e2e, expect_status};

/// The uid and gid of `nobody` on Debian.
const NOBODY: u32 = 65534;

/// The system Python (not a user's pyenv shim, which `nobody` cannot run).
const PYTHON: &str = "/usr/bin/python3";

/// Connects to the unix socket `argv[1]` and copies bytes both ways between
/// it and stdin/stdout until either side ends.
const RELAY: &str = r#"
import os, socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def up():
    while True:
        b = os.read(0, 65536)
        if not b:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(b)
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    os.write(1, b)
"#;

/// The relay child as one byte stream; killing it (on drop) closes the
/// connection.
struct RelayIo {
    _child: Child,
    stdout: ChildStdout,
    stdin: ChildStdin,
}

impl AsyncRead for RelayIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

/// A channel whose every connection is a relay child running as `uid`.
fn channel_as(uid: u32, socket: &Path) -> Result<Channel> {
    let socket: PathBuf = socket.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move {
            // -I: no user site, no PYTHON* variables of the caller's.
            let mut child = Command::new(PYTHON)
                .arg("-I")
                .arg("-c")
                .arg(RELAY)
                .arg(&socket)
                .uid(uid)
                .gid(uid)
                .current_dir("/")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?;
            let stdout = child.stdout.take().expect("piped stdout");
            let stdin = child.stdin.take().expect("piped stdin");
            Ok::<_, io::Error>(TokioIo::new(RelayIo {
                _child: child,
                stdout,
                stdin,
            }))
        }
    });
    Ok(Endpoint::from_static("http://tunneld.invalid").connect_with_connector_lazy(connector))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_unix_socket_is_private_and_other_uids_are_refused() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::Builder::new()
            .prefix("tunneld-socket-")
            .tempdir()?;
        let socket = dir.path().join("tunneld.sock");
        let bed = Bed::with(sshd, |b| b.listen_unix(&socket)).await?;

        let socket_mode = mode(&socket)?;
        ensure!(
            socket_mode == 0o600,
            "the socket is mode {socket_mode:o}, expected 600"
        );
        // Our own uid is served.
        bed.client
            .clone()
            .get_info(GetInfoRequest {})
            .await
            .context("GetInfo as tunneld's own uid")?;

        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "NOTE: not running as root (euid {}): cannot connect as another uid, so the \
                 SO_PEERCRED check was not exercised; CI runs this test as root",
                nix::unistd::geteuid()
            );
            return Ok(());
        }
        ensure!(
            Path::new(PYTHON).is_file(),
            "{PYTHON} not found: this test runs a relay with it as uid {NOBODY}"
        );
        // Widen everything, as a careless admin might: the kernel then lets
        // uid 65534 connect, and only tunneld's own check stands.
        chmod(dir.path(), 0o755)?;
        chmod(&socket, 0o666)?;

        let channel = channel_as(NOBODY, &socket)?;
        let expected = format!("uid {NOBODY} may not use this tunneld");
        let info = TunnelServiceClient::new(channel.clone())
            .get_info(GetInfoRequest {})
            .await;
        expect_status(
            "GetInfo as uid 65534",
            info,
            tonic::Code::PermissionDenied,
            &[&expected],
        )?;
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await;
        let status = expect_status(
            "health check as uid 65534",
            health,
            tonic::Code::PermissionDenied,
            &[&expected],
        )?;
        ensure!(
            status.message().contains("root"),
            "the refusal does not say who may connect: {:?}",
            status.message()
        );
        // And tunneld's own uid still is served.
        bed.client
            .clone()
            .get_info(GetInfoRequest {})
            .await
            .context("GetInfo as tunneld's own uid after the refusals")?;
        Ok(())
    })
    .await
}
