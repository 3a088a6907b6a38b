//! The health listener (`--health-listen`): `grpc.health.v1` alone, in
//! plaintext, as kubelet's native gRPC probes and grpc_health_probe call
//! it. Liveness ("") holds from start to the drain; readiness
//! ("readiness") waits for declared tunnels to be tried once and ends when
//! the drain starts; nothing but health is served there.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tunnel_proto::v1::ListRequest;
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;
use tunneld_tests::blackhole::Blackhole;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::sshd::free_port;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Sshd, Tunneld, TunneldBuilder};

use crate::support::{Bed, connect, e2e};

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

/// A plaintext channel to the health port, as kubelet dials it.
async fn probe_channel(port: u16) -> Result<Channel> {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to the health port {port}"))
}

/// What a probe of `service` on the health port reads, over a connection
/// of its own (kubelet opens one per probe).
async fn probe(port: u16, service: &str) -> Result<i32> {
    let mut client = HealthClient::new(probe_channel(port).await?);
    let reply = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .with_context(|| format!("health Check({service:?}) on port {port}"))?;
    Ok(reply.into_inner().status)
}

/// Probes each service of `want` on `port`: each must have its status.
async fn expect_statuses(port: u16, want: &[(&str, i32)], when: &str) -> Result<()> {
    for &(service, status) in want {
        let got = probe(port, service).await?;
        ensure!(
            got == status,
            "{when}: health {service:?} is {got}, want {status}"
        );
    }
    Ok(())
}

async fn probe_until(port: u16, service: &str, want: i32) -> Result<()> {
    poll_until(
        &format!("health {service:?} on port {port} to be {want}"),
        Duration::from_secs(30),
        || async move { Ok((probe(port, service).await? == want).then_some(())) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_declared_tunnels_and_only_health_is_served() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        // The host behind a frozen relay: the declared tunnel's first open
        // hangs in the SSH handshake until the relay passes again.
        let relay = Blackhole::to_sshd(&sshd).await?;
        relay.freeze();
        let (health_port, rport) = (free_port()?, free_port()?);
        let service = TcpPeer::echo().await?;
        let mut table = toml::Table::new();
        table.insert(
            "remote".into(),
            format!("{rport}:127.0.0.1:{}", service.port()).into(),
        );
        let daemon = TunneldBuilder::new(relay.host_spec(&sshd)?)
            .tunnel("web", table)
            .arg(format!("--health-listen=127.0.0.1:{health_port}"))
            .start()
            .await?;
        let client = daemon.client();
        let _bed = Bed {
            daemon,
            sshd,
            client,
        };

        // Alive, the API's service too, but not ready.
        expect_statuses(
            health_port,
            &[
                ("", SERVING),
                ("tunnel.v1.TunnelService", SERVING),
                ("readiness", NOT_SERVING),
            ],
            "while the declared tunnel's first open still hangs",
        )
        .await?;
        let unknown = HealthClient::new(probe_channel(health_port).await?)
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .err()
            .context("a service tunneld does not have was answered")?;
        ensure!(unknown.code() == Code::NotFound, "unknown service: {unknown:?}");

        relay.pass();
        probe_until(health_port, "readiness", SERVING).await?;

        // Health alone: the API and reflection are not served there, even
        // though this API takes plaintext calls on its own port.
        let listed = TunnelServiceClient::new(probe_channel(health_port).await?)
            .list(ListRequest::default())
            .await
            .err()
            .context("List answered on the health port")?;
        ensure!(listed.code() == Code::Unimplemented, "List: {listed:?}");
        let reflection = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            probe_channel(health_port).await?,
        )
        .server_reflection_info(tokio_stream::iter([
            tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            },
        ]))
        .await
        .err()
        .context("reflection answered on the health port")?;
        ensure!(
            reflection.code() == Code::Unimplemented,
            "reflection: {reflection:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_turns_both_probes_and_a_watch_not_serving_then_frees_the_port() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let health_port = free_port()?;
        let mut bed = Bed::with(sshd, |b| {
            b.arg(format!("--health-listen=127.0.0.1:{health_port}"))
                .arg("--drain-timeout=60s")
        })
        .await?;
        probe_until(health_port, "readiness", SERVING).await?;
        ensure!(probe(health_port, "").await? == SERVING, "liveness");

        // A watcher (grpc_health_probe's -watch, a load balancer) on the
        // health port.
        let mut watch = HealthClient::new(probe_channel(health_port).await?)
            .watch(HealthCheckRequest {
                service: "readiness".into(),
            })
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await??
            .context("the watch ended at once")?;
        ensure!(first.status == SERVING, "watch began with {first:?}");

        // A connection through a forward keeps the drain going.
        let echo = TcpPeer::echo().await?;
        let t = crate::support::open_local(&bed.client, "", echo.port()).await?;
        let mut held = connect(crate::support::local_port(&t)?).await?;
        held.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), held.read_exact(&mut buf)).await??;

        bed.daemon.signal(Signal::SIGTERM)?;
        let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await??
            .context("the watch ended without NOT_SERVING")?;
        ensure!(next.status == NOT_SERVING, "watch on SIGTERM: {next:?}");
        expect_statuses(
            health_port,
            &[("", NOT_SERVING), ("readiness", NOT_SERVING)],
            "during the drain",
        )
        .await?;

        // The connection ends, the drain with it; tunneld exits 0 and the
        // health port is free.
        drop(held);
        let status = bed.daemon.exited_within(Duration::from_secs(20)).await?;
        ensure!(status.code() == Some(0), "tunneld exited with {status}");
        ensure!(
            port_is_free(health_port),
            "health port {health_port} still taken after exit"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_listen_it_cannot_serve_is_refused_with_exit_2() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = taken.local_addr()?;
        for (value, want) in [
            (
                "4523".to_string(),
                "--health-listen \"4523\" is not HOST:PORT".to_string(),
            ),
            (
                addr.to_string(),
                format!("cannot serve health checks on {addr}: "),
            ),
        ] {
            let refused = Tunneld::builder(&sshd)
                .arg(format!("--health-listen={value}"))
                .start_refused()
                .await?;
            ensure!(
                refused.status.code() == Some(2) && refused.stderr.contains(&want),
                "--health-listen={value}: {refused:?}"
            );
        }
        Ok(())
    })
    .await
}
