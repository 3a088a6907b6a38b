//! `tunnelctl open-local`, `open-dynamic` and `open-remote`: open a forward,
//! print the tunnel; with `--attach`, hand over to [`super::attach`].
//!
//! Each verb turns its flags into a [`ForwardSpec`] (the `-L`/`-R`/`-D`
//! spec, or one made from the separate flags), then the spec into its
//! request: the kinds differ only in which fields each side goes to.

use std::process::ExitCode;
use std::time::Duration;

use tunnel_proto::pbjson_types;
use tunnel_proto::v1::open_attached_request::Forward;
use tunnel_proto::v1::{
    OpenDynamicForwardRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel,
};

use super::{Context, attach, print};
use crate::cli::{OpenCommonArgs, OpenDynamicArgs, OpenLocalArgs, OpenRemoteArgs};
use crate::client::Client;
use crate::output;
use crate::spec::{ForwardSpec, Listen, Target, TcpListen, WILDCARD};

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
    name: String,
    persist: bool,
}

impl Shared {
    fn new(args: &OpenCommonArgs) -> Self {
        Shared {
            host: args.host.clone().unwrap_or_default(),
            max_connections: args.limits.max_connections.unwrap_or_default(),
            idle_timeout: args.limits.idle_timeout.map(proto_duration),
            name: args.name.clone().unwrap_or_default(),
            persist: args.persist,
        }
    }
}

/// The spec when there is one, else one made of the flags, given in the
/// spec's order. clap makes both port flags required without a spec; an
/// empty target host is left for tunneld to default (localhost).
fn spec_or_flags(
    spec: Option<&ForwardSpec>,
    bind: Option<&str>,
    listen_port: Option<u16>,
    target_host: Option<&str>,
    target_port: Option<u16>,
) -> ForwardSpec {
    match spec {
        Some(spec) => spec.clone(),
        None => ForwardSpec {
            listen: Listen::Tcp(TcpListen {
                bind: bind.map(str::to_owned),
                port: listen_port.unwrap_or_default(),
            }),
            target: Target::Tcp {
                host: target_host.unwrap_or_default().to_owned(),
                port: target_port.unwrap_or_default(),
            },
        },
    }
}

/// A TCP listening side's fields, `(bind_address, port)`, with no bind
/// address as empty (tunneld's default).
fn tcp_fields(tcp: TcpListen) -> (String, u32) {
    (tcp.bind.unwrap_or_default(), tcp.port.into())
}

/// A bind address tunneld binds itself: `*` becomes [`LOCAL_WILDCARD`].
fn local_bind(bind: String) -> String {
    if bind == WILDCARD {
        LOCAL_WILDCARD.to_string()
    } else {
        bind
    }
}

/// The fields of a forward's two sides, before they are put in the request
/// of its kind: `(bind, port, path)` of the listening side and
/// `(host, port, path)` of the target; whatever a side is not stays empty.
#[derive(Default)]
struct Sides {
    bind: String,
    listen_port: u32,
    listen_path: String,
    target_host: String,
    target_port: u32,
    target_path: String,
    dynamic: bool,
}

impl Sides {
    fn new(spec: ForwardSpec) -> Self {
        let mut sides = Sides::default();
        match spec.listen {
            Listen::Tcp(tcp) => (sides.bind, sides.listen_port) = tcp_fields(tcp),
            Listen::Path(path) => sides.listen_path = path,
        }
        match spec.target {
            Target::Tcp { host, port } => {
                sides.target_host = host;
                sides.target_port = port.into();
            }
            Target::Path(path) => sides.target_path = path,
            Target::Dynamic => sides.dynamic = true,
        }
        sides
    }
}

/// The forward `open-local` opens, from `-L` or the separate flags.
fn local_spec(args: &OpenLocalArgs) -> ForwardSpec {
    spec_or_flags(
        args.spec.as_ref(),
        args.bind.as_deref(),
        args.lport,
        args.rhost.as_deref(),
        args.rport,
    )
}

