//! Errors a user can run into, each with its gRPC code and a message naming
//! the host, address or port concerned — and a daemon that keeps working
//! after all of them.
//!
//! One bed serves every case: a daemon whose named config hosts point at the
//! same sshd with a broken identity or known_hosts each, plus a second sshd
//! that refuses remote forwarding. Each case is its own test (precise
//! failures), and one more test runs them all on one daemon and then checks
//! that a tunnel opened before them still carries bytes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tunnel_proto::v1::{ExecRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest};
use tunneld_tests::keys::{self, KeyType};
use tunneld_tests::peers::{self, TcpPeer};
use tunneld_tests::{HostSpec, Sshd, exec};

use crate::forward_remote::open_remote;
use crate::support::{Bed, e2e, exchange, expect_status, local_port, open_local};

/// The shared setup of the error cases.
struct ErrorsBed {
    bed: Bed,
    /// An sshd with `AllowTcpForwarding local`, known as host `no-remote`.
    strict_sshd: Sshd,
    /// Port where nothing listens, used by host `unreachable`.
    dead_port: u16,
    /// Holds the extra keys and known_hosts files.
    _dir: TempDir,
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
            strict_sshd,
            dead_port,
            _dir: dir,
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

    /// Exec on `host` fails with `code` and a message naming one of `needles`.
    async fn exec_fails(
        &self,
        host: &str,
        code: tonic::Code,
        needles: &[&str],
    ) -> Result<tonic::Status> {
        let out = self.exec_on(host).await;
        let res = match out.error {
            Some(e) => Err(e),
            None => Ok(out.to_string()),
        };
        expect_status(&format!("Exec on host {host:?}"), res, code, needles)
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

    fn sshd_address(&self) -> String {
        format!("127.0.0.1:{}", self.bed.sshd.port())
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

type Case = for<'a> fn(&'a ErrorsBed) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Every case, by name, for the all-on-one-daemon test.
const CASES: &[(&str, Case)] = &[
    ("unreachable", |b| Box::pin(unreachable_ssh_port(b))),
    ("unauthorized", |b| Box::pin(unauthorized_identity(b))),
    ("unknown-key", |b| Box::pin(unknown_host_key(b))),
    ("changed-key", |b| Box::pin(changed_host_key(b))),
    ("revoked-key", |b| Box::pin(revoked_host_key(b))),
    ("hashed", |b| Box::pin(hashed_known_hosts(b))),
    ("second-line", |b| Box::pin(second_line_matches(b))),
    ("accept-new", |b| Box::pin(accept_new_policy(b))),
    ("port-in-use", |b| Box::pin(local_port_in_use(b))),
    ("remote-refused", |b| Box::pin(remote_forward_refused(b))),
    ("bad-ports", |b| Box::pin(bad_ports(b))),
    ("empty-command", |b| Box::pin(empty_command(b))),
    ("unknown-host", |b| Box::pin(unknown_host(b))),
];

async fn unreachable_ssh_port(b: &ErrorsBed) -> Result<()> {
    let addr = format!("127.0.0.1:{}", b.dead_port);
    b.exec_fails("unreachable", tonic::Code::Unavailable, &[&addr])
        .await?;
    Ok(())
}

async fn unauthorized_identity(b: &ErrorsBed) -> Result<()> {
    b.exec_fails(
        "unauthorized",
        tonic::Code::FailedPrecondition,
        &["unauthorized", &b.sshd_address()],
    )
    .await?;
    Ok(())
}

async fn unknown_host_key(b: &ErrorsBed) -> Result<()> {
    let fingerprint = b.bed.sshd.host_key().fingerprint()?;
    b.exec_fails(
        "unknown-key",
        tonic::Code::FailedPrecondition,
        &[&fingerprint],
    )
    .await?;
    Ok(())
}

async fn changed_host_key(b: &ErrorsBed) -> Result<()> {
    b.exec_fails(
        "changed-key",
        tonic::Code::FailedPrecondition,
        &["changed-key", &b.sshd_address()],
    )
    .await?;
    Ok(())
}

async fn revoked_host_key(b: &ErrorsBed) -> Result<()> {
    b.exec_fails(
        "revoked-key",
        tonic::Code::FailedPrecondition,
        &["revoked-key", &b.sshd_address()],
    )
    .await?;
    Ok(())
}

async fn hashed_known_hosts(b: &ErrorsBed) -> Result<()> {
    b.exec_succeeds("hashed").await
}

async fn second_line_matches(b: &ErrorsBed) -> Result<()> {
    b.exec_succeeds("second-line").await
}

async fn accept_new_policy(b: &ErrorsBed) -> Result<()> {
    b.exec_succeeds("accept-new")
        .await
        .context("accept-new with an unknown host key")?;
    b.exec_fails(
        "accept-new-changed",
        tonic::Code::FailedPrecondition,
        &["accept-new-changed", &b.sshd_address()],
    )
    .await
    .context("accept-new with a changed host key")?;
    Ok(())
}

async fn local_port_in_use(b: &ErrorsBed) -> Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let res = b
        .bed
        .client
        .clone()
        .open_local_forward(OpenLocalForwardRequest {
            local_port: port.into(),
            remote_host: "127.0.0.1".into(),
            remote_port: b.echo.port().into(),
            ..Default::default()
        })
        .await;
    expect_status(
        "OpenLocalForward on a taken port",
        res,
        tonic::Code::AlreadyExists,
        &[&port.to_string()],
    )?;
    Ok(())
}

async fn remote_forward_refused(b: &ErrorsBed) -> Result<()> {
    let res = open_remote(&b.bed.client, "no-remote", b.echo.port()).await;
    let addr = format!("127.0.0.1:{}", b.strict_sshd.port());
    expect_status(
        "OpenRemoteForward on a server with AllowTcpForwarding local",
        res,
        tonic::Code::PermissionDenied,
        &["no-remote", &addr, "localhost"],
    )?;
    Ok(())
}

async fn bad_ports(b: &ErrorsBed) -> Result<()> {
    let local = |local_port: u32, remote_port: u32| OpenLocalForwardRequest {
        local_port,
        remote_host: "127.0.0.1".into(),
        remote_port,
        ..Default::default()
    };
    let echo = u32::from(b.echo.port());
    let mut c = b.bed.client.clone();
    let res = c.open_local_forward(local(70000, echo)).await;
    expect_status(
        "local_port 70000",
        res,
        tonic::Code::InvalidArgument,
        &["70000"],
    )?;
    let res = c.open_local_forward(local(0, 70000)).await;
    expect_status(
        "remote_port 70000",
        res,
        tonic::Code::InvalidArgument,
        &["70000"],
    )?;
    let res = c.open_local_forward(local(0, 0)).await;
    expect_status(
        "local forward with remote_port 0",
        res,
        tonic::Code::InvalidArgument,
        &["port"],
    )?;
    let res = c
        .open_remote_forward(OpenRemoteForwardRequest {
            remote_port: 70000,
            local_host: "127.0.0.1".into(),
            local_port: echo,
            ..Default::default()
        })
        .await;
    expect_status(
        "remote forward with remote_port 70000",
        res,
        tonic::Code::InvalidArgument,
        &["70000"],
    )?;
    let res = c
        .open_remote_forward(OpenRemoteForwardRequest {
            remote_port: 0,
            local_host: "127.0.0.1".into(),
            local_port: 0,
            ..Default::default()
        })
        .await;
    expect_status(
        "remote forward with local_port 0",
        res,
        tonic::Code::InvalidArgument,
        &["port"],
    )?;
    Ok(())
}

async fn empty_command(b: &ErrorsBed) -> Result<()> {
    let out = exec::run(&b.bed.client, exec::request("")).await;
    let res = match out.error {
        Some(e) => Err(e),
        None => Ok(out.to_string()),
    };
    expect_status(
        "Exec with an empty command",
        res,
        tonic::Code::InvalidArgument,
        &["command"],
    )?;
    Ok(())
}

async fn unknown_host(b: &ErrorsBed) -> Result<()> {
    b.exec_fails("no-such-host", tonic::Code::NotFound, &["no-such-host"])
        .await?;
    let res = b
        .bed
        .client
        .clone()
        .open_local_forward(OpenLocalForwardRequest {
            host: "no-such-host".into(),
            remote_host: "127.0.0.1".into(),
            remote_port: b.echo.port().into(),
            ..Default::default()
        })
        .await;
    expect_status(
        "OpenLocalForward on an unknown host",
        res,
        tonic::Code::NotFound,
        &["no-such-host"],
    )?;
    Ok(())
}

/// Runs one case on a fresh bed, then checks the bed's tunnel still works.
async fn one(case: Case) -> Result<()> {
    e2e(async {
        let b = ErrorsBed::start().await?;
        case(&b).await?;
        b.tunnel_still_works().await.context("after the error")
    })
    .await
}

macro_rules! case_tests {
    ($($name:ident => $case:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() -> Result<()> {
            one(|b| Box::pin($case(b))).await
        }
    )*};
}

case_tests! {
    ssh_port_with_nothing_listening_is_unavailable => unreachable_ssh_port,
    identity_not_authorized_is_failed_precondition => unauthorized_identity,
    unknown_host_key_is_failed_precondition_with_fingerprint => unknown_host_key,
    changed_host_key_is_failed_precondition => changed_host_key,
    revoked_host_key_is_failed_precondition => revoked_host_key,
    hashed_known_hosts_is_accepted => hashed_known_hosts,
    only_the_second_line_matching_is_accepted => second_line_matches,
    accept_new_accepts_unknown_but_not_changed_keys => accept_new_policy,
    local_port_in_use_is_already_exists => local_port_in_use,
    remote_forward_refused_by_server_is_permission_denied => remote_forward_refused,
    out_of_range_and_missing_ports_are_invalid_argument => bad_ports,
    empty_command_is_invalid_argument => empty_command,
    unknown_host_name_is_not_found => unknown_host,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_on_one_daemon_then_the_old_tunnel_still_works() -> Result<()> {
    e2e(async {
        let b = ErrorsBed::start().await?;
        let mut failures = Vec::new();
        for (name, case) in CASES {
            if let Err(e) = case(&b).await {
                failures.push(format!("{name}: {e:#}"));
            }
        }
        b.tunnel_still_works()
            .await
            .context("after every error case")?;
        exec::run_ok(&b.bed.client, "true")
            .await
            .context("Exec on the default host after every error case")?;
        ensure!(
            failures.is_empty(),
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
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
