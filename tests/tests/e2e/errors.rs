//! Errors a user can run into, each with its gRPC code and a message naming
//! the host, address or port concerned — and a daemon that keeps working
//! after all of them.
//!
//! The bad requests are one table ([`bad_requests`]): the request, the code
//! it must get and the words its message must contain. They all run on one
//! daemon whose named config hosts point at the same sshd with a broken
//! identity or known_hosts each, plus a second sshd that refuses remote
//! forwarding; afterwards a tunnel opened before them must still carry
//! bytes. `docs/errors.md` is the same table, written for users. What a
//! single request cannot show — a target that refuses connections, a caller
//! going away mid-Exec, Close racing with a reconnect — has its own test
//! below the table.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tunnel_proto::v1::{
    CloseRequest, ExecRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest, TunnelState,
    WatchRequest, watch_response,
};
use tunneld_tests::data::random_token;
use tunneld_tests::keys::{self, KeyType};
use tunneld_tests::peers::{self, TcpPeer};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, HostSpec, Sshd, Tunneld, binaries, exec};

use crate::forward_remote::open_remote;
use crate::support::{
    Bed, connect_expecting_close, e2e, exchange, expect_closed, find_tunnel, list, local_port,
    open_local, remote_port,
};

/// The shared setup of the error cases.
struct ErrorsBed {
    bed: Bed,
    /// An sshd with `AllowTcpForwarding local`, known as host `no-remote`
    /// (held for its lifetime).
    _strict_sshd: Sshd,
    /// Port where nothing listens, used by host `unreachable`.
    dead_port: u16,
    /// Holds the extra keys and known_hosts files.
    dir: TempDir,
    /// Target of the tunnel opened before any error.
    echo: TcpPeer,
    /// Local port of that tunnel.
    tunnel_port: u16,
}

impl ErrorsBed {
    async fn start() -> Result<ErrorsBed> {
        let sshd = Sshd::start()?;
        let strict_sshd = Sshd::builder().config("AllowTcpForwarding local").start()?;
        let dir = tempfile::Builder::new()
            .prefix("tunneld-errors-")
            .tempdir()?;
        let d = dir.path();
        let port = sshd.port();
        let right = sshd.host_key_line();
        let stranger = keys::generate(d, "stranger_host", KeyType::Ed25519)?;
        let (kind, stranger_blob) = stranger.type_and_blob()?;
        let (_, right_blob) = sshd.host_key().type_and_blob()?;
        let unrelated = format!("[127.0.0.1]:1 {kind} {right_blob}");
        let wrong_for_us = format!("[127.0.0.1]:{port} {kind} {stranger_blob}");

        let kh = |name: &str, lines: &[String]| -> Result<std::path::PathBuf> {
            let path = d.join(name);
            keys::write_known_hosts(&path, lines)?;
            Ok(path)
        };
        let unknown = kh("kh_unknown", std::slice::from_ref(&unrelated))?;
        let changed = kh("kh_changed", std::slice::from_ref(&wrong_for_us))?;
        let revoked = kh("kh_revoked", &[format!("@revoked {right}"), right.clone()])?;
        let hashed = kh("kh_hashed", std::slice::from_ref(&right))?;
        keys::hash_known_hosts(&hashed)?;
        let hashed_text = std::fs::read_to_string(&hashed)?;
        ensure!(
            hashed_text.starts_with("|1|"),
            "ssh-keygen -H left {hashed_text:?}"
        );
        let second = kh(
            "kh_second",
            &[unrelated.clone(), wrong_for_us.clone(), right.clone()],
        )?;
        let accept_new_unknown = kh("kh_accept_new_unknown", std::slice::from_ref(&unrelated))?;
        let accept_new_changed = kh("kh_accept_new_changed", std::slice::from_ref(&wrong_for_us))?;
        let unauthorized = keys::generate(d, "unauthorized_user", KeyType::Ed25519)?;
        let dead_port = peers::refused_port()?;

        let base = HostSpec::from_sshd(&sshd).with_policy("strict");
        let bed = Bed::with(sshd, |b| {
            b.host(
                "unreachable",
                base.clone()
                    .with_address(format!("{}@127.0.0.1:{dead_port}", sshd_user())),
            )
            .host(
                "unauthorized",
                base.clone().with_identity(&unauthorized.private),
            )
            .host("unknown-key", base.clone().with_known_hosts(&unknown))
            .host("changed-key", base.clone().with_known_hosts(&changed))
            .host("revoked-key", base.clone().with_known_hosts(&revoked))
            .host("hashed", base.clone().with_known_hosts(&hashed))
            .host("second-line", base.clone().with_known_hosts(&second))
            .host(
                "accept-new",
                base.clone()
                    .with_known_hosts(&accept_new_unknown)
                    .with_policy("accept-new"),
            )
            .host(
                "accept-new-changed",
                base.clone()
                    .with_known_hosts(&accept_new_changed)
                    .with_policy("accept-new"),
            )
            .host(
                "no-remote",
                HostSpec::from_sshd(&strict_sshd).with_policy("strict"),
            )
        })
        .await?;

        let echo = TcpPeer::echo().await?;
        let tunnel_port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let errors_bed = ErrorsBed {
            bed,
            _strict_sshd: strict_sshd,
            dead_port,
            dir,
            echo,
            tunnel_port,
        };
        errors_bed
            .tunnel_still_works()
            .await
            .context("the tunnel opened before any error")?;
        Ok(errors_bed)
    }

