//! Jump hosts (`--jump`, `proxy_jump`, as `ssh -J`): an inner sshd that
//! listens only on 127.0.0.2 (or .3), reached through an sshd on 127.0.0.1
//! whose log (`LogLevel DEBUG1`) shows the `direct-tcpip` it opened to the
//! inner one: proof that the route went through it. Exec and both kinds of
//! forward work through the route, losing the jump host is losing the
//! target (tunneld reconnects through the jump host and the tunnels are
//! restored), a route may have two hops, and refusals name the hop.
//!
//! Every hop uses the default host's identity and known_hosts, as `ssh -J`
//! uses its defaults for a hop its config says nothing about: the jump
//! sshd's key is authorized on every server of a route and one known_hosts
//! file lists them all.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tunnel_proto::v1::{SshConnectionState, Tunnel, TunnelState};
use tunneld_tests::ctl::Ctl;
use tunneld_tests::data::random_bytes;
use tunneld_tests::exec::{request, run, run_ok};
use tunneld_tests::keys;
use tunneld_tests::peers::{TcpPeer, refused_port};
use tunneld_tests::{HostSpec, Sshd, Tunneld, TunneldBuilder};

use crate::forward_remote::open_remote;
use crate::reconnect::{
    default_host, digest_ok, echo_ok, fast_reconnect, host_state, tunnel, until_traffic,
};
use crate::support::{
    IO_TIMEOUT, e2e, expect_status, list, local_port, open_local, remote_port, tail,
};

/// Bound on traffic flowing again after the jump host's connections were
/// killed (`--reconnect-min 200ms --reconnect-max 2s`, and three handshakes
/// per attempt).
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

/// A jump sshd logging at DEBUG1, so its log names each `direct-tcpip`
/// target.
fn jump_sshd() -> Result<Sshd> {
    Sshd::builder().config("LogLevel DEBUG1").start()
}

/// An sshd listening only on `ip`, which lets `via`'s user key in.
fn inner_sshd(ip: Ipv4Addr, via: &Sshd) -> Result<Sshd> {
    let sshd = Sshd::builder()
        .config("LogLevel DEBUG1")
        .listen_ip(ip)
        .start()?;
    sshd.authorize(via.identity_pair())?;
    Ok(sshd)
}

/// An echo peer behind a local forward and a digest peer behind a remote
/// forward of the default host: the peers (kept alive by the caller) and
/// the two tunnels.
async fn forwards_to_peers(
    client: &tunneld_tests::Client,
) -> Result<((TcpPeer, TcpPeer), Tunnel, Tunnel)> {
    let echo = TcpPeer::echo().await?;
    let digest = TcpPeer::digest().await?;
    let local = open_local(client, "", echo.port()).await?;
    let remote = open_remote(client, "", digest.port())
        .await
        .context("OpenRemoteForward")?;
    Ok(((echo, digest), local, remote))
}

/// A known_hosts file with the lines of all `servers`.
fn known_hosts(dir: &TempDir, servers: &[&Sshd]) -> Result<PathBuf> {
    let path = dir.path().join("known_hosts");
    let lines: Vec<String> = servers.iter().map(|s| s.host_key_line()).collect();
    keys::write_known_hosts(&path, &lines)?;
    Ok(path)
}

/// Whether `jump`'s log shows a `direct-tcpip` channel to `target`, as
/// OpenSSH logs it at DEBUG1; `count` of them at least.
fn forwarded_to(jump: &Sshd, target: &Sshd, count: usize) -> Result<()> {
    let needle = format!("target {} port {}", target.ip(), target.port());
    let log = jump.log();
    let seen = log
        .lines()
        .filter(|l| l.contains("direct_tcpip") && l.contains(&needle))
        .count();
    ensure!(
        seen >= count,
        "the jump sshd's log shows {seen} direct-tcpip channel(s) to {needle:?}, expected \
         {count}:\n{}",
        tail(&log, 40)
    );
    Ok(())
}

/// A jump sshd on 127.0.0.1, an inner one on 127.0.0.2, and tunneld whose
/// default host is the inner one reached with `--jump`.
struct JumpBed {
    daemon: Tunneld,
    inner: Sshd,
    jump: Sshd,
    _dir: TempDir,
}

impl JumpBed {
    async fn start(configure: impl FnOnce(TunneldBuilder) -> TunneldBuilder) -> Result<JumpBed> {
        let jump = jump_sshd()?;
        let inner = inner_sshd(Ipv4Addr::new(127, 0, 0, 2), &jump)?;
        let dir = tempfile::tempdir()?;
        let spec = HostSpec::from_sshd(&inner)
            .with_identity(jump.identity())
            .with_known_hosts(known_hosts(&dir, &[&jump, &inner])?)
            .with_jump(&[jump.address()]);
        let daemon = configure(TunneldBuilder::new(spec)).start().await?;
        Ok(JumpBed {
            daemon,
            inner,
            jump,
            _dir: dir,
        })
    }
}

