//! `tunnelctl open-local` and `open-remote`: open a forward, print the tunnel;
//! with `--attach`, hand over to [`super::attach`].

use std::process::ExitCode;
use std::time::Duration;

use tunnel_proto::pbjson_types;
use tunnel_proto::v1::open_attached_request::Forward;
use tunnel_proto::v1::{OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel};

use super::{Context, attach, print};
use crate::cli::{OpenCommonArgs, OpenLocalArgs, OpenRemoteArgs};
use crate::client::Client;
use crate::output;
use crate::spec::{ForwardSpec, WILDCARD};

/// tunneld binds a local forward itself, so OpenSSH's `*` ("every interface")
/// must become an address it can bind. The API leaves IPv4 and IPv6 to one
/// address; `0.0.0.0` is what `ssh -L '*:...'` binds first.
const LOCAL_WILDCARD: &str = "0.0.0.0";

/// The request fields every kind of forward has, from [`OpenCommonArgs`].
/// Builders destructure it without `..`, so a field added here cannot be
/// left out of one kind's request.
struct Shared {
    host: String,
    max_connections: u32,
    idle_timeout: Option<pbjson_types::Duration>,
}

impl Shared {
    fn new(args: &OpenCommonArgs) -> Self {
        Shared {
            host: args.host.clone().unwrap_or_default(),
            max_connections: args.limits.max_connections.unwrap_or_default(),
            idle_timeout: args.limits.idle_timeout.map(proto_duration),
        }
    }
}

/// A forward as `[BIND:]LISTEN_PORT:TARGET_HOST:TARGET_PORT`, from `-L`/`-R`
/// or else the separate flags: the two kinds of request differ only in which
/// of their fields each part goes to. An empty target host is left for
/// tunneld to default.
struct Ends {
    bind: Option<String>,
    listen_port: u32,
    target_host: String,
    target_port: u32,
}

impl Ends {
    /// The spec's fields when there is one, else the flags', given in the
    /// spec's order.
    fn new(
        spec: Option<&ForwardSpec>,
        bind: Option<&str>,
        listen_port: Option<u16>,
        target_host: Option<&str>,
        target_port: Option<u16>,
    ) -> Self {
        match spec {
            Some(spec) => Ends {
                bind: spec.bind.clone(),
                listen_port: spec.listen_port.into(),
                target_host: spec.target_host.clone(),
                target_port: spec.target_port.into(),
            },
            // clap makes both port flags required without a spec.
            None => Ends {
                bind: bind.map(str::to_owned),
                listen_port: listen_port.unwrap_or_default().into(),
                target_host: target_host.unwrap_or_default().to_owned(),
                target_port: target_port.unwrap_or_default().into(),
            },
        }
    }
}

/// Builds the request from either `-L` or the separate flags.
pub fn local_request(args: &OpenLocalArgs) -> OpenLocalForwardRequest {
    let ends = Ends::new(
        args.spec.as_ref(),
        args.bind.as_deref(),
        args.lport,
        args.rhost.as_deref(),
        args.rport,
    );
    let bind_address = match ends.bind {
        Some(b) if b == WILDCARD => LOCAL_WILDCARD.to_string(),
        other => other.unwrap_or_default(),
    };
    let Shared {
        host,
        max_connections,
        idle_timeout,
    } = Shared::new(&args.common);
    OpenLocalForwardRequest {
        host,
        bind_address,
        local_port: ends.listen_port,
        remote_host: ends.target_host,
        remote_port: ends.target_port,
        max_connections,
        idle_timeout,
        ..Default::default()
    }
}

/// Builds the request from either `-R` or the separate flags. A `*` bind
/// address is passed on as is: the SSH server reads it as "every interface",
/// as it does for `ssh -R`.
pub fn remote_request(args: &OpenRemoteArgs) -> OpenRemoteForwardRequest {
    let ends = Ends::new(
        args.spec.as_ref(),
        args.rbind.as_deref(),
        args.rport,
        args.lhost.as_deref(),
        args.lport,
    );
    let Shared {
        host,
        max_connections,
        idle_timeout,
    } = Shared::new(&args.common);
    OpenRemoteForwardRequest {
        host,
        remote_bind_address: ends.bind.unwrap_or_default(),
        remote_port: ends.listen_port,
        local_host: ends.target_host,
        local_port: ends.target_port,
        max_connections,
        idle_timeout,
        ..Default::default()
    }
}

/// A duration as the API's `google.protobuf.Duration`; one too long for it
/// (hundreds of billions of years) is capped rather than wrapped.
fn proto_duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
    }
}

/// Opens a local forward (`ssh -L`).
pub async fn run_local(ctx: &Context, args: &OpenLocalArgs) -> anyhow::Result<ExitCode> {
    let request = local_request(args);
    let what = cannot_open(
        "local",
        request.local_port,
        &request.remote_host,
        request.remote_port,
    );
    run(ctx, Forward::Local(request), what, args.common.attach).await
}

/// Opens a remote forward (`ssh -R`).
pub async fn run_remote(ctx: &Context, args: &OpenRemoteArgs) -> anyhow::Result<ExitCode> {
    let request = remote_request(args);
    let what = cannot_open(
        "remote",
        request.remote_port,
        &request.local_host,
        request.local_port,
    );
    run(ctx, Forward::Remote(request), what, args.common.attach).await
}

/// The error context of opening a forward from `port` to `host:target_port`
/// (an empty host is tunneld's default, localhost).
fn cannot_open(kind: &str, port: u32, host: &str, target_port: u32) -> String {
    let host = if host.is_empty() { "localhost" } else { host };
    format!("cannot open {kind} forward of port {port} to {host}:{target_port}")
}