    async fn exec_on(&self, host: &str) -> exec::ExecOutcome {
        exec::run(
            &self.bed.client,
            ExecRequest {
                host: host.into(),
                command: "echo ok".into(),
                ..Default::default()
            },
        )
        .await
    }

    async fn exec_succeeds(&self, host: &str) -> Result<()> {
        let out = self.exec_on(host).await;
        ensure!(
            out.code()
                .with_context(|| format!("Exec on host {host:?}"))?
                == 0
                && out.stdout_text() == "ok\n",
            "Exec on host {host:?}: {out}"
        );
        Ok(())
    }

    async fn tunnel_still_works(&self) -> Result<()> {
        let data = b"the old tunnel still works";
        let back = exchange(self.tunnel_port, data, Duration::from_secs(10)).await?;
        ensure!(back == data, "echoed {:?}", String::from_utf8_lossy(&back));
        ensure!(self.echo.accepted() >= 1);
        Ok(())
    }
}

fn sshd_user() -> String {
    tunneld_tests::sshd::current_user().unwrap_or_else(|_| "root".into())
}

/// One call of the API, as a bad request sends it.
#[derive(Debug, Clone)]
enum Call {
    OpenLocal(OpenLocalForwardRequest),
    OpenRemote(OpenRemoteForwardRequest),
    Exec(ExecRequest),
    Close(CloseRequest),
    Watch(WatchRequest),
}

impl Call {
    /// Sends the call; `Ok` describes an unexpected success.
    async fn send(&self, client: &Client) -> Result<String, tonic::Status> {
        let mut c = client.clone();
        match self.clone() {
            Call::OpenLocal(r) => c.open_local_forward(r).await.map(|r| format!("{r:?}")),
            Call::OpenRemote(r) => c.open_remote_forward(r).await.map(|r| format!("{r:?}")),
            Call::Close(r) => c.close(r).await.map(|r| format!("{r:?}")),
            Call::Exec(r) => {
                let out = exec::run(client, r).await;
                match out.error {
                    Some(status) => Err(status),
                    None => Ok(out.to_string()),
                }
            }
            // A streaming call may fail at once or with its first message.
            Call::Watch(r) => {
                let mut stream = c.watch(r).await?.into_inner();
                match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                    Ok(Ok(first)) => Ok(format!("a stream, first message {first:?}")),
                    Ok(Err(status)) => Err(status),
                    Err(_) => Ok("a stream with no message within 5 s".into()),
                }
            }
        }
    }
}

/// Which daemon a bad request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// The bed's daemon.
    Main,
    /// A daemon without the right to bind privileged ports.
    Unprivileged,
}

/// A bad request and what it must get back.
#[derive(Debug)]
struct BadRequest {
    /// Short name, for failures and the docs.
    name: &'static str,
    on: On,
    call: Call,
    code: tonic::Code,
    /// Every one of these must appear in the status message.
    message: Vec<String>,
}

fn row(name: &'static str, call: Call, code: tonic::Code, message: &[&str]) -> BadRequest {
    BadRequest {
        name,
        on: On::Main,
        call,
        code,
        message: message.iter().map(|m| m.to_string()).collect(),
    }
}

