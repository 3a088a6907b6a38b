//! Cipher choice (`--ciphers`, OpenSSH's `Ciphers`): what tunneld offers
//! first is what sshd picks, as sshd's own log reports it.

use anyhow::{Result, ensure};
use tunneld_tests::{Sshd, exec};

use crate::support::{Bed, e2e};

/// The cipher sshd reports for the client-to-server direction.
fn negotiated(sshd_log: &str) -> Option<String> {
    sshd_log
        .lines()
        .filter_map(|l| l.split("kex: client->server cipher: ").nth(1))
        .next_back()
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configured_cipher_is_the_one_used() -> Result<()> {
    e2e(async {
        for cipher in ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"] {
            let sshd = Sshd::builder().config("LogLevel DEBUG1").start()?;
            let bed = Bed::with(sshd, |b| b.arg("--ciphers").arg(cipher)).await?;
            let out = exec::run(&bed.client, exec::request("echo ciphered")).await;
            ensure!(
                out.stdout_text() == "ciphered\n",
                "exec over {cipher}: {out}"
            );
            let used = negotiated(&bed.sshd.log());
            ensure!(
                used.as_deref() == Some(cipher),
                "asked for {cipher}, sshd reports {used:?}"
            );
        }
        Ok(())
    })
    .await
}

/// By default AES-GCM is offered first where the CPU has AES instructions
/// (as `/proc/cpuinfo` lists them), chacha20-poly1305 elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_follows_the_cpu() -> Result<()> {
    e2e(async {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        let hardware_aes =
            flags.contains(&"aes") && (flags.contains(&"pclmulqdq") || flags.contains(&"pmull"));
        let expected = if hardware_aes {
            "aes256-gcm@openssh.com"
        } else {
            "chacha20-poly1305@openssh.com"
        };
        let sshd = Sshd::builder().config("LogLevel DEBUG1").start()?;
        let bed = Bed::with(sshd, |b| b).await?;
        let out = exec::run(&bed.client, exec::request("true")).await;
        ensure!(out.error.is_none(), "exec: {out}");
        let used = negotiated(&bed.sshd.log());
        ensure!(
            used.as_deref() == Some(expected),
            "CPU has AES instructions: {hardware_aes}; expected {expected}, sshd reports {used:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_cipher_is_refused_at_start() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let refused = tunneld_tests::Tunneld::builder(&sshd)
            .arg("--ciphers")
            .arg("3des-cbc")
            .start_refused()
            .await?;
        ensure!(refused.status.code() == Some(2), "exit {}", refused.status);
        ensure!(
            refused.stderr.contains("unknown cipher \"3des-cbc\"")
                && refused.stderr.contains("aes256-gcm@openssh.com"),
            "stderr: {}",
            refused.stderr
        );
        Ok(())
    })
    .await
}