/// Builds the request from either `-L` or the separate flags. A path on
/// either side goes to `local_path` / `remote_path`, its host and port
/// fields left empty.
pub fn local_request(args: &OpenLocalArgs) -> OpenLocalForwardRequest {
    // `-L` refuses a SOCKS proxy (`dynamic`), so it is never set here.
    let sides = Sides::new(local_spec(args));
    let Shared {
        host,
        max_connections,
        idle_timeout,
        name,
        persist,
    } = Shared::new(&args.common);
    OpenLocalForwardRequest {
        host,
        bind_address: local_bind(sides.bind),
        local_port: sides.listen_port,
        remote_host: sides.target_host,
        remote_port: sides.target_port,
        max_connections,
        idle_timeout,
        local_path: sides.listen_path,
        remote_path: sides.target_path,
        name,
        persist,
    }
}

/// The forward `open-remote` opens, from `-R` or the separate flags.
fn remote_spec(args: &OpenRemoteArgs) -> ForwardSpec {
    spec_or_flags(
        args.spec.as_ref(),
        args.rbind.as_deref(),
        args.rport,
        args.lhost.as_deref(),
        args.lport,
    )
}

/// Builds the request from either `-R` or the separate flags. A `*` bind
/// address is passed on as is: the SSH server reads it as "every interface",
/// as it does for `ssh -R`. A path goes to `remote_path` (listening side) or
/// `local_path` (target); `-R` without a target is a SOCKS proxy
/// (`dynamic`), with the `--permit-remote-open` patterns.
pub fn remote_request(args: &OpenRemoteArgs) -> OpenRemoteForwardRequest {
    let sides = Sides::new(remote_spec(args));
    let Shared {
        host,
        max_connections,
        idle_timeout,
        name,
        persist,
    } = Shared::new(&args.common);
    OpenRemoteForwardRequest {
        host,
        remote_bind_address: sides.bind,
        remote_port: sides.listen_port,
        local_host: sides.target_host,
        local_port: sides.target_port,
        max_connections,
        idle_timeout,
        remote_path: sides.listen_path,
        local_path: sides.target_path,
        dynamic: sides.dynamic,
        permit_remote_open: args.permit_remote_open.clone(),
        name,
        persist,
    }
}

/// Where `open-dynamic` listens, from `-D` or `--lport`/`--bind`.
fn dynamic_listen(args: &OpenDynamicArgs) -> TcpListen {
    match &args.spec {
        Some(spec) => spec.clone(),
        // clap makes --lport required without -D.
        None => TcpListen {
            bind: args.bind.clone(),
            port: args.lport.unwrap_or_default(),
        },
    }
}

