//! Identities a user brings: ECDSA and RSA keys as well as ed25519, and
//! passphrase-protected keys with the passphrase from a file or from the
//! daemon's environment — and a clear refusal when the passphrase is missing.

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, ensure};
use tunnel_proto::v1::ExecRequest;
use tunneld_tests::exec;
use tunneld_tests::keys::KeyType;
use tunneld_tests::{HostSpec, Sshd};

use crate::support::{Bed, e2e, echo_ok_on, expect_status};

#[tokio::test(flavor = "multi_thread")]
async fn ecdsa_and_rsa_identities_authenticate() -> Result<()> {
    e2e(async {
        let sshd = Sshd::builder()
            .extra_user_key(KeyType::Ecdsa)
            .extra_user_key(KeyType::Rsa)
            .start()?;
        let keys = sshd.extra_identities().to_vec();
        ensure!(keys.len() == 2, "expected two extra keys, got {keys:?}");
        let base = HostSpec::from_sshd(&sshd);
        let bed = Bed::with(sshd, |b| {
            b.host("ecdsa", base.clone().with_identity(&keys[0].private))
                .host("rsa", base.clone().with_identity(&keys[1].private))
        })
        .await?;
        echo_ok_on(&bed, "ecdsa").await?;
        echo_ok_on(&bed, "rsa").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn passphrase_protected_keys_from_file_and_environment() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = sshd.dir().to_path_buf();
        let key = sshd.authorize_protected_key("id_protected", "correct horse")?;
        let pass_file = dir.join("passphrase");
        std::fs::write(&pass_file, "correct horse\n")?;
        // Like a key, a passphrase file must be private to its owner.
        std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600))?;

        let base = HostSpec::from_sshd(&sshd).with_identity(&key);
        let bed = Bed::with(sshd, |b| {
            b.host("from-file", base.clone().with_passphrase_file(&pass_file))
                .host(
                    "from-env",
                    base.clone().with_passphrase_env("TEST_KEY_PASS"),
                )
                .host("no-passphrase", base.clone())
                .env("TEST_KEY_PASS", "correct horse")
        })
        .await?;
        echo_ok_on(&bed, "from-file").await?;
        echo_ok_on(&bed, "from-env").await?;

        let out = exec::run(
            &bed.client,
            ExecRequest {
                host: "no-passphrase".into(),
                command: "true".into(),
                ..Default::default()
            },
        )
        .await;
        let status = out.error.context("exec without a passphrase succeeded")?;
        let status = expect_status::<()>(
            "protected key without passphrase",
            Err(status),
            tonic::Code::FailedPrecondition,
            &["passphrase"],
        )?;
        // The message names the file so a person knows which key.
        ensure!(
            status.message().contains("id_protected"),
            "message does not name the key file: {:?}",
            status.message()
        );
        // And never the secret itself.
        ensure!(
            !bed.daemon.log().contains("correct horse"),
            "the passphrase appears in tunneld's log"
        );
        Ok(())
    })
    .await
}