/// A local forward from 127.0.0.1:`local_port` to 127.0.0.1:`remote_port`.
fn local(local_port: u32, remote_port: u32) -> OpenLocalForwardRequest {
    OpenLocalForwardRequest {
        local_port,
        remote_host: "127.0.0.1".into(),
        remote_port,
        ..Default::default()
    }
}

/// A remote forward from the server's `remote_port` to 127.0.0.1:`local_port`.
fn remote(remote_port: u32, local_port: u32) -> OpenRemoteForwardRequest {
    OpenRemoteForwardRequest {
        remote_port,
        local_host: "127.0.0.1".into(),
        local_port,
        ..Default::default()
    }
}

/// Exec of `echo ok` on `host`.
fn exec_on(host: &str) -> Call {
    Call::Exec(ExecRequest {
        host: host.into(),
        command: "echo ok".into(),
        ..Default::default()
    })
}

/// The table. `taken` is a port something listens on; `privileged` a port
/// the unprivileged daemon may not bind, when this machine has one.
fn bad_requests(b: &ErrorsBed, taken: u16, privileged: Option<u16>) -> Result<Vec<BadRequest>> {
    use tonic::Code;
    let echo = u32::from(b.echo.port());
    let sshd_port = b.bed.sshd.port().to_string();
    let dead = format!("127.0.0.1:{}", b.dead_port);
    let fingerprint = b.bed.sshd.host_key().fingerprint()?;
    let taken_s = taken.to_string();
    let mut rows = vec![
        // Ports out of range.
        row(
            "local_port 65536",
            Call::OpenLocal(local(65536, echo)),
            Code::InvalidArgument,
            &["local_port", "65536"],
        ),
        row(
            "local forward remote_port 0",
            Call::OpenLocal(local(0, 0)),
            Code::InvalidArgument,
            &["remote_port", "0"],
        ),
        row(
            "local forward remote_port 65536",
            Call::OpenLocal(local(0, 65536)),
            Code::InvalidArgument,
            &["remote_port", "65536"],
        ),
        row(
            "remote forward remote_port 65536",
            Call::OpenRemote(remote(65536, echo)),
            Code::InvalidArgument,
            &["remote_port", "65536"],
        ),
        row(
            "remote forward local_port 0",
            Call::OpenRemote(remote(0, 0)),
            Code::InvalidArgument,
            &["local_port", "0"],
        ),
        row(
            "remote forward local_port 65536",
            Call::OpenRemote(remote(0, 65536)),
            Code::InvalidArgument,
            &["local_port", "65536"],
        ),
        // Ports and addresses tunneld cannot listen on.
        row(
            "local port in use",
            Call::OpenLocal(local(taken.into(), echo)),
            Code::AlreadyExists,
            &[&taken_s],
        ),
        row(
            "bind address with a space",
            Call::OpenLocal(OpenLocalForwardRequest {
                bind_address: "127.0.0.1 x".into(),
                ..local(0, echo)
            }),
            Code::InvalidArgument,
            &["bind_address", "127.0.0.1 x"],
        ),
        row(
            "bind address that is not an IP address",
            Call::OpenLocal(OpenLocalForwardRequest {
                bind_address: "300.1.2.3".into(),
                ..local(0, echo)
            }),
            Code::InvalidArgument,
            &["bind_address", "300.1.2.3"],
        ),
        row(
            "bind address with a port in it",
            Call::OpenLocal(OpenLocalForwardRequest {
                bind_address: "127.0.0.1:8080".into(),
                ..local(0, echo)
            }),
            Code::InvalidArgument,
            &["bind_address", "127.0.0.1:8080"],
        ),
        row(
            "bind address beyond loopback, not allowed by default",
            Call::OpenLocal(OpenLocalForwardRequest {
                // TEST-NET-1 (RFC 5737): refused by policy before any bind.
                bind_address: "192.0.2.1".into(),
                ..local(0, echo)
            }),
            Code::PermissionDenied,
            &[
                "192.0.2.1",
                "allow_local_bind",
                "--allow-local-bind 192.0.2.1",
            ],
        ),
        row(
            "remote bind address with a space",
            Call::OpenRemote(OpenRemoteForwardRequest {
                remote_bind_address: "local host".into(),
                ..remote(0, echo)
            }),
            Code::InvalidArgument,
            &["remote_bind_address", "local host"],
        ),
        row(
            "remote forward refused by the server",
            Call::OpenRemote(OpenRemoteForwardRequest {
                host: "no-remote".into(),
                ..remote(0, echo)
            }),
            Code::PermissionDenied,
            &["no-remote", "localhost"],
        ),
        // Names and ids tunneld does not know.
        row(
            "unknown host name (Exec)",
            exec_on("no-such-host"),
            Code::NotFound,
            &["no-such-host"],
        ),
        row(
            "unknown host name (OpenLocalForward)",
            Call::OpenLocal(OpenLocalForwardRequest {
                host: "no-such-host".into(),
                ..local(0, echo)
            }),
            Code::NotFound,
            &["no-such-host"],
        ),
        row(
            "unknown host name (OpenRemoteForward)",
            Call::OpenRemote(OpenRemoteForwardRequest {
                host: "no-such-host".into(),
                ..remote(0, echo)
            }),
            Code::NotFound,
            &["no-such-host"],
        ),
        row(
            "unknown tunnel id (Close)",
            Call::Close(CloseRequest {
                id: "t-no-such-tunnel".into(),
            }),
            Code::NotFound,
            &["t-no-such-tunnel"],
        ),
        row(
            "unknown tunnel id (Watch)",
            Call::Watch(WatchRequest {
                tunnel_id: "t-no-such-tunnel".into(),
            }),
            Code::NotFound,
            &["t-no-such-tunnel"],
        ),
        row(
            "empty tunnel id (Close)",
            Call::Close(CloseRequest { id: String::new() }),
            Code::InvalidArgument,
            &["id"],
        ),
        // Commands.
        row(
            "empty command",
            Call::Exec(exec::request("")),
            Code::InvalidArgument,
            &["command"],
        ),
        row(
            "blank command",
            Call::Exec(exec::request("  \t")),
            Code::InvalidArgument,
            &["command"],
        ),
        row(
            "bad environment variable name",
            Call::Exec(ExecRequest {
                env: [("1BAD".to_string(), "x".to_string())].into(),
                ..exec::request("true")
            }),
            Code::InvalidArgument,
            &["1BAD"],
        ),
        // SSH servers tunneld cannot use.
        row(
            "SSH port with nothing listening",
            exec_on("unreachable"),
            Code::Unavailable,
            &[&dead],
        ),
        row(
            "identity not authorized",
            exec_on("unauthorized"),
            Code::FailedPrecondition,
            &["unauthorized", &sshd_port],
        ),
        row(
            "host key not in known_hosts",
            exec_on("unknown-key"),
            Code::FailedPrecondition,
            &["unknown-key", &fingerprint],
        ),
        row(
            "host key changed",
            exec_on("changed-key"),
            Code::FailedPrecondition,
            &["changed-key", &sshd_port, &fingerprint],
        ),
        row(
            "host key revoked",
            exec_on("revoked-key"),
            Code::FailedPrecondition,
            &["revoked-key", "@revoked", &fingerprint],
        ),
        row(
            "host key changed, policy accept-new",
            exec_on("accept-new-changed"),
            Code::FailedPrecondition,
            &["accept-new-changed", &sshd_port],
        ),
    ];
    if let Some(port) = privileged {
        rows.push(BadRequest {
            on: On::Unprivileged,
            ..row(
                "privileged port without the right",
                Call::OpenLocal(local(port.into(), echo)),
                Code::PermissionDenied,
                &[&port.to_string()],
            )
        });
    }
    Ok(rows)
}