/// Opens `forward`, attached to this process or not; `what` names it in
/// errors.
async fn run(
    ctx: &Context,
    forward: Forward,
    what: String,
    attached: bool,
) -> anyhow::Result<ExitCode> {
    if attached {
        return attach::run(ctx, forward, what).await;
    }
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let tunnel = ctx.call(deadline, what, open(&mut client, forward)).await?;
    print_tunnel(ctx, tunnel)
}

/// Sends `forward` by the call of its kind; the responses differ in type
/// only, so each is cut down to the tunnel it carries.
async fn open(
    client: &mut Client,
    forward: Forward,
) -> Result<tonic::Response<Option<Tunnel>>, tonic::Status> {
    Ok(match forward {
        Forward::Local(r) => client.open_local_forward(r).await?.map(|o| o.tunnel),
        Forward::Remote(r) => client.open_remote_forward(r).await?.map(|o| o.tunnel),
        Forward::Dynamic(r) => client.open_dynamic_forward(r).await?.map(|o| o.tunnel),
    })
}

fn print_tunnel(ctx: &Context, tunnel: Option<Tunnel>) -> anyhow::Result<ExitCode> {
    let tunnel = tunnel.ok_or_else(|| {
        anyhow::anyhow!("tunneld opened the forward but returned no tunnel; see `tunnelctl list`")
    })?;
    print(&output::tunnels::tunnel(ctx.mode, &tunnel)?)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn cli(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("tunnelctl").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn local(args: &[&str]) -> OpenLocalForwardRequest {
        let mut all = vec!["open-local"];
        all.extend_from_slice(args);
        match cli(&all) {
            Command::OpenLocal(a) => local_request(&a),
            other => panic!("{other:?}"),
        }
    }

    fn remote(args: &[&str]) -> OpenRemoteForwardRequest {
        let mut all = vec!["open-remote"];
        all.extend_from_slice(args);
        match cli(&all) {
            Command::OpenRemote(a) => remote_request(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_from_flags_and_spec_agree() {
        let flags = local(&[
            "--lport",
            "5432",
            "--rhost",
            "db.internal",
            "--rport",
            "5432",
            "--host",
            "bastion",
        ]);
        let spec = local(&["-L", "5432:db.internal:5432", "--host", "bastion"]);
        assert_eq!(flags, spec);
        assert_eq!(flags.host, "bastion");
        assert_eq!(flags.bind_address, "");
        assert_eq!(flags.remote_host, "db.internal");
        assert_eq!((flags.local_port, flags.remote_port), (5432, 5432));
    }

    #[test]
    fn local_wildcard_binds_every_ipv4_interface() {
        assert_eq!(local(&["-L", "*:80:web:80"]).bind_address, "0.0.0.0");
        assert_eq!(local(&["-L", "[::1]:80:web:80"]).bind_address, "::1");
    }

    #[test]
    fn remote_from_flags_and_spec_agree() {
        let flags = remote(&["--rport", "8080", "--lport", "3000"]);
        let spec = remote(&["-R", "8080:localhost:3000"]);
        assert_eq!(flags.remote_port, 8080);
        assert_eq!(flags.local_port, 3000);
        assert_eq!(spec.local_host, "localhost");
        assert_eq!(flags.local_host, "");
        assert_eq!(
            remote(&["-R", "*:0:localhost:3000"]).remote_bind_address,
            "*"
        );
    }

    #[test]
    fn host_goes_into_both_requests() {
        assert_eq!(local(&["-L", "0:db:5432", "--host", "web1"]).host, "web1");
        assert_eq!(remote(&["-R", "0:h:1", "--host", "web1"]).host, "web1");
        assert_eq!(remote(&["-R", "0:h:1"]).host, "");
    }

    #[test]
    fn errors_name_the_forward_with_localhost_for_an_empty_host() {
        assert_eq!(
            cannot_open("local", 5432, "db", 5432),
            "cannot open local forward of port 5432 to db:5432"
        );
        assert_eq!(
            cannot_open("remote", 8080, "", 3000),
            "cannot open remote forward of port 8080 to localhost:3000"
        );
    }

    #[test]
    fn limits_default_to_unset() {
        let r = local(&["-L", "0:db:5432"]);
        assert_eq!((r.max_connections, r.idle_timeout), (0, None));
        let r = remote(&["-R", "0:localhost:3000"]);
        assert_eq!((r.max_connections, r.idle_timeout), (0, None));
    }

    #[test]
    fn limits_go_into_both_requests() {
        let r = local(&[
            "-L",
            "0:db:5432",
            "--max-connections",
            "20",
            "--idle-timeout",
            "1m 500ms",
        ]);
        assert_eq!(r.max_connections, 20);
        assert_eq!(
            r.idle_timeout,
            Some(pbjson_types::Duration {
                seconds: 60,
                nanos: 500_000_000
            })
        );
        let r = remote(&[
            "--rport",
            "0",
            "--lport",
            "3000",
            "--max-connections=1",
            "--idle-timeout=2s",
        ]);
        assert_eq!(r.max_connections, 1);
        assert_eq!(r.idle_timeout.map(|d| d.seconds), Some(2));
    }

    #[test]
    fn bad_limits_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--max-connections", "0"),
            ("--max-connections", "-1"),
            ("--max-connections", "abc"),
            ("--idle-timeout", "0s"),
            ("--idle-timeout", "-1"),
            ("--idle-timeout", "abc"),
        ] {
            for verb in [
                ["open-local", "-L", "0:db:1"],
                ["open-remote", "-R", "0:h:1"],
            ] {
                let mut args = vec!["tunnelctl"];
                args.extend(verb);
                args.extend([flag, value]);
                let err = Cli::try_parse_from(&args).unwrap_err();
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{args:?}: {err}"
                );
                assert!(err.to_string().contains(flag), "{args:?}: {err}");
            }
        }
    }
}
