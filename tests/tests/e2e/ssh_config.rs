//! Hosts from the user's own OpenSSH client configuration: `tunneld --ssh
//! ALIAS --ssh-config FILE` and nothing else reaches the host `ssh -F FILE
//! ALIAS` reaches (user, port, key, known_hosts all from the file), for
//! exec and both forwards; `StrictHostKeyChecking no` is refused at start
//! naming tunneld's own flag; `--ssh-config-hosts` lets requests name the
//! file's other aliases, and only with it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::process::Command;
use tunnel_proto::v1::ExecRequest;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{HttpPeer, TcpPeer, http_get};
use tunneld_tests::{HostSpec, Sshd, TunneldBuilder, exec};

use crate::forward_remote::open_remote;
use crate::support::{Bed, e2e, exchange, expect_status, local_port, open_local, remote_port};

/// An ssh_config whose `alias` is `sshd` with its key and known_hosts, by
/// absolute paths (OpenSSH expands `~` from the passwd entry, not $HOME).
fn write_config(sshd: &Sshd, path: &Path, alias: &str, extra: &str) -> Result<()> {
    let text = format!(
        "# written by the test\n\
         Host {alias}\n\
         \x20   HostName 127.0.0.1\n\
         \x20   Port {port}\n\
         \x20   User {user}\n\
         \x20   IdentityFile {identity}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   UserKnownHostsFile {known_hosts}\n\
         \x20   StrictHostKeyChecking yes\n\
         {extra}\n\
         Host *\n\
         \x20   ServerAliveInterval 5\n",
        port = sshd.port(),
        user = sshd.user(),
        identity = sshd.identity().display(),
        known_hosts = sshd.known_hosts().display(),
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// `ssh -F config alias cmd`: the oracle.
async fn ssh_alias(config: &Path, alias: &str, cmd: &str) -> Result<std::process::Output> {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes", alias, cmd])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running ssh")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alias_alone_works_for_exec_and_both_forwards_like_ssh() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("ssh_config");
        write_config(&sshd, &config, "db-bastion", "")?;

        let out = ssh_alias(&config, "db-bastion", "echo via-ssh").await?;
        ensure!(
            out.status.success() && out.stdout == b"via-ssh\n",
            "ssh -F {} db-bastion: {:?}",
            config.display(),
            out
        );

        let daemon = TunneldBuilder::new(HostSpec::alias("db-bastion"))
            .ssh_config(&config)
            .start()
            .await?;
        let bed = Bed::adopt(daemon, sshd);
        let out = exec::run(&bed.client, exec::request("echo via-tunneld; exit 7")).await;
        ensure!(
            out.code()? == 7 && out.stdout_text() == "via-tunneld\n",
            "exec through the alias: {out}"
        );

        // Local forward: 1 MiB to an echo server, hashed.
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let data = random_bytes(1 << 20);
        let back = exchange(local_port(&tunnel)?, &data, Duration::from_secs(30)).await?;
        ensure!(
            sha256_hex(&back) == sha256_hex(&data),
            "the local forward through the alias changed the bytes"
        );

        // Remote forward to an HTTP server on this side.
        let http = HttpPeer::start("served through the alias").await?;
        let tunnel = open_remote(&bed.client, "", http.port()).await?;
        let (status, body) =
            http_get(&format!("http://127.0.0.1:{}/", remote_port(&tunnel)?)).await?;
        ensure!(
            status == 200 && body == "served through the alias",
            "remote forward through the alias: {status} {body:?}"
        );
        let log = bed.daemon.log();
        ensure!(
            log.contains("SSH connection established"),
            "tunneld's log shows no connection:\n{log}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_host_key_checking_no_is_refused_at_start_naming_the_flag() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host lax\n  HostName 127.0.0.1\n  Port {}\n  StrictHostKeyChecking no\n",
                sshd.port()
            ),
        )?;
        let refused = TunneldBuilder::new(HostSpec::alias("lax"))
            .ssh_config(&config)
            .start_refused()
            .await?;
        ensure!(
            refused.status.code() == Some(2)
                && refused.stderr.contains("StrictHostKeyChecking")
                && refused.stderr.contains("--host-key-policy"),
            "tunneld exited {} with:\n{}",
            refused.status,
            refused.stderr
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_config_hosts_lets_requests_name_other_aliases_only_when_on() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("ssh_config");
        write_config(
            &sshd,
            &config,
            "main-alias",
            &format!(
                "Host other-alias\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n",
                sshd.port(),
                sshd.user(),
                sshd.identity().display(),
                sshd.known_hosts().display()
            ),
        )?;
        let on_other = || ExecRequest {
            host: "other-alias".into(),
            ..exec::request("echo other")
        };

        let off = TunneldBuilder::new(HostSpec::alias("main-alias"))
            .ssh_config(&config)
            .start()
            .await?;
        let out = exec::run(&off.client(), on_other()).await;
        expect_status::<()>(
            "an alias without --ssh-config-hosts",
            Err(out.error.context("exec on other-alias succeeded without --ssh-config-hosts")?),
            tonic::Code::NotFound,
            &["other-alias"],
        )?;
        drop(off);

        let on = TunneldBuilder::new(HostSpec::alias("main-alias"))
            .ssh_config(&config)
            .arg("--ssh-config-hosts")
            .start()
            .await?;
        let out = exec::run(&on.client(), on_other()).await;
        ensure!(
            out.code()? == 0 && out.stdout_text() == "other\n",
            "exec on other-alias with --ssh-config-hosts: {out}"
        );
        drop(on);
        drop(sshd);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_jump_in_ssh_config_routes_through_the_jump_alias_like_ssh() -> Result<()> {
    e2e(async {
        let jump = Sshd::builder().config("LogLevel DEBUG1").start()?;
        let inner = Sshd::builder()
            .listen_ip(std::net::Ipv4Addr::new(127, 0, 0, 2))
            .start()?;
        inner.authorize(jump.identity_pair())?;
        let dir = tempfile::tempdir()?;
        let known_hosts = dir.path().join("known_hosts");
        tunneld_tests::keys::write_known_hosts(
            &known_hosts,
            &[jump.host_key_line(), inner.host_key_line()],
        )?;
        let config = dir.path().join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host bastion\n  HostName 127.0.0.1\n  Port {jport}\n\n\
                 Host db-inner\n  HostName 127.0.0.2\n  Port {iport}\n  ProxyJump bastion\n\n\
                 Host *\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n",
                jport = jump.port(),
                iport = inner.port(),
                user = jump.user(),
                key = jump.identity().display(),
                kh = known_hosts.display(),
            ),
        )?;
        let out = ssh_alias(&config, "db-inner", "echo via-ssh").await?;
        ensure!(
            out.status.success() && out.stdout == b"via-ssh\n",
            "ssh -F {} db-inner: {:?}",
            config.display(),
            out
        );
        let seen_by_ssh = jump.log().matches("target 127.0.0.2").count();
        ensure!(seen_by_ssh >= 1, "ssh did not go through the jump sshd");

        let daemon = TunneldBuilder::new(HostSpec::alias("db-inner"))
            .ssh_config(&config)
            .start()
            .await?;
        let out = exec::run(&daemon.client(), exec::request("echo via-tunneld")).await;
        ensure!(
            out.code()? == 0 && out.stdout_text() == "via-tunneld\n",
            "exec through ProxyJump: {out}\n{}",
            daemon.log()
        );
        let seen = jump.log().matches("target 127.0.0.2").count();
        ensure!(
            seen > seen_by_ssh,
            "the jump sshd's log shows no direct-tcpip from tunneld to 127.0.0.2"
        );
        drop(daemon);
        drop(inner);
        Ok(())
    })
    .await
}
