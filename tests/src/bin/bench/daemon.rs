//! tunneld's side: its release binary and the `tunnelctl` built with it,
//! its forwards, `Exec` streaming, `tunnelctl exec` fed stdin, and the
//! control-RPC rows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tunnel_proto::v1::exec_response::Event;
use tunnel_proto::v1::exit_status::Status;
use tunnel_proto::v1::{
    CloseRequest, ListRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest,
};
use tunneld_tests::{Client, binaries, exec};

use crate::contenders::{Fed, SINK_COMMAND, Streamed, feed};
use crate::procfs;
use crate::report::percentile;

/// How long one control RPC may take before the row fails.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The tunneld executable, and where it came from. A full run refuses a
/// non-release build: the numbers would say nothing about tunneld.
pub fn release_binary(smoke: bool) -> Result<(PathBuf, String)> {
    let path = binaries::bin_path("tunneld")?;
    if std::env::var_os(binaries::BIN_DIR_ENV).is_some() {
        return Ok((
            path,
            format!("from {} (assumed a release build)", binaries::BIN_DIR_ENV),
        ));
    }
    let profile = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned();
    if profile != "release" {
        if !smoke {
            bail!(
                "{} is a {profile} build; a full run needs release binaries: \
                 cargo run --release -p tunneld-tests --bin bench",
                path.display()
            );
        }
        return Ok((
            path,
            format!("{profile} build (smoke run: numbers mean nothing)"),
        ));
    }
    Ok((path, "release build".into()))
}

/// The `tunnelctl` built with the tunneld binary `tunneld`: the file next
/// to it (the same target dir and profile, or `TUNNELD_BIN_DIR`).
pub fn tunnelctl_next_to(tunneld: &Path) -> Result<PathBuf> {
    let path = tunneld.with_file_name("tunnelctl");
    ensure!(
        path.is_file(),
        "{} does not exist: the Exec stdin rows run the tunnelctl built with {}; build \
         both (`cargo build --release -p tunneld -p tunnelctl`, or put both in {}), or \
         leave the Exec rows out with --skip exec",
        path.display(),
        tunneld.display(),
        binaries::BIN_DIR_ENV
    );
    Ok(path)
}

/// True when `tunneld --help` lists `flag` (flags the bench passes only to
/// a tunneld that has them, e.g. `--ciphers`).
pub fn has_flag(bin: &Path, flag: &str) -> bool {
    std::process::Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

/// The commit of the source tree the bench was built from, `-dirty` when
/// it had changes (tunneld is built from the same tree).
pub fn source_commit() -> String {
    std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR")])
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into())
}

/// `BIN --version` (tunneld, tunnelctl), for the report.
pub fn version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("? ({e})"))
}

async fn rpc<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    Ok(tokio::time::timeout(RPC_TIMEOUT, f)
        .await
        .with_context(|| format!("{what}: no answer within {RPC_TIMEOUT:?}"))?
        .with_context(|| what.to_owned())?
        .into_inner())
}

/// Opens a local forward to 127.0.0.1:`target` carrying up to
/// `max_connections` at once; returns its id and listening port.
pub async fn open_local(
    client: &Client,
    target: u16,
    max_connections: u32,
) -> Result<(String, u16)> {
    let t = rpc(
        "OpenLocalForward",
        client.clone().open_local_forward(OpenLocalForwardRequest {
            remote_host: "127.0.0.1".into(),
            remote_port: u32::from(target),
            max_connections,
            ..Default::default()
        }),
    )
    .await?
    .tunnel
    .context("no tunnel in the reply")?;
    let port = t.local.context("no local end")?.port as u16;
    Ok((t.id, port))
}

/// Opens a remote forward through the named `host` (empty: the default
/// host): sshd listens on 127.0.0.1 (a port it picks) and tunneld connects
/// each connection to 127.0.0.1:`target`. Returns its id and sshd's port.
pub async fn open_remote(
    client: &Client,
    host: &str,
    target: u16,
    max_connections: u32,
) -> Result<(String, u16)> {
    let t = rpc(
        "OpenRemoteForward",
        client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                host: host.into(),
                remote_bind_address: "127.0.0.1".into(),
                remote_port: 0,
                local_host: "127.0.0.1".into(),
                local_port: u32::from(target),
                max_connections,
                ..Default::default()
            }),
    )
    .await?
    .tunnel
    .context("no tunnel in the reply")?;
    let port = t.remote.context("no remote end")?.port as u16;
    Ok((t.id, port))
}

/// Closes a tunnel.
pub async fn close(client: &Client, id: String) -> Result<()> {
    rpc("Close", client.clone().close(CloseRequest { id })).await?;
    Ok(())
}

