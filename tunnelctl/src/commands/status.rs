//! `tunnelctl status`: is tunneld up, which version, is it healthy, and what
//! does it hold. Asks `GetInfo`, the standard `grpc.health.v1` check, and
//! `List`, at once, within one `--timeout`.

use std::process::ExitCode;
use std::time::SystemTime;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tunnel_proto::v1::tunnel_service_client::TunnelServiceClient;
use tunnel_proto::v1::tunnel_service_server::SERVICE_NAME;
use tunnel_proto::v1::{GetInfoRequest, ListRequest};

use super::{Context, print, report};
use crate::cli::StatusArgs;
use crate::client;
use crate::output::status::{self, Status};

/// The health status that means all is well.
const SERVING: &str = "SERVING";

/// Reports tunneld's state; exits 0 only when it is SERVING.
pub async fn run(ctx: &Context, _args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let deadline = ctx.deadline();
    let channel = ctx.channel(deadline).await?;
    let mut info_client = TunnelServiceClient::new(channel.clone());
    let mut list_client = info_client.clone();
    let mut health_client = HealthClient::new(channel);
    let (info, health, list) = tokio::join!(
        ctx.call(
            deadline,
            "cannot get tunneld's version",
            info_client.get_info(GetInfoRequest {}),
        ),
        health(ctx, deadline, &mut health_client),
        ctx.call(
            deadline,
            "cannot list tunnels",
            list_client.list(ListRequest {}),
        ),
    );
    let status = Status {
        address: ctx.remote.to_string(),
        info: info?,
        health: health?,
        list: list?,
    };
    print(&status::status(ctx.mode, &status, SystemTime::now())?)?;
    if status.health == SERVING {
        Ok(ExitCode::SUCCESS)
    } else {
        report(&format!(
            "tunneld at {} is not serving (health {}); see its log",
            ctx.remote, status.health
        ));
        Ok(ExitCode::FAILURE)
    }
}

/// The serving status of `tunnel.v1.TunnelService` by name; a health
/// service that does not know it answers NOT_FOUND, which is the protocol's
/// SERVICE_UNKNOWN.
async fn health(
    ctx: &Context,
    deadline: tokio::time::Instant,
    health: &mut HealthClient<client::Transport>,
) -> anyhow::Result<String> {
    let checked = ctx
        .call(
            deadline,
            "cannot check tunneld's health",
            health.check(HealthCheckRequest {
                service: SERVICE_NAME.to_string(),
            }),
        )
        .await;
    match checked {
        Ok(response) => Ok(ServingStatus::try_from(response.status)
            .unwrap_or(ServingStatus::Unknown)
            .as_str_name()
            .to_string()),
        Err(err) if client::has_code(&err, tonic::Code::NotFound) => {
            Ok(ServingStatus::ServiceUnknown.as_str_name().to_string())
        }
        Err(err) => Err(err),
    }
}
