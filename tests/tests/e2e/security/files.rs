//! Secrets in files others can read are refused, like OpenSSH does: the
//! SSH identity and its passphrase file when a host is first used, the
//! token file and the TLS key at start. Each refusal names the file and the
//! `chmod 600` that fixes it, and the fix works.

use std::path::Path;

use anyhow::{Result, ensure};
use tunneld_tests::auth::{new_token, write_token_file};
use tunneld_tests::{Credentials, HostSpec, Pki, Refused, Sshd, Tunneld, exec};

use super::chmod;
use crate::support::{Bed, e2e, echo_on, expect_status};

/// Checks an Exec on `host` fails FAILED_PRECONDITION naming `file` and
/// its fix, and that after `chmod 600` it succeeds.
async fn refused_until_chmod(bed: &Bed, host: &str, file: &Path, needles: &[&str]) -> Result<()> {
    let out = echo_on(bed, host).await;
    let Some(status) = out.error.clone() else {
        anyhow::bail!("Exec on {host:?} with a loose {}: {out}", file.display());
    };
    let fix = format!("chmod 600 {}", file.display());
    let status = expect_status::<()>(
        &format!("Exec on host {host:?}"),
        Err(status),
        tonic::Code::FailedPrecondition,
        &[&fix],
    )?;
    for needle in needles {
        ensure!(
            status.message().contains(needle),
            "the refusal lacks {needle:?}: {:?}",
            status.message()
        );
    }
    chmod(file, 0o600)?;
    let out = echo_on(bed, host).await;
    ensure!(
        out.code().ok() == Some(0) && out.stdout_text() == "ok\n",
        "Exec on {host:?} after {fix}: {out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_others_can_read_is_refused_until_chmod_600() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let loose = sshd.dir().join("id_loose");
        std::fs::copy(sshd.identity(), &loose)?;
        chmod(&loose, 0o644)?;
        let spec = HostSpec::from_sshd(&sshd).with_identity(&loose);
        let bed = Bed::with(sshd, |b| b.host("loose", spec)).await?;
        refused_until_chmod(&bed, "loose", &loose, &["UNPROTECTED PRIVATE KEY FILE"]).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_file_others_can_read_is_refused_until_chmod_600() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = sshd.dir().to_path_buf();
        let key = sshd.authorize_protected_key("id_protected", "correct horse")?;
        let pass_file = dir.join("passphrase");
        std::fs::write(&pass_file, "correct horse\n")?;
        chmod(&pass_file, 0o644)?;

        let spec = HostSpec::from_sshd(&sshd)
            .with_identity(&key)
            .with_passphrase_file(&pass_file);
        let bed = Bed::with(sshd, |b| b.host("protected", spec)).await?;
        refused_until_chmod(&bed, "protected", &pass_file, &[]).await?;
        let log = bed.daemon.log();
        ensure!(
            !log.contains("correct horse"),
            "the passphrase appears in tunneld's log"
        );
        Ok(())
    })
    .await
}

/// Checks tunneld exited 2 at start because `file` is mode 0644, naming
/// the file's mode and the fix (`chmod 600 FILE`).
fn expect_loose_file_refusal(refused: &Refused, file: &Path) -> Result<()> {
    ensure!(
        refused.status.code() == Some(2),
        "tunneld exited {} (expected 2); stderr:\n{}",
        refused.status,
        refused.stderr
    );
    let fix = format!("chmod 600 {}", file.display());
    for needle in ["0644", fix.as_str()] {
        ensure!(
            refused.stderr.contains(needle),
            "the refusal lacks {needle:?}:\n{}",
            refused.stderr
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_others_can_read_is_refused_at_start() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::Builder::new()
            .prefix("tunneld-tokens-")
            .tempdir()?;
        let file = dir.path().join("tokens");
        let token = new_token();
        write_token_file(&file, &[("ci".into(), token.clone())])?;
        chmod(&file, 0o644)?;
        let with_file = || {
            Tunneld::builder(&sshd)
                .arg("--token-file")
                .arg(file.display().to_string())
                .client_credentials(Credentials::bearer(&token))
        };
        let refused = with_file().start_refused().await?;
        expect_loose_file_refusal(&refused, &file)?;
        ensure!(
            !refused.stderr.contains(&token),
            "the refusal shows the token"
        );

        chmod(&file, 0o600)?;
        let daemon = with_file().start().await?;
        let out = exec::run_ok(&daemon.client(), "echo ok").await?;
        ensure!(out == "ok\n", "Exec after chmod 600: {out:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_key_others_can_read_is_refused_at_start() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let pki = Pki::new()?;
        let server = pki.server()?;
        chmod(&server.key, 0o644)?;
        let with_key =
            || Tunneld::builder(&sshd).tls(server.clone(), Some(pki.ca_cert().to_path_buf()));
        let refused = with_key().start_refused().await?;
        expect_loose_file_refusal(&refused, &server.key)?;

        chmod(&server.key, 0o600)?;
        let daemon = with_key()
            .client_cert(pki.client("fixture")?)
            .start()
            .await?;
        let out = exec::run_ok(&daemon.client(), "echo ok").await?;
        ensure!(out == "ok\n", "Exec after chmod 600: {out:?}");
        Ok(())
    })
    .await
}

/// A spill directory tunneld cannot use safely is refused at start, naming
/// the directory and the flags that fix it: a file, and a directory of
/// another user (someone may have created the name first in a shared
/// `/tmp`). One tunneld creates a missing directory 0700 itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_spill_dir_that_is_a_file_or_another_users_is_refused_at_start() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    e2e(async {
        let sshd = Sshd::start()?;
        let tmp = tempfile::tempdir()?;
        let with_dir = |dir: &Path| {
            Tunneld::builder(&sshd)
                .arg("--spill-dir")
                .arg(dir.display().to_string())
        };

        let file = tmp.path().join("a-file");
        std::fs::write(&file, b"")?;
        let refused = with_dir(&file).start_refused().await?;
        expect_spill_dir_refusal(&refused, &file, "is not a directory")?;

        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs)?;
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534))?;
        let refused = with_dir(&theirs).start_refused().await?;
        expect_spill_dir_refusal(&refused, &theirs, "belongs to uid 65534")?;

        let missing = tmp.path().join("spill");
        let daemon = with_dir(&missing).start().await?;
        let mode = std::fs::metadata(&missing)?.mode() & 0o777;
        ensure!(mode == 0o700, "spill dir created with mode {mode:o}");
        ensure!(
            std::fs::read_dir(&missing)?.count() == 0,
            "the start-up check left a file in {}",
            missing.display()
        );
        let out = exec::run_ok(&daemon.client(), "echo ok").await?;
        ensure!(out == "ok\n", "Exec: {out:?}");
        Ok(())
    })
    .await
}

fn expect_spill_dir_refusal(refused: &Refused, dir: &Path, why: &str) -> Result<()> {
    ensure!(
        refused.status.code() == Some(2),
        "exit {:?}, stderr: {}",
        refused.status,
        refused.stderr
    );
    let line = refused.stderr.lines().last().unwrap_or_default();
    for needle in [
        &dir.display().to_string(),
        why,
        "--spill-dir",
        "--max-connection-spill 0",
    ] {
        ensure!(line.contains(needle), "{needle:?} not in: {line}");
    }
    Ok(())
}
