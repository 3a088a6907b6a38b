//! `grpc.health.v1`: the statuses tunneld reports, following its
//! lifecycle, and the plaintext health-only listener (`--health-listen`)
//! that kubelet's native gRPC probes and `grpc_health_probe` can reach.
//!
//! The statuses, on the API and on the health listener alike:
//! - `""` (the server as a whole, what a probe asks by default) and
//!   `tunnel.v1.TunnelService`: SERVING from start until a drain begins;
//! - [`READINESS`]: SERVING once declared and persisted tunnels have been
//!   opened once (as `/readyz` and systemd's `READY=1`), NOT_SERVING
//!   before that and from the start of a drain.
//!
//! The health listener serves nothing but the health service, with no
//! TLS and no token: it tells only whether tunneld is up and ready. Its
//! connections are capped at [`MAX_CONNECTIONS`], each with at most
//! [`MAX_STREAMS`] calls (a `Watch` lasts until its client goes away),
//! and peers that vanish are found by HTTP/2 keepalive.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::{
    ServingStatus,
    pb::health_server::HealthServer,
    server::{HealthReporter, HealthService},
};
use tunnel_proto::v1::tunnel_service_server::TunnelServiceServer;

use super::incoming::{self, AtCap};
use crate::{
    daemon::{Lifecycle, Phase},
    grpc::TunnelApi,
    logging::Throttle,
};

/// The service name whose status is readiness (Kubernetes'
/// `readinessProbe.grpc.service`).
pub const READINESS: &str = "readiness";

/// Connections the health listener holds at once; past it a new one is
/// closed at once (a probe opens one per check).
pub const MAX_CONNECTIONS: usize = 16;

/// Calls one health connection may carry at once.
pub const MAX_STREAMS: u32 = 4;

/// Connections closed at [`MAX_CONNECTIONS`], logged a few per 10 s.
static AT_CAP: AtCap = AtCap::new(
    Throttle::new(
        "health connections closed at the cap",
        5,
        Duration::from_secs(10),
    ),
    "health",
    "the health listener",
    "a fixed cap: find what holds them (`ss -tnp`)",
);

/// The health service, for the API's server and the health listener.
pub type Service = HealthServer<HealthService>;

/// The health service, its statuses as `lifecycle` stands and kept in step
/// with it for as long as tunneld runs.
pub async fn following(lifecycle: &Lifecycle) -> Service {
    HealthServer::new(HealthService::from_health_reporter(
        reporter_following(lifecycle).await,
    ))
}

/// The reporter behind [`following`].
async fn reporter_following(lifecycle: &Lifecycle) -> HealthReporter {
    let reporter = HealthReporter::new();
    let mut phase = lifecycle.subscribe();
    let now = *phase.borrow_and_update();
    report(&reporter, now).await;
    tokio::spawn({
        let reporter = reporter.clone();
        async move {
            while phase.changed().await.is_ok() {
                let now = *phase.borrow_and_update();
                report(&reporter, now).await;
                if now == Phase::Stopping {
                    return;
                }
            }
        }
    });
    reporter
}

/// Sets every status for `phase`.
async fn report(reporter: &HealthReporter, phase: Phase) {
    let (live, ready) = match phase {
        Phase::Starting => (ServingStatus::Serving, ServingStatus::NotServing),
        Phase::Ready | Phase::Reloading => (ServingStatus::Serving, ServingStatus::Serving),
        // NOT_SERVING from the start of a drain, so load balancers and
        // probes send no new work while open connections finish.
        Phase::Draining | Phase::Stopping => (ServingStatus::NotServing, ServingStatus::NotServing),
    };
    reporter.set_service_status("", live).await;
    match live {
        ServingStatus::Serving => {
            reporter
                .set_serving::<TunnelServiceServer<TunnelApi>>()
                .await
        }
        _ => {
            reporter
                .set_not_serving::<TunnelServiceServer<TunnelApi>>()
                .await
        }
    }
    reporter.set_service_status(READINESS, ready).await;
}

/// Serves `service` alone on `listener`, plaintext, until `shutdown`.
pub async fn serve(listener: TcpListener, service: Service, shutdown: CancellationToken) {
    let served = Server::builder()
        .max_concurrent_streams(MAX_STREAMS)
        .http2_max_header_list_size(super::MAX_HEADER_LIST_BYTES)
        .max_frame_size(super::MAX_FRAME_BYTES)
        .http2_max_pending_accept_reset_streams(Some(super::MAX_PENDING_RESETS))
        .http2_keepalive_interval(Some(super::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(super::KEEPALIVE_TIMEOUT))
        .add_service(service)
        .serve_with_incoming_shutdown(
            incoming::incoming(listener, MAX_CONNECTIONS, &AT_CAP),
            shutdown.cancelled_owned(),
        )
        .await;
    if let Err(e) = served {
        tracing::error!("the health listener stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::{HealthCheckRequest, health_server::Health as _};

    use super::*;

    async fn status(h: &HealthReporter, service: &str) -> i32 {
        let req = tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        });
        // The service behind the server: what a Check call reaches.
        let svc = HealthService::from_health_reporter(h.clone());
        svc.check(req)
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    #[tokio::test]
    async fn statuses_follow_the_lifecycle() {
        let lifecycle = Lifecycle::default();
        let h = reporter_following(&lifecycle).await;
        let serving = ServingStatus::Serving as i32;
        let not = ServingStatus::NotServing as i32;
        let api = "tunnel.v1.TunnelService";
        assert_eq!(
            (
                status(&h, "").await,
                status(&h, api).await,
                status(&h, READINESS).await
            ),
            (serving, serving, not),
            "starting: alive, not ready"
        );
        for (phase, want) in [
            (Phase::Ready, (serving, serving, serving)),
            (Phase::Reloading, (serving, serving, serving)),
            (Phase::Ready, (serving, serving, serving)),
            (Phase::Draining, (not, not, not)),
        ] {
            lifecycle.set(phase);
            let mut got = (0, 0, 0);
            // The follower runs as a task: give it a moment.
            for _ in 0..100 {
                got = (
                    status(&h, "").await,
                    status(&h, api).await,
                    status(&h, READINESS).await,
                );
                if got == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(got, want, "{phase:?}");
        }
    }
}
