//! `--token-file`: every call but health needs `authorization: Bearer
//! TOKEN` with a listed token; the refusals say what to send, and never
//! echo what was sent.

use anyhow::{Context, Result, ensure};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tunnel_proto::v1::{GetInfoRequest, ListRequest};
use tunneld_tests::auth::new_token;
use tunneld_tests::daemon::channel_lazy;
use tunneld_tests::{Credentials, Sshd, Tunneld, exec};

use crate::support::{Bed, e2e, expect_status};

const MISSING: &str = "this tunneld requires a token";
const NOT_BEARER: &str = "the authorization header must be \"Bearer <token>\"";
const WRONG: &str = "the token was not accepted";

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_a_listed_bearer_token_are_unauthenticated() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let (ci, ops) = (new_token(), new_token());
        let bed = Bed::with(sshd, |b| b.tokens(&[("ci", &ci), ("ops", &ops)])).await?;
        let daemon = &bed.daemon;
        let wrong = new_token();
        let cases = [
            ("no header", Credentials::none(), MISSING),
            (
                "a Basic header",
                Credentials::none().with_authorization(format!("Basic {ci}")),
                NOT_BEARER,
            ),
            ("a wrong token", Credentials::bearer(&wrong), WRONG),
            // A listed token's prefix is not the token.
            ("a truncated token", Credentials::bearer(&ci[..20]), WRONG),
        ];
        for (what, creds, message) in &cases {
            let client = daemon.client_with(creds)?;
            let info = client.clone().get_info(GetInfoRequest {}).await;
            let status = expect_status(
                &format!("GetInfo with {what}"),
                info,
                tonic::Code::Unauthenticated,
                &[message],
            )?;
            for secret in [&ci, &wrong] {
                ensure!(
                    !status.message().contains(secret.as_str()),
                    "{what}: the refusal echoes a token: {:?}",
                    status.message()
                );
            }
            let list = client.clone().list(ListRequest {}).await;
            expect_status(
                &format!("List with {what}"),
                list,
                tonic::Code::Unauthenticated,
                &[message],
            )?;
        }
        // Refused before anything runs: the command never reaches sshd.
        let marker = bed.sshd.dir().join("ran-without-a-token");
        let out = exec::run(
            &daemon.client_with(&Credentials::none())?,
            exec::request(format!("touch {}", marker.display())),
        )
        .await;
        let Some(status) = out.error.clone() else {
            anyhow::bail!("Exec without a token succeeded: {out}");
        };
        ensure!(
            status.code() == tonic::Code::Unauthenticated,
            "Exec without a token: {status:?}"
        );
        ensure!(!marker.exists(), "Exec without a token ran its command");

        // Every listed token works, on every RPC.
        for token in [&ci, &ops] {
            let client = daemon.client_with(&Credentials::bearer(token))?;
            client
                .clone()
                .get_info(GetInfoRequest {})
                .await
                .context("GetInfo with a listed token")?;
            let out = exec::run_ok(&client, "echo authorized").await?;
            ensure!(out == "authorized\n", "Exec with a listed token: {out:?}");
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_needs_no_token_but_reflection_does() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let token = new_token();
        let daemon = Tunneld::builder(&sshd)
            .tokens(&[("ci", &token)])
            .start()
            .await?;
        let channel = channel_lazy(daemon.api_addr(), &Credentials::none())?;

        // Load balancers and orchestrators probe health without secrets.
        for service in ["", "tunnel.v1.TunnelService"] {
            let health = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .with_context(|| format!("health check of {service:?} without a token"))?
                .into_inner();
            ensure!(
                health.status == ServingStatus::Serving as i32,
                "health of {service:?}: {health:?}"
            );
        }

        // Reflection describes the API: only for callers with a token.
        let list_services = || {
            tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }])
        };
        let anonymous = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(list_services())
            .await;
        let refused = match anonymous {
            Err(status) => Err(status),
            // The refusal may come as the stream's first message instead.
            Ok(resp) => resp.into_inner().message().await.map(|m| format!("{m:?}")),
        };
        expect_status(
            "reflection without a token",
            refused,
            tonic::Code::Unauthenticated,
            &[MISSING],
        )?;

        let creds = Credentials::bearer(&token);
        let mut stream = ServerReflectionClient::with_interceptor(channel, creds.interceptor()?)
            .server_reflection_info(list_services())
            .await
            .context("reflection with the token")?
            .into_inner();
        let first = stream
            .message()
            .await
            .context("reflection with the token")?
            .context("reflection ended without an answer")?;
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            anyhow::bail!("reflection answered {first:?}");
        };
        ensure!(
            list.service
                .iter()
                .any(|s| s.name == "tunnel.v1.TunnelService"),
            "reflection lists {:?}",
            list.service
        );
        Ok(())
    })
    .await
}