/// Sends `req` and checks its code and message; returns the message.
async fn check(req: &BadRequest, client: &Client) -> Result<String> {
    let status = match req.call.send(client).await {
        Ok(success) => bail!("expected {:?}, got {success}", req.code),
        Err(status) => status,
    };
    ensure!(
        status.code() == req.code,
        "expected {:?}, got {:?}: {:?}",
        req.code,
        status.code(),
        status.message()
    );
    let missing: Vec<&String> = req
        .message
        .iter()
        .filter(|m| !status.message().contains(m.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "{:?} message {:?} does not name {missing:?}",
        req.code,
        status.message()
    );
    Ok(status.message().to_string())
}

/// A tunneld on `sshd` that may not bind ports below
/// `ip_unprivileged_port_start`, and such a port; `Err` says why this
/// machine cannot have one (the case is then skipped, loudly).
async fn unprivileged_daemon(
    sshd: &Sshd,
    dir: &std::path::Path,
) -> Result<Result<(Tunneld, u16), String>> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .context("reading ip_unprivileged_port_start")?
        .trim()
        .parse()
        .context("parsing ip_unprivileged_port_start")?;
    if start < 2 {
        return Ok(Err(format!(
            "net.ipv4.ip_unprivileged_port_start is {start}: every port is unprivileged here"
        )));
    }
    let port = start - 1;
    let bin = tokio::task::spawn_blocking(|| binaries::bin_path("tunneld"))
        .await
        .context("binary lookup task panicked")??;
    // CAP_NET_BIND_SERVICE is capability 10.
    let status = std::fs::read_to_string("/proc/self/status")?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .context("no CapEff in /proc/self/status")?;
    let daemon = if cap_eff & (1 << 10) == 0 {
        // Not privileged to begin with: the plain daemon will do.
        Tunneld::builder(sshd).start_binary(&bin).await?
    } else {
        // Root (CI): drop the capability from the bounding and inheritable
        // sets; as root, exec then grants every capability but that one.
        let probe = std::process::Command::new("setpriv")
            .args(["--bounding-set", "-net_bind_service", "--", "true"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Ok(Err(format!(
                    "setpriv cannot drop CAP_NET_BIND_SERVICE here: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Err(e) => return Ok(Err(format!("setpriv (util-linux) is not available: {e}"))),
        }
        let wrapper = dir.join("tunneld-without-net-bind-service");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec setpriv --bounding-set -net_bind_service \
                 --inh-caps -net_bind_service -- '{}' \"$@\"\n",
                bin.display()
            ),
        )?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Tunneld::builder(sshd).start_binary(&wrapper).await?
    };
    Ok(Ok((daemon, port)))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_its_code_and_message_and_the_old_tunnel_still_works() -> Result<()>
{
    e2e(async {
        let b = ErrorsBed::start().await?;
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let taken_port = taken.local_addr()?.port();
        let unprivileged = unprivileged_daemon(&b.bed.sshd, b.dir.path()).await?;
        let (daemon, privileged) = match unprivileged {
            Ok((daemon, port)) => (Some(daemon), Some(port)),
            Err(why) => {
                eprintln!("SKIPPED the privileged-port case: {why}");
                (None, None)
            }
        };
        let table = bad_requests(&b, taken_port, privileged)?;

        let mut failures = Vec::new();
        for req in &table {
            let client = match (req.on, &daemon) {
                (On::Unprivileged, Some(d)) => d.client(),
                _ => b.bed.client.clone(),
            };
            match check(req, &client).await {
                Ok(message) => eprintln!("{}: {:?}: {message}", req.name, req.code),
                Err(e) => failures.push(format!("{}: {e:#}", req.name)),
            }
        }
        if let (Some(d), Some(port)) = (&daemon, privileged) {
            ensure!(
                peers::port_is_free(port),
                "port {port} is bound after the refused open"
            );
            eprintln!("==== unprivileged tunneld stderr ====\n{}", d.log());
        }

        // One bad request never disturbs other tunnels, nor the host.
        b.tunnel_still_works()
            .await
            .context("the tunnel opened before the bad requests")?;
        exec::run_ok(&b.bed.client, "true")
            .await
            .context("Exec on the default host after the bad requests")?;
        ensure!(
            failures.is_empty(),
            "{} of {} bad requests got the wrong answer:\n{}",
            failures.len(),
            table.len(),
            failures.join("\n")
        );
        Ok(())
    })
    .await
}

// Hosts whose known_hosts is unusual but right: accepted.

#[tokio::test(flavor = "multi_thread")]
async fn hashed_known_hosts_is_accepted() -> Result<()> {
    e2e(async {
        let b = ErrorsBed::start().await?;
        b.exec_succeeds("hashed").await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_second_line_matching_is_accepted() -> Result<()> {
    e2e(async {
        let b = ErrorsBed::start().await?;
        b.exec_succeeds("second-line").await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_new_accepts_an_unknown_key() -> Result<()> {
    e2e(async {
        let b = ErrorsBed::start().await?;
        b.exec_succeeds("accept-new").await
    })
    .await
}

// What one request cannot show.

/// Watches one tunnel until a ConnectionClosed arrives; returns its error.
async fn next_connection_error(
    events: &mut tonic::Streaming<tunnel_proto::v1::WatchResponse>,
) -> Result<String> {
    let wait = async {
        while let Some(msg) = events.message().await.context("Watch")? {
            if let Some(watch_response::Event::ConnectionClosed(c)) = msg.event {
                return Ok(c.error);
            }
        }
        bail!("Watch ended without a ConnectionClosed")
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .context("no ConnectionClosed on Watch within 10 s")?
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_refuses_resets_the_connection_counts_it_failed_and_names_it() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let target = peers::refused_port()?;
        let target_addr = format!("127.0.0.1:{target}");
        let local_t = open_local(&bed.client, "", target).await?;
        let remote_t = open_remote(&bed.client, "", target)
            .await
            .context("OpenRemoteForward to a refusing target")?;
        for (t, port) in [
            (&local_t, local_port(&local_t)?),
            (&remote_t, remote_port(&remote_t)?),
        ] {
            let mut events = bed
                .client
                .clone()
                .watch(WatchRequest {
                    tunnel_id: t.id.clone(),
                })
                .await
                .context("Watch")?
                .into_inner();
            if let Some(mut s) = connect_expecting_close(port).await? {
                let _ = s.write_all(b"anyone there?").await;
                let got = expect_closed(&mut s, Duration::from_secs(10))
                    .await
                    .with_context(|| format!("{:?} forward to a refusing target", t.kind()))?;
                ensure!(got.is_empty(), "got {got:?} from a refusing target");
            }
            let error = next_connection_error(&mut events).await?;
            ensure!(
                error.contains(&target_addr),
                "{:?} forward: ConnectionClosed.error {error:?} does not name {target_addr}",
                t.kind()
            );
            poll_until(
                "the refused connection to be counted failed",
                Duration::from_secs(5),
                || async {
                    let c = find_tunnel(&bed.client, &t.id)
                        .await?
                        .context("tunnel vanished")?
                        .counters
                        .unwrap_or_default();
                    if c.failed_connections == 1 && c.active_connections == 0 {
                        Ok(Some(()))
                    } else {
                        bail!("{c:?}")
                    }
                },
            )
            .await?;
            eprintln!("{:?} forward, target refused: {error}", t.kind());
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_going_away_mid_exec_stops_the_command_and_nothing_else() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let port = local_port(&open_local(&bed.client, "", echo.port()).await?)?;
        let marker = format!("MARKER-{}", random_token());
        // A command that writes: closing its channel closes its pipes and
        // ends it, whether or not sshd delivers signals (root sessions).
        let mut stream = bed
            .client
            .clone()
            .exec(exec::request(format!(
                "while echo {marker}; do sleep 0.1; done"
            )))
            .await
            .context("starting the Exec")?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .context("no output from the running command")??;
        ensure!(first.is_some(), "the Exec ended at once");
        drop(stream);

        let pgrep = format!("pgrep -f '[{}]{}' || true", &marker[..1], &marker[1..]);
        poll_until(
            "the remote command to stop after its caller went away",
            Duration::from_secs(15),
            || async {
                let found = exec::run_ok(&bed.client, &pgrep).await?;
                if found.trim().is_empty() {
                    Ok(Some(()))
                } else {
                    bail!("still running: {}", found.trim())
                }
            },
        )
        .await?;
        let back = exchange(port, b"still here", Duration::from_secs(10)).await?;
        ensure!(back == b"still here", "echoed {back:?}");
        Ok(())
    })
    .await
}

/// Close is sent while the tunnels' SSH connection was just killed (round
/// "at once") and again once tunneld reports the tunnel RECONNECTING: each
/// answer is OK or NOT_FOUND within a bound, the tunnel leaves List and a
/// local forward's port is free. Then tunneld still opens working tunnels.
#[tokio::test(flavor = "multi_thread")]
async fn close_racing_with_a_reconnect_answers_and_frees_the_port() -> Result<()> {
    e2e(async {
        let bed = Bed::with(Sshd::start()?, |b| {
            b.arg("--reconnect-min")
                .arg("100ms")
                .arg("--reconnect-max")
                .arg("1s")
        })
        .await?;
        let echo = TcpPeer::echo().await?;
        for round in ["at once", "while RECONNECTING"] {
            let local_t = open_local(&bed.client, "", echo.port()).await?;
            let remote_t = open_remote(&bed.client, "", echo.port())
                .await
                .context("OpenRemoteForward")?;
            let port = local_port(&local_t)?;
            let back = exchange(port, b"before", Duration::from_secs(10)).await?;
            ensure!(back == b"before", "{round}: echoed {back:?}");
            let mut events = bed
                .client
                .clone()
                .watch(WatchRequest {
                    tunnel_id: local_t.id.clone(),
                })
                .await
                .context("Watch")?
                .into_inner();

            let killed = bed.sshd.kill_connections()?;
            ensure!(killed >= 1, "{round}: no SSH connection to kill");
            if round == "while RECONNECTING" {
                let reconnecting = async {
                    while let Some(msg) = events.message().await? {
                        if let Some(watch_response::Event::Tunnel(t)) = msg.event
                            && t.state == TunnelState::Reconnecting as i32
                        {
                            return anyhow::Ok(());
                        }
                    }
                    bail!("Watch ended before the tunnel was RECONNECTING")
                };
                tokio::time::timeout(Duration::from_secs(10), reconnecting)
                    .await
                    .with_context(|| format!("{round}: no RECONNECTING on Watch"))??;
            }
            let started = Instant::now();
            for t in [&local_t, &remote_t] {
                let res = tokio::time::timeout(
                    Duration::from_secs(10),
                    bed.client.clone().close(CloseRequest { id: t.id.clone() }),
                )
                .await
                .with_context(|| format!("{round}: Close({}) hung", t.id))?;
                if let Err(status) = res {
                    ensure!(
                        status.code() == tonic::Code::NotFound,
                        "{round}: Close({}) got {:?}: {}",
                        t.id,
                        status.code(),
                        status.message()
                    );
                }
            }
            let took = started.elapsed();
            poll_until(
                &format!("{round}: local port {port} to be free"),
                Duration::from_secs(5),
                || async { Ok(peers::port_is_free(port).then_some(())) },
            )
            .await?;
            let left: Vec<String> = list(&bed.client)
                .await?
                .tunnels
                .into_iter()
                .map(|t| t.id)
                .filter(|id| *id == local_t.id || *id == remote_t.id)
                .collect();
            ensure!(
                left.is_empty(),
                "{round}: still listed after Close: {left:?}"
            );
            eprintln!("Close racing with a reconnect ({round}): both answered in {took:?}");
        }
        let t = open_local(&bed.client, "", echo.port()).await?;
        let back = exchange(local_port(&t)?, b"after", Duration::from_secs(20)).await?;
        ensure!(back == b"after", "echoed {back:?}");
        Ok(())
    })
    .await
}

/// A server with several host keys, of which known_hosts lists only the
/// ECDSA one: as OpenSSH's client, tunneld offers the known key type first,
/// so the server proves the key we can verify instead of its ed25519 key.
#[tokio::test(flavor = "multi_thread")]
async fn a_known_key_type_is_preferred_over_other_host_keys() -> Result<()> {
    e2e(async {
        let extra = TempDir::new()?;
        let ecdsa = keys::generate(extra.path(), "host_ecdsa", KeyType::Ecdsa)?;
        let sshd = Sshd::builder()
            .config("HostKey {dir}/host_ed25519")
            .config(format!("HostKey {}", ecdsa.private.display()))
            .start()?;
        let only_ecdsa = extra.path().join("known_hosts");
        keys::write_known_hosts(&only_ecdsa, &[keys::known_hosts_line(sshd.port(), &ecdsa)?])?;
        let host = HostSpec::from_sshd(&sshd).with_known_hosts(&only_ecdsa);
        let bed = Bed::with(sshd, |b| b.host("ecdsa-known", host)).await?;
        let out = exec::run(
            &bed.client,
            ExecRequest {
                host: "ecdsa-known".into(),
                command: "echo verified".into(),
                ..Default::default()
            },
        )
        .await;
        ensure!(
            out.code()? == 0 && out.stdout_text() == "verified\n",
            "{out}"
        );
        Ok(())
    })
    .await
}
