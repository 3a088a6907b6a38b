//! Keys in a real `ssh-agent`, used as OpenSSH uses them: a key held only
//! by the agent authenticates, RSA signs with rsa-sha2 (sshd refuses SHA-1
//! `ssh-rsa`), every agent key is tried in turn, `IdentitiesOnly` keeps the
//! agent's other keys out, a passphrase-protected file without its
//! passphrase gives way to the agent, and an agent that goes away is named.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use tunneld_tests::keys::{self, KeyPair, KeyType};
use tunneld_tests::{HostSpec, SshAgent, Sshd};

use crate::support::{Bed, e2e, echo_ok_on, echo_on, expect_status};

/// Checks `echo ok` on `host` fails FAILED_PRECONDITION naming every one of
/// `needles`; the message.
async fn refused_on(bed: &Bed, host: &str, needles: &[&str]) -> Result<String> {
    let out = echo_on(bed, host).await;
    let status = out
        .error
        .clone()
        .with_context(|| format!("Exec on {host:?} succeeded: {out}"))?;
    let status = expect_status::<()>(
        &format!("Exec on {host:?}"),
        Err(status),
        tonic::Code::FailedPrecondition,
        &[],
    )?;
    for needle in needles {
        ensure!(
            status.message().contains(needle),
            "the refusal on {host:?} lacks {needle:?}: {:?}",
            status.message()
        );
    }
    Ok(status.message().to_string())
}

/// A fresh key in `dir`, authorized on `sshd` when `authorize`.
fn key(sshd: &Sshd, dir: &Path, name: &str, kind: KeyType, authorize: bool) -> Result<KeyPair> {
    let pair = keys::generate(dir, name, kind)?;
    if authorize {
        let path = sshd.dir().join("authorized_keys");
        let mut authorized = std::fs::read_to_string(&path)?;
        authorized.push_str(&std::fs::read_to_string(&pair.public)?);
        std::fs::write(&path, authorized)?;
    }
    Ok(pair)
}

/// The host's table with no identity file at all.
fn agent_only(sshd: &Sshd) -> HostSpec {
    HostSpec::from_sshd(sshd).with_key("identity", toml::Value::Array(Vec::new()))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_held_only_by_the_agent_authenticate_ed25519_and_rsa() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let agent = SshAgent::start()?;
        let ed = key(&sshd, dir.path(), "id_agent_ed", KeyType::Ed25519, true)?;
        agent.add(&ed.private)?;
        let rsa_agent = SshAgent::start()?;
        let rsa = key(&sshd, dir.path(), "id_agent_rsa", KeyType::Rsa, true)?;
        rsa_agent.add(&rsa.private)?;
        // No key file anywhere: only the agents hold them.
        std::fs::remove_file(&ed.private)?;
        std::fs::remove_file(&rsa.private)?;

        let socket = agent.socket().display().to_string();
        let rsa_socket = rsa_agent.socket().display().to_string();
        let spec = agent_only(&sshd);
        let bed = Bed::with(sshd, |b| {
            b.host("from-env", spec.clone())
                .host("rsa", spec.with_key("identity_agent", rsa_socket.as_str()))
                .env("SSH_AUTH_SOCK", &socket)
        })
        .await?;
        echo_ok_on(&bed, "from-env").await?;
        echo_ok_on(&bed, "rsa").await?;
        // sshd's log shows the RSA login signed with SHA-2.
        let log = bed.sshd.log();
        ensure!(
            log.contains("RSA SHA256:") || log.contains("rsa-sha2"),
            "sshd's log shows no RSA login:\n{log}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_agent_key_is_tried_until_the_authorized_one() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let agent = SshAgent::start()?;
        for n in 0..3 {
            let stranger = key(
                &sshd,
                dir.path(),
                &format!("id_stranger{n}"),
                KeyType::Ed25519,
                false,
            )?;
            agent.add(&stranger.private)?;
        }
        let good = key(&sshd, dir.path(), "id_good", KeyType::Ecdsa, true)?;
        agent.add(&good.private)?;
        ensure!(
            agent.list()?.lines().count() == 4,
            "the agent holds {}",
            agent.list()?
        );
        let spec =
            agent_only(&sshd).with_key("identity_agent", agent.socket().display().to_string());
        let bed = Bed::with(sshd, |b| b.host("agent", spec)).await?;
        echo_ok_on(&bed, "agent").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_only_keeps_the_agents_other_keys_out() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let agent = SshAgent::start()?;
        let good = key(&sshd, dir.path(), "id_good", KeyType::Ed25519, true)?;
        agent.add(&good.private)?;
        let other = key(&sshd, dir.path(), "id_other", KeyType::Ed25519, false)?;
        // The authorized key is in the agent only; its .pub stays, so an
        // identity can name it without its private half.
        std::fs::remove_file(&good.private)?;
        let socket = agent.socket().display().to_string();
        let base = HostSpec::from_sshd(&sshd).with_key("identity_agent", socket.as_str());
        let bed = Bed::with(sshd, |b| {
            b.host(
                "only-other",
                base.clone()
                    .with_identity(&other.private)
                    .with_key("identities_only", true),
            )
            .host(
                "other-then-agent",
                base.clone().with_identity(&other.private),
            )
            .host(
                "only-good-pub",
                base.clone()
                    .with_identity(&good.private)
                    .with_key("identities_only", true),
            )
        })
        .await?;
        let message = refused_on(&bed, "only-other", &["id_other", "refused"]).await?;
        ensure!(
            !message.contains("agent key"),
            "IdentitiesOnly offered an agent key: {message}"
        );
        echo_ok_on(&bed, "other-then-agent").await?;
        echo_ok_on(&bed, "only-good-pub").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_key_file_gives_way_to_the_agent() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let locked = sshd.authorize_protected_key("id_locked", "correct horse")?;
        let dir = tempfile::tempdir()?;
        let agent = SshAgent::start()?;
        let good = key(&sshd, dir.path(), "id_good", KeyType::Ed25519, true)?;
        agent.add(&good.private)?;
        let spec = HostSpec::from_sshd(&sshd)
            .with_identity(&locked)
            .with_key("identity_agent", agent.socket().display().to_string());
        let bed = Bed::with(sshd, |b| b.host("locked", spec)).await?;
        echo_ok_on(&bed, "locked").await?;
        let log = bed.daemon.log();
        ensure!(
            log.contains("skipping a passphrase-protected key") && log.contains("id_locked"),
            "tunneld did not log the skipped key:\n{log}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_went_away_is_named() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let mut agent = SshAgent::start()?;
        let good = key(&sshd, dir.path(), "id_good", KeyType::Ed25519, true)?;
        agent.add(&good.private)?;
        std::fs::remove_file(&good.private)?;
        let socket = agent.socket().display().to_string();
        let spec = agent_only(&sshd).with_key("identity_agent", socket.as_str());
        // Exec holds a connection of its own each time: the second one
        // authenticates again, after the agent is gone.
        let bed = Bed::with(sshd, |b| {
            b.host("agent", spec).arg("--exec-idle-timeout").arg("0s")
        })
        .await?;
        echo_ok_on(&bed, "agent").await?;
        agent.kill()?;
        refused_on(&bed, "agent", &[&socket, "ssh-agent"]).await?;
        Ok(())
    })
    .await
}
