//! The audit trail: every mutating call and every refused call, naming the
//! caller, on stderr and as JSON lines in `--audit-log` (mode 0600) — and
//! never a token, an environment value or stdin.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use tunnel_proto::v1::{ExecRequest, GetInfoRequest};
use tunneld_tests::auth::new_token;
use tunneld_tests::data::random_token;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Credentials, Sshd, exec};

use super::{AUDIT_WAIT, audit_field, audit_records, ensure_absent, mode, wait_for_audit_line};
use crate::support::{Bed, close, e2e, expect_status, open_local};

#[tokio::test(flavor = "multi_thread")]
async fn audit_lines_name_the_caller_and_never_a_secret() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let token = new_token();
        let wrong = new_token();
        let bed = Bed::with(sshd, |b| b.tokens(&[("ci", &token)]).audit_log()).await?;
        let daemon = &bed.daemon;
        let audit_path = daemon.audit_log().context("no audit log")?.to_path_buf();

        // Exec with a command worth auditing and secrets that must not be.
        let marker = format!("audit-{}", random_token());
        let env_secret = format!("env-secret-{}", random_token());
        let stdin_secret = format!("stdin-secret-{}", random_token());
        let out = exec::run(
            &bed.client,
            ExecRequest {
                command: format!("echo {marker}; cat >/dev/null"),
                env: HashMap::from([("DEPLOY_KEY".to_string(), env_secret.clone())]),
                stdin: stdin_secret.clone().into_bytes(),
                ..Default::default()
            },
        )
        .await;
        ensure!(out.code()? == 0, "Exec: {out}");
        let exec_line = wait_for_audit_line(daemon, &["Exec", "token:ci", &marker]).await?;
        ensure!(
            exec_line.contains("DEPLOY_KEY"),
            "the Exec audit line lacks the environment variable's name: {exec_line}"
        );

        // A forward opened and closed, under its id.
        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        wait_for_audit_line(daemon, &["OpenLocalForward", "token:ci", &tunnel.id]).await?;
        close(&bed.client, &tunnel.id).await?;
        wait_for_audit_line(daemon, &["Close", "token:ci", &tunnel.id]).await?;

        // A refused caller is audited too.
        let stranger = daemon.client_with(&Credentials::bearer(&wrong))?;
        expect_status(
            "GetInfo with a wrong token",
            stranger.clone().get_info(GetInfoRequest {}).await,
            tonic::Code::Unauthenticated,
            &[],
        )?;
        wait_for_audit_line(daemon, &["GetInfo", "Unauthenticated"]).await?;

        // The file: private, JSON, the same story.
        ensure!(
            mode(&audit_path)? == 0o600,
            "{} is mode {:o}, expected 600",
            audit_path.display(),
            mode(&audit_path)?
        );
        let records = poll_until("the Close record in the audit log", AUDIT_WAIT, || async {
            let records = audit_records(&audit_path)?;
            let has_close = records
                .iter()
                .any(|r| audit_field(r, "rpc").as_deref() == Some("Close"));
            Ok(has_close.then_some(records))
        })
        .await?;
        let find = |rpc: &str| {
            records
                .iter()
                .find(|r| audit_field(r, "rpc").as_deref() == Some(rpc))
                .with_context(|| format!("no {rpc} record in the audit log: {records:?}"))
        };
        let exec_record = find("Exec")?;
        ensure!(
            audit_field(exec_record, "caller").as_deref() == Some("token:ci")
                && audit_field(exec_record, "peer").is_some_and(|p| p.starts_with("127.0.0.1:"))
                && audit_field(exec_record, "request").is_some_and(|r| r.contains(&marker))
                && audit_field(exec_record, "outcome").as_deref() == Some("ok"),
            "Exec record: {exec_record}"
        );
        for rpc in ["OpenLocalForward", "Close"] {
            let record = find(rpc)?;
            ensure!(
                audit_field(record, "caller").as_deref() == Some("token:ci")
                    && audit_field(record, "tunnel").as_deref() == Some(tunnel.id.as_str()),
                "{rpc} record: {record}"
            );
        }
        ensure!(
            records
                .iter()
                .any(|r| audit_field(r, "outcome").as_deref() == Some("Unauthenticated")),
            "no record of the refused call: {records:?}"
        );

        let log = daemon.log();
        let file = std::fs::read_to_string(&audit_path)?;
        for (secret, name) in [
            (&token, "the token"),
            (&wrong, "the wrong token"),
            (&env_secret, "an environment value"),
            (&stdin_secret, "stdin"),
        ] {
            ensure_absent(secret, &log, &format!("tunneld's stderr ({name})"))?;
            ensure_absent(secret, &file, &format!("the audit log ({name})"))?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_stream_is_audited_as_exec_and_never_its_stdin() -> Result<()> {
    use tokio_stream::StreamExt;
    use tunnel_proto::v1::exec_stream_request::Message;
    use tunnel_proto::v1::{ExecStart, ExecStreamRequest};

    e2e(async {
        let bed = Bed::with(Sshd::start()?, |b| b.audit_log()).await?;
        let daemon = &bed.daemon;
        let audit_path = daemon.audit_log().context("no audit log")?.to_path_buf();
        let marker = format!("audit-{}", random_token());
        let env_secret = format!("env-secret-{}", random_token());
        let stdin_secret = format!("stdin-secret-{}", random_token());
        let messages = [
            Message::Start(ExecStart {
                command: format!("echo {marker}; cat >/dev/null"),
                env: HashMap::from([("DEPLOY_KEY".to_string(), env_secret.clone())]),
                ..Default::default()
            }),
            Message::Stdin(stdin_secret.clone().into_bytes()),
            Message::StdinEof(true),
        ]
        .map(|m| ExecStreamRequest { message: Some(m) });
        let mut stream = bed
            .client
            .clone()
            .exec_stream(tokio_stream::iter(messages))
            .await?
            .into_inner();
        let mut stdout = Vec::new();
        while let Some(m) = stream.next().await {
            if let Some(tunnel_proto::v1::exec_stream_response::Event::Stdout(d)) = m?.event {
                stdout.extend(d);
            }
        }
        ensure!(
            String::from_utf8_lossy(&stdout).contains(&marker),
            "stdout {stdout:?}"
        );
        let line = wait_for_audit_line(daemon, &["ExecStream", &marker, "stdin=streamed"]).await?;
        ensure!(
            line.contains("DEPLOY_KEY"),
            "the ExecStream audit line lacks the variable's name: {line}"
        );
        let file = std::fs::read_to_string(&audit_path)?;
        ensure!(
            file.contains("ExecStream"),
            "no ExecStream record in the audit log: {file}"
        );
        for (secret, name) in [
            (&env_secret, "an environment value"),
            (&stdin_secret, "stdin"),
        ] {
            ensure_absent(secret, &daemon.log(), &format!("tunneld's stderr ({name})"))?;
            ensure_absent(secret, &file, &format!("the audit log ({name})"))?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamic_and_unix_socket_forwards_are_audited_with_their_ends() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| b.audit_log()).await?;
        let daemon = &bed.daemon;
        let dynamic = bed
            .client
            .clone()
            .open_dynamic_forward(tunnel_proto::v1::OpenDynamicForwardRequest::default())
            .await?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        wait_for_audit_line(
            daemon,
            &[
                "OpenDynamicForward",
                "dynamic 127.0.0.1:0 -> SOCKS",
                &dynamic.id,
            ],
        )
        .await?;
        let dir = tempfile::Builder::new().prefix("tda").tempdir_in("/tmp")?;
        let sock = dir.path().join("a.sock").display().to_string();
        let local = bed
            .client
            .clone()
            .open_local_forward(tunnel_proto::v1::OpenLocalForwardRequest {
                local_path: sock.clone(),
                remote_path: "/run/nothing.sock".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        wait_for_audit_line(
            daemon,
            &[
                "OpenLocalForward",
                &format!("local {sock} -> /run/nothing.sock"),
                &local.id,
            ],
        )
        .await?;
        let reverse = bed
            .client
            .clone()
            .open_remote_forward(tunnel_proto::v1::OpenRemoteForwardRequest {
                remote_bind_address: "127.0.0.1".into(),
                dynamic: true,
                permit_remote_open: vec!["localhost:3000".into()],
                ..Default::default()
            })
            .await?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        wait_for_audit_line(
            daemon,
            &[
                "OpenRemoteForward",
                "-> SOCKS permit_remote_open=localhost:3000",
                &reverse.id,
            ],
        )
        .await?;
        Ok(())
    })
    .await
}
