//! Forward policy: which targets local forwards may reach (`permit_open`),
//! where remote forwards may listen on the server (`permit_listen`), and
//! which local addresses forwards may bind (`allow_local_bind`). A refused
//! request opens nothing: no port bound, no tunnel listed, and not even an
//! SSH connection made.

use std::net::TcpListener;

use anyhow::{Context, Result, ensure};
use tunnel_proto::v1::{OpenLocalForwardRequest, OpenRemoteForwardRequest};
use tunneld_tests::peers::{TcpPeer, port_is_free, refused_port};
use tunneld_tests::sshd::free_port;
use tunneld_tests::{HostSpec, Sshd, Tunneld};

use crate::support::{
    Bed, IO_TIMEOUT, close, e2e, exchange, expect_status, list, local_port, remote_port,
};

/// What sshd logs (LogLevel VERBOSE) for every login.
const SSHD_LOGIN: &str = "Accepted publickey for";

/// What sshd logs for every TCP connection.
const SSHD_CONNECTION: &str = "Connection from";

/// Fails if tunneld connected to `sshd` or holds a tunnel: the refusals
/// before must have happened before anything was opened. The one
/// connection sshd logs before is the fixture's readiness probe, which
/// reads the banner and hangs up.
async fn nothing_opened(bed: &Bed, what: &str) -> Result<()> {
    let log = bed.sshd.log();
    ensure!(
        !log.contains(SSHD_LOGIN) && log.matches(SSHD_CONNECTION).count() <= 1,
        "{what}: tunneld connected to sshd for a refused request; sshd log:\n{log}"
    );
    let tunnels = list(&bed.client).await?.tunnels;
    ensure!(tunnels.is_empty(), "{what}: List shows {tunnels:?}");
    Ok(())
}

fn local(host: &str, local_port: u16, target: &str, port: u16) -> OpenLocalForwardRequest {
    OpenLocalForwardRequest {
        host: host.into(),
        local_port: local_port.into(),
        remote_host: target.into(),
        remote_port: port.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_forward_targets_must_match_permit_open() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let allowed = format!("127.0.0.1:{}", echo.port());
        let locked = HostSpec::from_sshd(&sshd).with_permit_open(&["none"]);
        let bed = Bed::with(sshd, |b| {
            let mut b = b.host("locked", locked);
            // The default host's patterns come as --permit-open flags.
            b = b.arg("--permit-open").arg(&allowed);
            b
        })
        .await?;
        let dead = refused_port()?;

        let cases = [
            (
                "another port",
                local("", free_port()?, "127.0.0.1", dead),
                "\"default\"",
            ),
            // Hosts are compared as written, never resolved.
            (
                "the same target by another name",
                local("", free_port()?, "localhost", echo.port()),
                "\"default\"",
            ),
            (
                "a host whose permit_open is none",
                local("locked", free_port()?, "127.0.0.1", echo.port()),
                "\"locked\"",
            ),
        ];
        for (what, req, host) in &cases {
            let result = bed.client.clone().open_local_forward(req.clone()).await;
            let status = expect_status(
                &format!("OpenLocalForward to {what}"),
                result,
                tonic::Code::PermissionDenied,
                &[&format!("not permitted by permit_open of host {host}")],
            )?;
            if *host == "\"default\"" {
                ensure!(
                    status.message().contains(&allowed),
                    "the refusal does not list the allowed {allowed}: {:?}",
                    status.message()
                );
            }
            let port = req.local_port as u16;
            ensure!(
                port_is_free(port),
                "{what}: local port {port} was bound by a refused forward"
            );
        }
        nothing_opened(&bed, "after the permit_open refusals").await?;

        // The permitted target works.
        let tunnel = bed
            .client
            .clone()
            .open_local_forward(local("", 0, "127.0.0.1", echo.port()))
            .await
            .context("OpenLocalForward to the permitted target")?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        let back = exchange(local_port(&tunnel)?, b"permitted", IO_TIMEOUT).await?;
        ensure!(
            back == b"permitted",
            "echo through the permitted forward: {back:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_forward_binds_must_match_permit_listen() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let permitted = free_port()?;
        let bed = Bed::with(sshd, |b| {
            b.arg("--permit-listen").arg(permitted.to_string())
        })
        .await?;
        let remote = |remote_port: u16| OpenRemoteForwardRequest {
            remote_port: remote_port.into(),
            local_host: "127.0.0.1".into(),
            local_port: echo.port().into(),
            ..Default::default()
        };
        let other = free_port()?;
        for (what, port) in [("another port", other), ("port 0 (any)", 0)] {
            let result = bed.client.clone().open_remote_forward(remote(port)).await;
            expect_status(
                &format!("OpenRemoteForward on {what}"),
                result,
                tonic::Code::PermissionDenied,
                &["not permitted by permit_listen of host \"default\""],
            )?;
        }
        ensure!(
            port_is_free(other),
            "port {other} is bound on the server after a refused remote forward"
        );
        nothing_opened(&bed, "after the permit_listen refusals").await?;

        let tunnel = bed
            .client
            .clone()
            .open_remote_forward(remote(permitted))
            .await
            .context("OpenRemoteForward on the permitted port")?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        ensure!(remote_port(&tunnel)? == permitted);
        let back = exchange(permitted, b"permitted", IO_TIMEOUT).await?;
        ensure!(
            back == b"permitted",
            "echo through the remote forward: {back:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn local_forwards_listen_only_on_loopback_unless_allow_local_bind() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let bed = Bed::with(sshd, |b| b).await?;
        let port = free_port()?;
        let wildcard = OpenLocalForwardRequest {
            bind_address: "0.0.0.0".into(),
            ..local("", port, "127.0.0.1", echo.port())
        };
        let result = bed
            .client
            .clone()
            .open_local_forward(wildcard.clone())
            .await;
        let status = expect_status(
            "OpenLocalForward on 0.0.0.0",
            result,
            tonic::Code::PermissionDenied,
            &["allow_local_bind"],
        )?;
        ensure!(
            status.message().contains("--allow-local-bind 0.0.0.0"),
            "the refusal does not name the fix: {:?}",
            status.message()
        );
        ensure!(
            TcpListener::bind(("0.0.0.0", port)).is_ok(),
            "0.0.0.0:{port} was bound by a refused forward"
        );
        nothing_opened(&bed, "after the allow_local_bind refusal").await?;

        // Loopback needs no permission.
        for loopback in ["127.0.0.1", "localhost"] {
            let req = OpenLocalForwardRequest {
                bind_address: loopback.into(),
                ..local("", 0, "127.0.0.1", echo.port())
            };
            bed.client
                .clone()
                .open_local_forward(req)
                .await
                .with_context(|| format!("OpenLocalForward on {loopback}"))?;
        }

        // The fix the message names works (closed at once: it listens on
        // every interface).
        let allowed = Tunneld::builder(&bed.sshd)
            .arg("--allow-local-bind")
            .arg("0.0.0.0")
            .start()
            .await?;
        let tunnel = allowed
            .client()
            .open_local_forward(OpenLocalForwardRequest {
                local_port: 0,
                ..wildcard
            })
            .await
            .context("OpenLocalForward on 0.0.0.0 with --allow-local-bind 0.0.0.0")?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        close(&allowed.client(), &tunnel.id).await?;
        Ok(())
    })
    .await
}