/// A client for the `Exec` rows on its own HTTP/2 connection with BDP-based
/// flow-control windows (`http2_adaptive_window`), as grpc-go and grpcio
/// clients have by default; tonic's fixed 64 KiB stream window would make
/// the row measure the client's window instead of tunneld.
pub async fn exec_client(addr: std::net::SocketAddr) -> Result<Client> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .http2_adaptive_window(true)
        .connect_timeout(RPC_TIMEOUT)
        .connect()
        .await
        .context("connecting the Exec client")?;
    Ok(
        tunnel_proto::v1::tunnel_service_client::TunnelServiceClient::with_interceptor(
            channel,
            tunneld_tests::Credentials::none().interceptor()?,
        ),
    )
}

/// `Exec` of `cat FILE` read to its end; CPU is tunneld's during the call.
pub async fn exec_cat(client: &Client, pid: u32, file: &Path, bytes: u64) -> Result<Streamed> {
    let cpu0 = procfs::cpu_seconds(pid)?;
    let start = Instant::now();
    let mut stream = rpc(
        "Exec cat",
        client
            .clone()
            .exec(exec::request(format!("cat {}", file.display()))),
    )
    .await?;
    let (mut got, mut first, mut exit, mut stderr) = (0u64, None, None, Vec::new());
    while let Some(msg) = stream.message().await.context("Exec stream")? {
        match msg.event {
            Some(Event::Stdout(b)) => {
                first.get_or_insert_with(Instant::now);
                got += b.len() as u64;
            }
            Some(Event::Stderr(b)) => stderr.extend_from_slice(&b),
            Some(Event::Exit(e)) => exit = e.status,
            None => {}
        }
    }
    let end = Instant::now();
    let cpu1 = procfs::cpu_seconds(pid)?;
    ensure!(
        matches!(exit, Some(Status::Code(0))),
        "Exec cat ended with {exit:?}: {}",
        String::from_utf8_lossy(&stderr)
    );
    ensure!(got == bytes, "Exec cat gave {got} of {bytes} bytes");
    let first = first.context("Exec cat gave no output")?;
    Ok(Streamed {
        mbps: got as f64 / (end - first).as_secs_f64() / 1e6,
        first_byte_ms: (first - start).as_secs_f64() * 1e3,
        cpu_secs: Some(cpu1 - cpu0),
    })
}

/// `tunnelctl --addr ADDR exec -- 'cat > /dev/null'` with `input` (`bytes`
/// long) on its stdin: tunnelctl's own CPU, and tunneld's (`pid`) over the
/// run. tunnelctl gets no `TUNNELD_*` variable of the caller's shell (a
/// token or TLS setting meant for another tunneld).
pub async fn tunnelctl_sink(
    tunnelctl: &Path,
    addr: &str,
    pid: u32,
    input: &Path,
    bytes: u64,
) -> Result<Fed> {
    let mut cmd = tokio::process::Command::new(tunnelctl);
    cmd.args(["--addr", addr, "exec", "--", SINK_COMMAND]);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TUNNELD_") {
            cmd.env_remove(key);
        }
    }
    let cpu0 = procfs::cpu_seconds(pid)?;
    let mut fed = feed(
        cmd,
        &format!("tunnelctl exec -- '{SINK_COMMAND}'"),
        input,
        bytes,
    )
    .await?;
    fed.daemon_cpu_secs = Some(procfs::cpu_seconds(pid)? - cpu0);
    Ok(fed)
}

/// p50 and p99 in ms of each control RPC.
#[derive(Debug)]
pub struct ControlLatency {
    pub open: (f64, f64),
    pub list: (f64, f64),
}

/// Opens `tunnels` local forwards one after another (timing each), times
/// `list_calls` List calls with all of them open, then closes them.
pub async fn control_rows(
    client: &Client,
    target: u16,
    tunnels: usize,
    list_calls: usize,
) -> Result<ControlLatency> {
    let mut open_ms = Vec::with_capacity(tunnels);
    let mut ids = Vec::with_capacity(tunnels);
    for _ in 0..tunnels {
        let t0 = Instant::now();
        let (id, _) = open_local(client, target, 0).await?;
        open_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        ids.push(id);
    }
    let mut list_ms = Vec::with_capacity(list_calls);
    for _ in 0..list_calls {
        let t0 = Instant::now();
        let r = rpc("List", client.clone().list(ListRequest {})).await?;
        list_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        ensure!(
            r.tunnels.len() >= tunnels,
            "List returned {} tunnels, {tunnels} are open",
            r.tunnels.len()
        );
    }
    for id in ids {
        rpc("Close", client.clone().close(CloseRequest { id })).await?;
    }
    let p = |v: &[f64]| {
        if v.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(v, 50.0), percentile(v, 99.0))
        }
    };
    Ok(ControlLatency {
        open: p(&open_ms),
        list: p(&list_ms),
    })
}
