//! Host certificates: an sshd with a `HostCertificate` is accepted through
//! an `@cert-authority` line of known_hosts alone, and refused — with the
//! reason in the API's message — when the certificate expired, names other
//! principals, comes from a CA known_hosts does not list, or its CA is
//! `@revoked`. Each case runs side by side with OpenSSH's `ssh` on the same
//! known_hosts file, which accepts and refuses the same ones, including its
//! fallback to the certificate's plain key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tunneld_tests::keys::{self, KeyPair, KeyType};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::{HostSpec, Sshd};

use crate::support::{Bed, e2e, echo_on, exchange, expect_status, local_port, open_local, ssh};

/// The `@cert-authority` line trusting `ca` for `sshd`.
fn ca_line(sshd: &Sshd, ca: &KeyPair) -> Result<String> {
    Ok(format!(
        "@cert-authority [127.0.0.1]:{} {}",
        sshd.port(),
        ca.public_line()?
    ))
}

/// Writes a known_hosts file of `lines` into `dir`.
fn known_hosts(dir: &Path, name: &str, lines: &[String]) -> Result<PathBuf> {
    let path = dir.join(name);
    keys::write_known_hosts(&path, lines)?;
    Ok(path)
}

/// Whether `ssh ... true` to `sshd` with `known_hosts` succeeds, and its
/// stderr.
async fn ssh_accepts(sshd: &Sshd, known_hosts: &Path) -> Result<(bool, String)> {
    let out = ssh(sshd, sshd.identity(), known_hosts)
        .arg("true")
        .output()
        .await
        .context("running ssh")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Host `host` is accepted by tunneld (an Exec runs) and, with the same
/// known_hosts, by ssh.
async fn accepted(bed: &Bed, host: &str, sshd: &Sshd, kh: &Path) -> Result<()> {
    let out = echo_on(bed, host).await;
    ensure!(
        out.code().with_context(|| format!("Exec on {host}"))? == 0 && out.stdout_text() == "ok\n",
        "Exec on {host}: {out}"
    );
    let (ok, stderr) = ssh_accepts(sshd, kh).await?;
    ensure!(ok, "ssh refused what tunneld accepted ({host}): {stderr}");
    Ok(())
}

/// Host `host` is refused by tunneld with FAILED_PRECONDITION and a message
/// holding every one of `needles`, and by ssh with a stderr holding
/// `ssh_says`.
async fn refused(
    bed: &Bed,
    host: &str,
    sshd: &Sshd,
    kh: &Path,
    needles: &[&str],
    ssh_says: &str,
) -> Result<()> {
    let out = echo_on(bed, host).await;
    let stdout = out.stdout_text();
    let status = out
        .error
        .with_context(|| format!("Exec on {host} succeeded: {stdout}"))?;
    let status = expect_status::<()>(host, Err(status), tonic::Code::FailedPrecondition, &[])?;
    for needle in needles {
        ensure!(
            status.message().contains(needle),
            "{host}: message {:?} lacks {needle:?}",
            status.message()
        );
    }
    let (ok, stderr) = ssh_accepts(sshd, kh).await?;
    ensure!(!ok, "ssh accepted what tunneld refused ({host})");
    ensure!(
        stderr.contains(ssh_says),
        "{host}: ssh's stderr lacks {ssh_says:?}: {stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cert_authority_lines_accept_and_refuse_host_certificates() -> Result<()> {
    e2e(async {
        let dir = tempfile::Builder::new()
            .prefix("tunneld-hostcert-")
            .tempdir()?;
        let d = dir.path();
        let ca = keys::generate(d, "ca", KeyType::Ed25519)?;
        let other_ca = keys::generate(d, "other_ca", KeyType::Ed25519)?;
        let valid = Sshd::builder()
            .host_certificate(&ca.private, &["-n", "127.0.0.1", "-V", "-5m:+1h"])
            .start()?;
        let expired = Sshd::builder()
            .host_certificate(&ca.private, &["-n", "127.0.0.1", "-V", "20200101:20200102"])
            .start()?;
        let wrong_name = Sshd::builder()
            .host_certificate(
                &ca.private,
                &["-n", "db.example.com,localhost", "-V", "-5m:+1h"],
            )
            .start()?;

        let kh_valid = known_hosts(d, "kh_valid", &[ca_line(&valid, &ca)?])?;
        let kh_other = known_hosts(d, "kh_other", &[ca_line(&valid, &other_ca)?])?;
        let kh_revoked = known_hosts(
            d,
            "kh_revoked",
            &[
                ca_line(&valid, &ca)?,
                format!("@revoked * {}", ca.public_line()?),
            ],
        )?;
        let kh_expired = known_hosts(d, "kh_expired", &[ca_line(&expired, &ca)?])?;
        // OpenSSH falls back to the certificate's key as a plain key.
        let kh_expired_plain = known_hosts(
            d,
            "kh_expired_plain",
            &[ca_line(&expired, &ca)?, expired.host_key_line()],
        )?;
        let kh_accept_new = known_hosts(d, "kh_accept_new", &[ca_line(&expired, &ca)?])?;
        let kh_wrong = known_hosts(d, "kh_wrong", &[ca_line(&wrong_name, &ca)?])?;

        let spec = |sshd: &Sshd, kh: &Path| {
            HostSpec::from_sshd(sshd)
                .with_known_hosts(kh)
                .with_policy("strict")
        };
        let hosts = [
            ("cert", spec(&valid, &kh_valid)),
            ("other-ca", spec(&valid, &kh_other)),
            ("ca-revoked", spec(&valid, &kh_revoked)),
            ("expired", spec(&expired, &kh_expired)),
            ("expired-plain", spec(&expired, &kh_expired_plain)),
            (
                "expired-accept-new",
                spec(&expired, &kh_accept_new).with_policy("accept-new"),
            ),
            ("wrong-name", spec(&wrong_name, &kh_wrong)),
        ];
        let valid_port = valid.port();
        let bed = Bed::with(valid, |b| {
            hosts
                .into_iter()
                .fold(b, |b, (name, spec)| b.host(name, spec))
        })
        .await?;
        let valid = &bed.sshd;

        // Accepted through the @cert-authority line alone: an Exec and a
        // forward work.
        accepted(&bed, "cert", valid, &kh_valid).await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "cert", echo.port()).await?;
        let back = exchange(local_port(&tunnel)?, b"certified", Duration::from_secs(10)).await?;
        ensure!(back == b"certified", "echoed {back:?}");

        let ca_fp = ca.fingerprint()?;
        refused(
            &bed,
            "other-ca",
            valid,
            &kh_other,
            &[
                &ca_fp,
                "no @cert-authority line",
                &format!("[127.0.0.1]:{valid_port}"),
            ],
            "Host key verification failed",
        )
        .await?;
        refused(
            &bed,
            "ca-revoked",
            valid,
            &kh_revoked,
            &[&ca_fp, "@revoked", "line 2"],
            "REVOKED HOST KEY",
        )
        .await?;
        refused(
            &bed,
            "expired",
            &expired,
            &kh_expired,
            &["expired at 2020-01-0", "renewed certificate"],
            "Certificate invalid: expired",
        )
        .await?;
        refused(
            &bed,
            "wrong-name",
            &wrong_name,
            &kh_wrong,
            &[
                "\"db.example.com\", \"localhost\"",
                "connects to \"127.0.0.1\"",
            ],
            "Certificate invalid: name is not a listed principal",
        )
        .await?;

        // The fallback: an expired certificate whose key known_hosts lists
        // as a plain key is accepted, and under accept-new its key is added
        // (what ssh does with the same files).
        accepted(&bed, "expired-plain", &expired, &kh_expired_plain).await?;
        let out = echo_on(&bed, "expired-accept-new").await;
        ensure!(out.code()? == 0, "expired-accept-new: {out}");
        let added = std::fs::read_to_string(&kh_accept_new)?;
        let (kind, blob) = expired.host_key().type_and_blob()?;
        ensure!(
            added.contains(&format!("[127.0.0.1]:{} {kind} {blob}", expired.port())),
            "accept-new did not add the plain key: {added}"
        );
        Ok(())
    })
    .await
}
