//! `--tls-client-ca`: only clients presenting a certificate signed by that
//! CA get through the handshake, and tunneld names them after the
//! certificate's subject.

use anyhow::{Context, Result, ensure};
use tunnel_proto::v1::GetInfoRequest;
use tunneld_tests::{ClientTls, Credentials, Pki, Sshd, exec};

use super::wait_for_audit_line;
use crate::support::{Bed, e2e};

#[tokio::test(flavor = "multi_thread")]
async fn only_certificates_of_the_client_ca_get_through() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let pki = Pki::new()?;
        let stranger_ca = Pki::named("some other CA")?;
        let server = pki.server()?;
        let fixture = pki.client("fixture")?;
        let ca = pki.ca_cert().to_path_buf();
        let bed = Bed::with(sshd, |b| b.tls(server, Some(ca)).client_cert(fixture)).await?;
        let daemon = &bed.daemon;
        let trusting = ClientTls::trusting(pki.ca_cert());

        let refused = [
            ("no client certificate", trusting.clone()),
            (
                "a certificate from another CA",
                trusting.clone().with_identity(stranger_ca.client("alice")?),
            ),
        ];
        for (what, tls) in refused {
            let client = daemon.client_with(&Credentials::none().with_tls(tls))?;
            match client.clone().get_info(GetInfoRequest {}).await {
                Ok(info) => anyhow::bail!("GetInfo with {what} succeeded: {info:?}"),
                Err(status) => ensure!(
                    // The handshake fails, or the server closes the
                    // connection right after it (TLS 1.3 checks the client's
                    // certificate last): the client never gets a status
                    // from tunneld itself.
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                    ),
                    "GetInfo with {what}: expected a failed handshake (UNAVAILABLE or CANCELLED), got {status:?}"
                ),
            }
            let out = exec::run(&client, exec::request("echo nope")).await;
            ensure!(out.error.is_some(), "Exec with {what} ran: {out}");
        }

        // A certificate of the CA works, and names the caller.
        let alice = trusting.with_identity(pki.client("alice")?);
        let client = daemon.client_with(&Credentials::none().with_tls(alice))?;
        let out = exec::run_ok(&client, "echo hello alice").await?;
        ensure!(out == "hello alice\n", "Exec as alice: {out:?}");
        wait_for_audit_line(daemon, &["Exec", "cert:CN=alice", "hello alice"])
            .await
            .context("the audit line of alice's Exec")?;

        // Plaintext to a TLS port gets nowhere either.
        let plain = daemon.client_with(&Credentials::none())?;
        ensure!(
            plain.clone().get_info(GetInfoRequest {}).await.is_err(),
            "a plaintext GetInfo to the TLS port succeeded"
        );
        Ok(())
    })
    .await
}