/// SIGHUP reloads the token file: a revoked token stops working and a new
/// one starts, while tunnels opened before carry on; a file others can read
/// is refused and the tokens in use stay.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_token_file_and_tunnels_live_on() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use nix::sys::signal::Signal;
    use tunneld_tests::peers::TcpPeer;
    use tunneld_tests::wait::poll_until;

    use crate::support::{exchange, local_port, open_local};

    e2e(async {
        let sshd = Sshd::start()?;
        let (old, new) = (new_token(), new_token());
        let bed = Bed::with(sshd, |b| b.tokens(&[("old", &old)])).await?;
        let daemon = &bed.daemon;
        let file = daemon.token_file().context("no token file")?.to_path_buf();
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(
            &daemon.client_with(&Credentials::bearer(&old))?,
            "",
            echo.port(),
        )
        .await?;
        let port = local_port(&tunnel)?;

        std::fs::write(&file, format!("new:{new}\n"))?;
        daemon.signal(Signal::SIGHUP)?;
        let with_new = daemon.client_with(&Credentials::bearer(&new))?;
        poll_until(
            "the new token to be accepted",
            Duration::from_secs(10),
            || {
                let mut c = with_new.clone();
                async move { Ok(c.list(ListRequest {}).await.ok().map(|_| ())) }
            },
        )
        .await?;
        let revoked = daemon
            .client_with(&Credentials::bearer(&old))?
            .list(ListRequest {})
            .await;
        expect_status(
            "List with the revoked token",
            revoked,
            tonic::Code::Unauthenticated,
            &[WRONG],
        )?;
        // The tunnel opened with the old token is untouched.
        let listed = with_new.clone().list(ListRequest {}).await?.into_inner();
        ensure!(
            listed.tunnels.iter().any(|t| t.id == tunnel.id),
            "the tunnel is gone after the reload: {listed:?}"
        );
        let back = exchange(port, b"still here", Duration::from_secs(10)).await?;
        ensure!(
            back == b"still here",
            "echo through the tunnel returned {back:?}"
        );

        // A file others may read is refused; the tokens in use stay.
        std::fs::write(&file, format!("old:{old}\n"))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
        daemon.signal(Signal::SIGHUP)?;
        poll_until(
            "the refused reload in the log",
            Duration::from_secs(10),
            || {
                let log = daemon.log();
                async move {
                    Ok(log
                        .contains("the tokens in use are unchanged")
                        .then_some(()))
                }
            },
        )
        .await?;
        with_new.clone().list(ListRequest {}).await?;
        let log = daemon.log();
        ensure!(
            log.contains("chmod 600"),
            "the log does not say how to fix the file:\n{log}"
        );
        for token in [&old, &new] {
            ensure!(!log.contains(token.as_str()), "a token is in the log");
        }
        Ok(())
    })
    .await
}

/// SIGHUP without a token file (a logrotate `postrotate kill -HUP`) must
/// not end tunneld, as it did when only `--token-file` installed a
/// handler: sent twice, the daemon stays up, says so in its log, and its
/// tunnel still carries bytes.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_without_a_token_file_is_not_fatal() -> Result<()> {
    use std::time::Duration;

    use nix::sys::signal::Signal;
    use tunneld_tests::peers::TcpPeer;
    use tunneld_tests::wait::poll_until;

    use crate::support::{exchange, local_port, open_local};

    e2e(async {
        let mut bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&tunnel)?;
        for _ in 0..2 {
            bed.daemon.signal(Signal::SIGHUP)?;
        }
        poll_until("tunneld to log the SIGHUP", Duration::from_secs(10), || {
            let log = bed.daemon.log();
            async move {
                Ok((log.matches("SIGHUP: no --token-file to reload").count() >= 1).then_some(()))
            }
        })
        .await?;
        ensure!(bed.daemon.try_wait()?.is_none(), "tunneld exited on SIGHUP");
        let back = exchange(port, b"after SIGHUP", Duration::from_secs(10)).await?;
        ensure!(back == b"after SIGHUP", "echo returned {back:?}");
        let listed = bed.client.list(ListRequest {}).await?.into_inner();
        ensure!(
            listed.tunnels.iter().any(|t| t.id == tunnel.id),
            "the tunnel is gone after SIGHUP: {listed:?}"
        );
        Ok(())
    })
    .await
}
