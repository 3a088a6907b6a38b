//! User certificates from an SSH CA, against an sshd that trusts the CA
//! (`TrustedUserCAKeys`) and has no authorized_keys at all: `KEY-cert.pub`
//! beside the identity, a `certificate` file elsewhere, and a certificate
//! held by the agent each log in; a key without one is refused, as the
//! `ssh` client beside it shows.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use tunneld_tests::keys::{self, KeyPair, KeyType};
use tunneld_tests::{HostSpec, SshAgent, Sshd};

use crate::support::{Bed, e2e, echo_ok_on, echo_on, ssh};

/// Signs `key`'s public half with `ca` for `user`, valid from 5 minutes ago
/// for an hour; the certificate is written to `out`.
fn certify(ca: &KeyPair, key: &KeyPair, user: &str, out: &Path) -> Result<PathBuf> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.private)
        .args(["-I", "tunneld-test", "-n", user, "-V", "-5m:+1h"])
        .arg(&key.public)
        .status()
        .context("running ssh-keygen -s")?;
    ensure!(status.success(), "ssh-keygen -s failed: {status}");
    let written = PathBuf::from(format!(
        "{}-cert.pub",
        key.public.display().to_string().trim_end_matches(".pub")
    ));
    if written != out {
        std::fs::rename(&written, out)?;
    }
    Ok(out.to_path_buf())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_signed_by_a_trusted_ca_log_in_without_authorized_keys() -> Result<()> {
    e2e(async {
        let dir = tempfile::tempdir()?;
        let ca = keys::generate(dir.path(), "user_ca", KeyType::Ed25519)?;
        let sshd = Sshd::builder()
            .config(format!("TrustedUserCAKeys {}", ca.public.display()))
            .start()?;
        // No authorized key at all: only certificates can log in.
        std::fs::write(sshd.dir().join("authorized_keys"), "")?;
        let user = sshd.user().to_string();

        let beside = keys::generate(dir.path(), "id_beside", KeyType::Ed25519)?;
        certify(&ca, &beside, &user, &dir.path().join("id_beside-cert.pub"))?;
        let elsewhere = keys::generate(dir.path(), "id_elsewhere", KeyType::Ecdsa)?;
        let elsewhere_cert = certify(&ca, &elsewhere, &user, &dir.path().join("my.cert"))?;
        let in_agent = keys::generate(dir.path(), "id_in_agent", KeyType::Ed25519)?;
        certify(
            &ca,
            &in_agent,
            &user,
            &dir.path().join("id_in_agent-cert.pub"),
        )?;
        let agent = SshAgent::start()?;
        // ssh-add adds the certificate beside the key too.
        agent.add(&in_agent.private)?;
        ensure!(
            agent.list()?.contains("-cert-v01@openssh.com"),
            "the agent holds no certificate: {}",
            agent.list()?
        );
        std::fs::remove_file(&in_agent.private)?;
        let plain = keys::generate(dir.path(), "id_plain", KeyType::Ed25519)?;
        let wrong_user = keys::generate(dir.path(), "id_wrong_user", KeyType::Ed25519)?;
        certify(
            &ca,
            &wrong_user,
            "somebody-else",
            &dir.path().join("id_wrong_user-cert.pub"),
        )?;

        // The ssh client agrees on the two file cases.
        let known_hosts = sshd.known_hosts().to_path_buf();
        for (key, expect) in [(&beside.private, true), (&plain.private, false)] {
            let out = ssh(&sshd, key, &known_hosts).arg("true").output().await?;
            ensure!(
                out.status.success() == expect,
                "ssh -i {} exited {}: {}",
                key.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let base = HostSpec::from_sshd(&sshd);
        let socket = agent.socket().display().to_string();
        let bed = Bed::with(sshd, |b| {
            b.host("beside", base.clone().with_identity(&beside.private))
                .host(
                    "elsewhere",
                    base.clone()
                        .with_identity(&elsewhere.private)
                        .with_key("certificate", elsewhere_cert.display().to_string()),
                )
                .host(
                    "agent",
                    base.clone()
                        .with_key("identity", toml::Value::Array(Vec::new()))
                        .with_key("identity_agent", socket.as_str()),
                )
                .host("plain", base.clone().with_identity(&plain.private))
                .host(
                    "wrong-user",
                    base.clone().with_identity(&wrong_user.private),
                )
        })
        .await?;
        for host in ["beside", "elsewhere", "agent"] {
            echo_ok_on(&bed, host).await?;
        }
        for host in ["plain", "wrong-user"] {
            let out = echo_on(&bed, host).await.to_string();
            ensure!(
                out.contains("refused public-key authentication"),
                "on {host}: {out}"
            );
        }
        // The refusal names what was offered, the certificate included.
        let out = echo_on(&bed, "wrong-user").await.to_string();
        ensure!(
            out.contains("id_wrong_user-cert.pub") && out.contains("certificate"),
            "the refusal does not name the certificate: {out}"
        );
        Ok(())
    })
    .await
}
