//! The API beyond loopback: refused at start unless TLS and a client
//! authentication protect it, or `--insecure-listen` says the network is
//! trusted (and then a warning says what that means).

use anyhow::{Result, ensure};
use tunneld_tests::auth::new_token;
use tunneld_tests::{Pki, Refused, Sshd, Tunneld, TunneldBuilder};

use super::NON_LOOPBACK_REFUSAL;
use crate::support::e2e;

/// Every wildcard address: never loopback, always on this machine.
const ANY: &str = "0.0.0.0:0";

/// Checks that tunneld exited 2 at start with the non-loopback refusal
/// naming every one of `fixes`.
fn expect_refusal(what: &str, refused: &Refused, fixes: &[&str]) -> Result<()> {
    ensure!(
        refused.status.code() == Some(2),
        "{what}: tunneld exited {} (expected 2); stderr:\n{}",
        refused.status,
        refused.stderr
    );
    ensure!(
        refused.stderr.contains(NON_LOOPBACK_REFUSAL),
        "{what}: stderr lacks {NON_LOOPBACK_REFUSAL:?}:\n{}",
        refused.stderr
    );
    for fix in fixes {
        ensure!(
            refused.stderr.contains(fix),
            "{what}: the refusal does not name the fix {fix:?}:\n{}",
            refused.stderr
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_api_on_a_non_loopback_address_is_refused_at_start() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let plain = Tunneld::builder(&sshd).listen(ANY).start_refused().await?;
        expect_refusal(
            "no TLS, no client auth",
            &plain,
            &["--tls-cert", "--insecure-listen"],
        )?;
        // A token alone is not enough: it would cross the network in clear.
        let token = new_token();
        let token_only = Tunneld::builder(&sshd)
            .listen(ANY)
            .tokens(&[("ci", &token)])
            .start_refused()
            .await?;
        expect_refusal(
            "a token without TLS",
            &token_only,
            &["--tls-cert", "--insecure-listen"],
        )?;
        ensure!(
            !token_only.stderr.contains(&token),
            "the token appears in the refusal"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_without_client_authentication_on_a_non_loopback_address_is_refused() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let pki = Pki::new()?;
        let refused = Tunneld::builder(&sshd)
            .listen(ANY)
            .tls(pki.server()?, None)
            .start_refused()
            .await?;
        expect_refusal(
            "TLS without client auth",
            &refused,
            &["--tls-client-ca", "--token-file"],
        )
    })
    .await
}

/// Starts `builder`, checks the API answers through the fixture's client
/// and that the listener is the wildcard address, then stops the daemon.
async fn serves_beyond_loopback(what: &str, builder: TunneldBuilder) -> Result<Tunneld> {
    let daemon = builder.start().await?;
    ensure!(
        daemon.addr().ip().is_unspecified(),
        "{what}: tunneld listens on {}, expected 0.0.0.0",
        daemon.addr()
    );
    daemon
        .client()
        .get_info(tunnel_proto::v1::GetInfoRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{what}: GetInfo failed: {s:?}"))?;
    Ok(daemon)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_client_certificates_or_tokens_may_serve_beyond_loopback() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let pki = Pki::new()?;
        let mut mtls = serves_beyond_loopback(
            "TLS + --tls-client-ca",
            Tunneld::builder(&sshd).listen(ANY).mtls(&pki)?,
        )
        .await?;
        mtls.terminate().await?;
        let token = new_token();
        let mut tokens = serves_beyond_loopback(
            "TLS + --token-file",
            Tunneld::builder(&sshd)
                .listen(ANY)
                .tls(pki.server()?, None)
                .tokens(&[("ci", &token)]),
        )
        .await?;
        tokens.terminate().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_listen_serves_beyond_loopback_with_a_warning() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        // A token still guards the daemon while it runs: --insecure-listen
        // is about the missing TLS here.
        let token = new_token();
        let mut daemon = serves_beyond_loopback(
            "--insecure-listen",
            Tunneld::builder(&sshd)
                .listen(ANY)
                .tokens(&[("ci", &token)])
                .arg("--insecure-listen"),
        )
        .await?;
        daemon.terminate().await?;
        let log = daemon.log();
        let warning = log
            .lines()
            .find(|l| l.contains("WARN") && l.contains("WITHOUT"));
        ensure!(
            warning.is_some(),
            "no WARN line containing WITHOUT in tunneld's stderr:\n{log}"
        );
        Ok(())
    })
    .await
}