impl Drop for JumpBed {
    fn drop(&mut self) {
        eprintln!(
            "==== tunneld stderr (last lines) ====\n{}",
            tail(&self.daemon.log(), 150)
        );
        eprintln!("==== jump sshd log ====\n{}", tail(&self.jump.log(), 40));
        eprintln!("==== inner sshd log ====\n{}", tail(&self.inner.log(), 40));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_and_forwards_go_through_the_jump_host() -> Result<()> {
    e2e(async {
        let bed = JumpBed::start(|b| b).await?;
        let client = bed.daemon.client();

        // The command runs on the inner server, reached through the jump one.
        let seen = run_ok(&client, "echo $SSH_CONNECTION").await?;
        let fields: Vec<&str> = seen.split_whitespace().collect();
        ensure!(
            fields.get(2..4) == Some(&["127.0.0.2", &bed.inner.port().to_string()][..]),
            "the command ran on {seen:?}, not on the inner sshd 127.0.0.2:{}",
            bed.inner.port()
        );
        forwarded_to(&bed.jump, &bed.inner, 1)?;

        let (_peers, local, remote) = forwards_to_peers(&client).await?;
        let (lport, rport) = (local_port(&local)?, remote_port(&remote)?);
        let data = random_bytes(1 << 20);
        echo_ok(lport, &data, IO_TIMEOUT).await?;
        digest_ok(rport, &data, IO_TIMEOUT).await?;
        // The remote forward listens on the inner server: its connection
        // process is a child of the inner sshd, not the jump's.
        ensure!(
            bed.inner.connection_count() >= 1,
            "no connection on the inner sshd"
        );

        // List and `tunnelctl hosts` show the route.
        let host = default_host(&client).await?;
        ensure!(
            host.via == [bed.jump.address()] && host.address == bed.inner.address(),
            "List shows the default host as {:?} via {:?}",
            host.address,
            host.via
        );
        let out = Ctl::new(bed.daemon.api_addr())?.run(["hosts"]).await?;
        out.success()?;
        let expected = format!("{} via {}", bed.inner.address(), bed.jump.address());
        ensure!(
            out.stdout_text().contains(&expected),
            "`tunnelctl hosts` does not show {expected:?}:\n{}",
            out.stdout_text()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_jump_host_reconnects_through_it_and_restores_the_tunnels() -> Result<()> {
    e2e(async {
        let bed = JumpBed::start(fast_reconnect).await?;
        let client = bed.daemon.client();
        let (_peers, local, remote) = forwards_to_peers(&client).await?;
        let (lport, rport) = (local_port(&local)?, remote_port(&remote)?);
        let data = random_bytes(256 * 1024);
        echo_ok(lport, &data, IO_TIMEOUT).await?;
        digest_ok(rport, &data, IO_TIMEOUT).await?;
        forwarded_to(&bed.jump, &bed.inner, 1)?;

        // Only the jump host's connections die; the inner sshd stays up.
        let killed = bed.jump.kill_connections()?;
        ensure!(killed >= 1, "no jump sshd connection to kill");
        let (local_took, remote_took) = tokio::join!(
            until_traffic("the local forward to carry again", RECOVERY_BOUND, || {
                echo_ok(lport, &data, Duration::from_secs(5))
            }),
            until_traffic("the remote forward to carry again", RECOVERY_BOUND, || {
                digest_ok(rport, &data, Duration::from_secs(5))
            }),
        );
        eprintln!(
            "recovery after the jump host's connections died: local {} ms, remote {} ms",
            local_took?.as_millis(),
            remote_took?.as_millis()
        );
        // The new connection went through the jump host again.
        forwarded_to(&bed.jump, &bed.inner, 2)?;
        for t in [&local, &remote] {
            let after = tunnel(&client, &t.id).await?;
            ensure!(
                after.state == TunnelState::Open as i32 && after.restores == 1,
                "tunnel {} is {:?} with {} restores after the jump host came back",
                after.id,
                after.state_detail,
                after.restores
            );
        }
        let host = default_host(&client).await?;
        ensure!(
            host.state == SshConnectionState::Connected as i32,
            "host is {} after traffic flows again",
            host_state(host.state)
        );
        // The loss was put down to the jump host.
        let log = bed.daemon.log();
        ensure!(
            log.contains("lost jump host"),
            "tunneld's log does not say the jump host was lost:\n{}",
            tail(&log, 40)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_of_two_hops_in_the_config_file() -> Result<()> {
    e2e(async {
        let first = jump_sshd()?;
        let second = inner_sshd(Ipv4Addr::new(127, 0, 0, 2), &first)?;
        let target = inner_sshd(Ipv4Addr::new(127, 0, 0, 3), &first)?;
        let dir = tempfile::tempdir()?;
        let known_hosts = known_hosts(&dir, &[&first, &second, &target])?;
        let default = HostSpec::from_sshd(&first).with_known_hosts(&known_hosts);
        let deep = HostSpec::from_sshd(&target)
            .with_identity(first.identity())
            .with_known_hosts(&known_hosts)
            .with_jump(&[first.address(), second.address()]);
        let daemon = TunneldBuilder::new(default)
            .host("deep", deep)
            .start()
            .await?;
        let client = daemon.client();
        let check = async {
            let mut req = request("echo $SSH_CONNECTION");
            req.host = "deep".into();
            let out = run(&client, req).await;
            ensure!(out.code()? == 0, "exec on deep: {out}");
            let seen = out.stdout_text();
            ensure!(
                seen.split_whitespace().nth(2) == Some("127.0.0.3"),
                "the command ran on {seen:?}, not on 127.0.0.3"
            );
            forwarded_to(&first, &second, 1)?;
            forwarded_to(&second, &target, 1)?;

            let echo = TcpPeer::echo().await?;
            let local = open_local(&client, "deep", echo.port()).await?;
            echo_ok(local_port(&local)?, &random_bytes(512 * 1024), IO_TIMEOUT).await?;

            let deep = list(&client)
                .await?
                .hosts
                .into_iter()
                .find(|h| h.name == "deep")
                .context("List shows no host deep")?;
            ensure!(
                deep.via == [first.address(), second.address()],
                "List shows deep via {:?}",
                deep.via
            );
            Ok(())
        };
        let result = check.await;
        if result.is_err() {
            eprintln!("==== tunneld ====\n{}", tail(&daemon.log(), 100));
            eprintln!("==== first ====\n{}", tail(&first.log(), 30));
            eprintln!("==== second ====\n{}", tail(&second.log(), 30));
        }
        result
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_name_the_hop() -> Result<()> {
    e2e(async {
        let jump = jump_sshd()?;
        let no_forwarding = Sshd::builder().config("AllowTcpForwarding no").start()?;
        let inner = inner_sshd(Ipv4Addr::new(127, 0, 0, 2), &jump)?;
        no_forwarding.authorize(jump.identity_pair())?;
        let dir = tempfile::tempdir()?;
        // The inner host's line carries another server's key; the jump
        // hosts' lines are right (hops use the flags' known_hosts: this one).
        let wrong = dir.path().join("wrong_known_hosts");
        keys::write_known_hosts(
            &wrong,
            &[
                jump.host_key_line(),
                no_forwarding.host_key_line(),
                keys::known_hosts_line_at("127.0.0.2", inner.port(), jump.host_key())?,
            ],
        )?;
        let good = known_hosts(&dir, &[&jump, &no_forwarding, &inner])?;
        let dead = refused_port()?;
        let dead_hop = format!("{}@127.0.0.1:{dead}", jump.user());
        let spec = |known_hosts: &PathBuf, hop: String| {
            HostSpec::from_sshd(&inner)
                .with_identity(jump.identity())
                .with_known_hosts(known_hosts)
                .with_jump(&[hop])
        };
        let daemon = TunneldBuilder::new(spec(&wrong, jump.address()))
            .host("unreachable", spec(&good, dead_hop.clone()))
            .host("prohibited", spec(&good, no_forwarding.address()))
            .start()
            .await?;
        let client = daemon.client();

        let on = |host: &str| {
            let mut req = request("true");
            req.host = host.into();
            let client = client.clone();
            async move {
                let out = run(&client, req).await;
                match out.error.clone() {
                    Some(status) => Err(status),
                    None => Ok(out.to_string()),
                }
            }
        };
        let inner_name = format!("[127.0.0.2]:{}", inner.port());
        expect_status(
            "a wrong host key on the inner host",
            on("").await,
            tonic::Code::FailedPrecondition,
            &[&format!(
                "HOST KEY CHANGED for {inner_name} (host \"default\")"
            )],
        )?;
        expect_status(
            "an unreachable jump host",
            on("unreachable").await,
            tonic::Code::Unavailable,
            &[&format!(
                "cannot reach SSH server 127.0.0.1:{dead} (host \"{dead_hop}\")"
            )],
        )?;
        expect_status(
            "a jump host that may not forward",
            on("prohibited").await,
            tonic::Code::PermissionDenied,
            &[&format!(
                "jump host \"{}\" refused to forward to 127.0.0.2:{} (on the way to host \
                 \"prohibited\"): administratively prohibited",
                no_forwarding.address(),
                inner.port()
            )],
        )?;
        Ok(())
    })
    .await
}