/// Builds the request from either `-D` or `--lport`/`--bind`; a `*` bind
/// address becomes one tunneld can bind, as for `open-local`.
pub fn dynamic_request(args: &OpenDynamicArgs) -> OpenDynamicForwardRequest {
    let (bind, port) = tcp_fields(dynamic_listen(args));
    let Shared {
        host,
        max_connections,
        idle_timeout,
        name,
        persist,
    } = Shared::new(&args.common);
    OpenDynamicForwardRequest {
        host,
        bind_address: local_bind(bind),
        local_port: port,
        max_connections,
        idle_timeout,
        name,
        persist,
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
    let what = cannot_open("local", &local_spec(args));
    let request = local_request(args);
    run(ctx, Forward::Local(request), what, args.common.attach).await
}

/// Opens a SOCKS dynamic forward (`ssh -D`).
pub async fn run_dynamic(ctx: &Context, args: &OpenDynamicArgs) -> anyhow::Result<ExitCode> {
    let spec = ForwardSpec {
        listen: Listen::Tcp(dynamic_listen(args)),
        target: Target::Dynamic,
    };
    let what = cannot_open("dynamic", &spec);
    let request = dynamic_request(args);
    run(ctx, Forward::Dynamic(request), what, args.common.attach).await
}

/// Opens a remote forward (`ssh -R`), or a reverse SOCKS proxy.
pub async fn run_remote(ctx: &Context, args: &OpenRemoteArgs) -> anyhow::Result<ExitCode> {
    let spec = remote_spec(args);
    let kind = if spec.is_dynamic() {
        "remote dynamic"
    } else {
        "remote"
    };
    let what = cannot_open(kind, &spec);
    let request = remote_request(args);
    run(ctx, Forward::Remote(request), what, args.common.attach).await
}

/// The error context of opening a forward, in the user's terms: `cannot
/// open local forward of port 5432 to db:5432`, `... of /tmp/pg.sock to
/// /run/pg.sock`, `cannot open dynamic forward of port 1080`. An empty
/// target host is tunneld's default, localhost.
fn cannot_open(kind: &str, spec: &ForwardSpec) -> String {
    let listen = match &spec.listen {
        Listen::Tcp(tcp) => format!("port {}", tcp.port),
        Listen::Path(path) => path.clone(),
    };
    let target = match &spec.target {
        Target::Tcp { host, port } => {
            let host = if host.is_empty() { "localhost" } else { host };
            format!(" to {}", tunnel_proto::addr::join_host_port(host, port))
        }
        Target::Path(path) => format!(" to {path}"),
        Target::Dynamic => String::new(),
    };
    format!("cannot open {kind} forward of {listen}{target}")
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
            .and_then(Cli::check)
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

    fn dynamic(args: &[&str]) -> OpenDynamicForwardRequest {
        let mut all = vec!["open-dynamic"];
        all.extend_from_slice(args);
        match cli(&all) {
            Command::OpenDynamic(a) => dynamic_request(&a),
            other => panic!("{other:?}"),
        }
    }

    /// What `run_*` names the forward in errors, for the same arguments.
    fn what(args: &[&str]) -> String {
        match cli(args) {
            Command::OpenLocal(a) => cannot_open("local", &local_spec(&a)),
            Command::OpenRemote(a) => {
                let spec = remote_spec(&a);
                let kind = if spec.is_dynamic() {
                    "remote dynamic"
                } else {
                    "remote"
                };
                cannot_open(kind, &spec)
            }
            Command::OpenDynamic(a) => cannot_open(
                "dynamic",
                &ForwardSpec {
                    listen: Listen::Tcp(dynamic_listen(&a)),
                    target: Target::Dynamic,
                },
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_forward_in_the_users_terms() {
        for (args, expected) in [
            (
                &["open-local", "-L", "5432:db:5432"][..],
                "cannot open local forward of port 5432 to db:5432",
            ),
            (
                &["open-remote", "--rport", "8080", "--lport", "3000"],
                "cannot open remote forward of port 8080 to localhost:3000",
            ),
            (
                &[
                    "open-local",
                    "-L",
                    "/tmp/pg.sock:/run/postgresql/.s.PGSQL.5432",
                ],
                "cannot open local forward of /tmp/pg.sock to /run/postgresql/.s.PGSQL.5432",
            ),
            (
                &["open-local", "-L", "7000:[fd00::5]:22"],
                "cannot open local forward of port 7000 to [fd00::5]:22",
            ),
            (
                &["open-dynamic", "-D", "1080"],
                "cannot open dynamic forward of port 1080",
            ),
            (
                &["open-dynamic", "--lport", "1080", "--bind", "*"],
                "cannot open dynamic forward of port 1080",
            ),
            (
                &["open-remote", "-R", "1080"],
                "cannot open remote dynamic forward of port 1080",
            ),
            (
                &["open-remote", "-R", "/tmp/app.sock:localhost:3000"],
                "cannot open remote forward of /tmp/app.sock to localhost:3000",
            ),
        ] {
            assert_eq!(what(args), expected, "{args:?}");
        }
    }

    #[test]
    fn local_paths_go_to_the_path_fields() {
        let r = local(&["-L", "/tmp/pg.sock:/run/pg.sock"]);
        assert_eq!(
            (r.local_path.as_str(), r.remote_path.as_str()),
            ("/tmp/pg.sock", "/run/pg.sock")
        );
        assert_eq!((r.bind_address.as_str(), r.local_port), ("", 0));
        assert_eq!((r.remote_host.as_str(), r.remote_port), ("", 0));

        let r = local(&["-L", "*:2375:/var/run/docker.sock"]);
        assert_eq!((r.bind_address.as_str(), r.local_port), ("0.0.0.0", 2375));
        assert_eq!(r.remote_path, "/var/run/docker.sock");
        assert_eq!(
            (r.local_path.as_str(), r.remote_host.as_str(), r.remote_port),
            ("", "", 0)
        );

        let r = local(&["-L", "/tmp/pg.sock:db:5432"]);
        assert_eq!((r.local_path.as_str(), r.local_port), ("/tmp/pg.sock", 0));
        assert_eq!((r.remote_host.as_str(), r.remote_port), ("db", 5432));
        assert_eq!(r.remote_path, "");
    }

    #[test]
    fn remote_paths_and_socks() {
        let r = remote(&["-R", "/tmp/app.sock:/run/app.sock"]);
        assert_eq!(
            (r.remote_path.as_str(), r.local_path.as_str()),
            ("/tmp/app.sock", "/run/app.sock")
        );
        assert_eq!((r.remote_port, r.local_port, r.dynamic), (0, 0, false));

        let r = remote(&["-R", "9000:/run/app/api.sock"]);
        assert_eq!(
            (r.remote_port, r.local_path.as_str()),
            (9000, "/run/app/api.sock")
        );
        assert_eq!((r.remote_path.as_str(), r.local_host.as_str()), ("", ""));

        let r = remote(&["-R", "1080"]);
        assert!(r.dynamic && r.permit_remote_open.is_empty());
        assert_eq!((r.remote_port, r.remote_bind_address.as_str()), (1080, ""));
        assert_eq!(
            (r.local_host.as_str(), r.local_port, r.local_path.as_str()),
            ("", 0, "")
        );

        // `*` stays `*` for the server, as with ssh -R.
        let r = remote(&["-R", "*:1080", "--permit-remote-open", "db:5432"]);
        assert!(r.dynamic);
        assert_eq!((r.remote_bind_address.as_str(), r.remote_port), ("*", 1080));
        assert_eq!(r.permit_remote_open, ["db:5432"]);

        let r = remote(&["-R", "/tmp/socks.sock"]);
        assert!(r.dynamic);
        assert_eq!(
            (r.remote_path.as_str(), r.remote_port),
            ("/tmp/socks.sock", 0)
        );
        assert!(!remote(&["-R", "8080:localhost:3000"]).dynamic);
    }

    #[test]
    fn dynamic_from_flags_and_spec_agree() {
        let spec = dynamic(&["-D", "1080", "--host", "bastion", "--max-connections", "5"]);
        let flags = dynamic(&[
            "--lport",
            "1080",
            "--host",
            "bastion",
            "--max-connections",
            "5",
        ]);
        assert_eq!(spec, flags);
        assert_eq!(
            (spec.host.as_str(), spec.bind_address.as_str()),
            ("bastion", "")
        );
        assert_eq!((spec.local_port, spec.max_connections), (1080, 5));
        assert_eq!(dynamic(&["-D", "*:1080"]).bind_address, "0.0.0.0");
        assert_eq!(dynamic(&["-D", ":1080"]).bind_address, "0.0.0.0");
        assert_eq!(
            dynamic(&["--lport", "0", "--bind", "*"]).bind_address,
            "0.0.0.0"
        );
        assert_eq!(dynamic(&["-D", "[::1]:0"]).bind_address, "::1");
        assert_eq!(
            dynamic(&["-D", "0", "--idle-timeout", "3s"])
                .idle_timeout
                .map(|d| d.seconds),
            Some(3)
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
                ["open-dynamic", "-D", "0"],
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
