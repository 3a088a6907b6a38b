//! Command-line syntax: the clap types for the global flags and every verb.
//!
//! Values are validated here (through the parsers in [`crate::spec`]), so a
//! malformed flag never reaches tunneld.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::client::Addr;
use crate::spec::{
    ForwardSpec, TcpListen, check_permit_list, parse_count, parse_duration, parse_dynamic_forward,
    parse_env, parse_local_forward, parse_nonempty, parse_permit_remote_open, parse_port,
    parse_port_or_pick, parse_remote_forward,
};

/// Where tunneld listens unless told otherwise (its own default).
pub const DEFAULT_ADDR: &str = tunnel_proto::addr::DEFAULT_API_ADDR;

/// Bound on a call to tunneld when `--timeout` is not given. Generous because
/// opening a forward may first have to connect and authenticate to the SSH
/// host.
pub const DEFAULT_TIMEOUT: &str = "30s";

/// Help heading of the flags that apply to every verb.
const GLOBAL: &str = "Global options";

const MAIN_EXAMPLES: &str = "\
Examples:
  # Reach a database behind a bastion on local port 5432
  tunnelctl open-local --lport 5432 --rhost db.internal --rport 5432 --host bastion

  # Expose a local web app on port 8080 of the SSH server
  tunnelctl open-remote --rport 8080 --lport 3000

  # Keep a forward only while this command runs (Ctrl-C closes it), like ssh -N -L
  tunnelctl open-local --attach -L 5432:db.internal:5432 --host bastion

  # Run a command on a host
  tunnelctl exec --host web1 -- uptime

  # See what is open, then close it
  tunnelctl list
  tunnelctl close t-1

  # Follow hosts, tunnels and connections as they change
  tunnelctl watch

  # Talk to a tunneld on a Unix socket
  tunnelctl --addr unix:/run/tunneld/tunneld.sock status

  # A remote tunneld with a token and a client certificate (mutual TLS)
  tunnelctl --addr https://tunnel-box:4522 --token-file ~/.config/tunneld/token \
    --tls-ca ca.pem --tls-cert me.pem --tls-key me.key list";

const EXEC_EXAMPLES: &str = "\
Examples:
  # Run a command on a host
  tunnelctl exec --host web1 -- uptime

  # Arguments are joined with spaces and run by the remote shell, as with ssh
  tunnelctl exec --host web1 -- 'ls /var/log | wc -l'

  # Feed standard input and set variables
  tar cz ./site | tunnelctl exec --host web1 --env DEST=/srv -- 'tar xz -C \"$DEST\"'

  # Give up after 30 seconds (the command gets SIGTERM)
  tunnelctl exec --timeout 30s -- ./migrate.sh

  # Use the exit code in a script
  tunnelctl exec --host db1 -- pg_isready -q || echo 'database down'

  # Stream a file of any size, as `ssh HOST 'cat > PATH'`
  pg_dump app | tunnelctl exec --host backup -- 'cat > /srv/app.sql'

  # An interactive program on a terminal, as `ssh -t`
  tunnelctl exec -t --host db1 -- psql app";

const SSH_EXAMPLES: &str = "\
Examples:
  # A login shell on the default host, over tunneld's connection
  tunnelctl ssh

  # A login shell on another host
  tunnelctl ssh web1

  # A command on a terminal, as `ssh -t web1 top`
  tunnelctl ssh -t web1 top";

const OPEN_LOCAL_EXAMPLES: &str = "\
Examples:
  # Reach a database behind a bastion on local port 5432
  tunnelctl open-local --lport 5432 --rhost db.internal --rport 5432 --host bastion
  psql -h 127.0.0.1 -p 5432 app

  # The same in OpenSSH -L syntax
  tunnelctl open-local -L 5432:db.internal:5432 --host bastion

  # Let tunneld pick the local port, and close the tunnel later by id
  id=$(tunnelctl -q open-local --lport 0 --rport 5432)
  tunnelctl close \"$id\"

  # Keep the tunnel only while this runs, printing connections; Ctrl-C closes it
  tunnelctl open-local --attach -L 5432:db.internal:5432 --host bastion

  # At most 20 connections at once; close any idle for 10 minutes
  tunnelctl open-local -L 5432:db.internal:5432 --max-connections 20 --idle-timeout 10m

  # Unix sockets on either end, as ssh -L allows: a local socket to the
  # server's PostgreSQL socket, and a local port to the server's Docker socket
  tunnelctl open-local -L /tmp/pg.sock:/run/postgresql/.s.PGSQL.5432
  tunnelctl open-local -L 2375:/var/run/docker.sock";

const OPEN_REMOTE_EXAMPLES: &str = "\
Examples:
  # Expose a local web app on port 8080 of the SSH server
  tunnelctl open-remote --rport 8080 --lport 3000

  # The same in OpenSSH -R syntax, listening on every interface of the server
  # (honoured only if the server's GatewayPorts allows it)
  tunnelctl open-remote -R '*:8080:localhost:3000'

  # Share the app only while this runs, watching who connects; Ctrl-C closes it
  tunnelctl open-remote --attach -R 8080:localhost:3000 --host web1

  # One visitor at a time, dropped after 5 idle minutes
  tunnelctl open-remote -R 8080:localhost:3000 --max-connections 1 --idle-timeout 5m

  # A socket on the server carried to a local port, or to a local socket
  tunnelctl open-remote -R /tmp/app.sock:localhost:3000
  tunnelctl open-remote -R 9000:/run/app/api.sock

  # A SOCKS proxy on the server's port 1080 that connects from tunneld's
  # machine (ssh -R 1080), allowed to reach only two services
  tunnelctl open-remote -R 1080 --permit-remote-open intranet:80 \
    --permit-remote-open 'db.internal:*'";

const OPEN_DYNAMIC_EXAMPLES: &str = "\
Examples:
  # A SOCKS proxy on local port 1080 that reaches what the SSH host reaches
  tunnelctl open-dynamic -D 1080
  curl --socks5-hostname 127.0.0.1:1080 http://intranet/

  # The same with flags, through another host, for other machines too
  tunnelctl open-dynamic --lport 1080 --bind '*' --host bastion

  # Only while this runs, printing each connection; Ctrl-C closes it
  tunnelctl open-dynamic --attach -D 1080 --host bastion

  # Let tunneld pick the port; -o json shows which
  tunnelctl -o json open-dynamic -D 0 | jq .local.port";

const LIST_EXAMPLES: &str = "\
Examples:
  tunnelctl list
  tunnelctl list -o json
  tunnelctl ls -q          # tunnel ids only

  # Ports of the local forwards, with jq
  tunnelctl list -o json | jq '.tunnels[] | select(.kind == \"TUNNEL_KIND_LOCAL\") | .local.port'";

const CLOSE_EXAMPLES: &str = "\
Examples:
  tunnelctl close t-1 t-2

  # Close every tunnel
  tunnelctl close --all

  # Open, use and close in a script
  id=$(tunnelctl -q open-local --lport 15432 --rhost db.internal --rport 5432)
  pg_dump -h 127.0.0.1 -p 15432 app > app.sql
  tunnelctl close \"$id\"";

const HOSTS_EXAMPLES: &str = "\
Examples:
  tunnelctl hosts
  tunnelctl hosts -q       # host names only

  # Hosts whose last connection failed, and why
  tunnelctl hosts -o json | jq -r '.hosts[] | select(.state == \"SSH_CONNECTION_STATE_FAILED\") | \"\\(.name): \\(.stateDetail)\"'";

const RELOAD_EXAMPLES: &str = "\
Examples:
  # After editing [tunnels.*] in tunneld's config file
  tunnelctl reload
  tunnelctl reload -o json   # names added, changed, removed, unchanged";

const HOST_EXAMPLES: &str = "\
Examples:
  # A host for tunnels, as `ssh deploy@db.example.com` reaches it
  tunnelctl host add db --ssh deploy@db.example.com
  tunnelctl open-local --host db --lport 15432 --rport 5432

  # Through a bastion tunneld knows, kept across restarts
  tunnelctl host add inner --ssh app@10.0.0.7 --jump bastion --persist

  # Its own key and known_hosts (paths on tunneld's machine)
  tunnelctl host add ci --ssh ci@build:2222 --identity ~/.ssh/ci_ed25519 --known-hosts ~/.ssh/ci_known_hosts

  # Remove it, closing the tunnels over it
  tunnelctl host remove db --force";

const STATUS_EXAMPLES: &str = "\
Examples:
  tunnelctl status
  tunnelctl --addr unix:/run/tunneld/tunneld.sock status

  # Wait until tunneld serves (exit 0 when SERVING)
  until tunnelctl -q --timeout 1s status 2>/dev/null; do sleep 0.2; done

  # tunneld's version, for a bug report
  tunnelctl status -o json | jq -r .info.version";

const WATCH_EXAMPLES: &str = "\
Examples:
  # Everything: hosts and tunnels as they are, then every change (Ctrl-C stops)
  tunnelctl watch

  # One tunnel and its host; ends when the tunnel is closed
  tunnelctl watch t-3

  # Wait until a tunnel is closed, printing nothing
  tunnelctl -q watch t-3

  # One JSON object per event (NDJSON), e.g. every reconnect attempt
  tunnelctl watch -o json | jq -c 'select(.host.state == \"SSH_CONNECTION_STATE_RECONNECTING\")'";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  # bash
  tunnelctl completions bash > ~/.local/share/bash-completion/completions/tunnelctl

  # zsh (any directory in $fpath, before compinit runs)
  tunnelctl completions zsh > ~/.zfunc/_tunnelctl

  # fish
  tunnelctl completions fish > ~/.config/fish/completions/tunnelctl.fish

  # Just for the current bash session
  source <(tunnelctl completions bash)";

/// `tunnelctl`: the command-line client for tunneld.
#[derive(Debug, Parser)]
#[command(
    name = "tunnelctl",
    version,
    about = "Control tunneld: run commands over SSH and open port forwards",
    after_help = MAIN_EXAMPLES
)]
pub struct Cli {
    /// tunneld's gRPC address: HOST:PORT, http://HOST:PORT,
    /// https://HOST:PORT (TLS), or a Unix socket as unix:/PATH
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TUNNELD_ADDR",
        default_value = DEFAULT_ADDR,
        value_name = "ADDR"
    )]
    pub addr: Addr,

    /// Output format
    #[arg(short, long, global = true, help_heading = GLOBAL, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Bound on each call to tunneld, connecting included (for exec: connecting
    /// only; for --attach: connecting and opening; for watch: connecting and
    /// starting); goes before the verb, e.g. `tunnelctl --timeout 5s list`
    #[arg(long, help_heading = GLOBAL, value_name = "DURATION", default_value = DEFAULT_TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print ids only: tunnel ids (open-local, open-dynamic, open-remote,
    /// list, close), host
    /// names (hosts), nothing (status, watch)
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,

    /// The token and TLS.
    #[command(flatten)]
    pub security: SecurityArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How tunnelctl proves who it is to tunneld and secures the connection:
/// a bearer token, TLS, a client certificate.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Send the token in FILE (its first line; a NAME:TOKEN line as in
    /// tunneld's --token-file works too) to a tunneld started with
    /// --token-file. Or put the token itself in TUNNELD_TOKEN, or the file's
    /// name in TUNNELD_TOKEN_FILE; this flag wins over both, TUNNELD_TOKEN
    /// over TUNNELD_TOKEN_FILE
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Use TLS and trust only this CA (PEM) for tunneld's certificate
    /// [default with https://: the system's CAs]
    #[arg(long, global = true, help_heading = GLOBAL, env = "TUNNELD_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Use TLS and present this client certificate (PEM), for a tunneld
    /// started with --tls-client-ca; needs --tls-key
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TUNNELD_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TUNNELD_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Use TLS and check tunneld's certificate against this name instead of
    /// --addr's host (e.g. localhost when connecting to 127.0.0.1)
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TUNNELD_TLS_SERVER_NAME",
        value_name = "NAME",
        value_parser = parse_nonempty
    )]
    pub tls_server_name: Option<String>,
}

impl SecurityArgs {
    /// Whether any `--tls-*` flag (or its variable) is given: any of them
    /// selects TLS.
    pub fn wants_tls(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_key.is_some()
            || self.tls_server_name.is_some()
    }

    /// The client certificate and its key, when both are given.
    pub fn client_certificate(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.tls_cert.as_deref().zip(self.tls_key.as_deref())
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines and tables
    Table,
    /// The API's messages in proto3 JSON, as grpcurl prints them
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command on an SSH host and stream its output, like `ssh HOST CMD`
    #[command(after_help = EXEC_EXAMPLES)]
    Exec(ExecArgs),

    /// Open a login shell (or run a command) on an SSH host, like `ssh HOST`
    #[command(after_help = SSH_EXAMPLES)]
    Ssh(SshArgs),

    /// Listen on tunneld's machine and forward through an SSH host, like `ssh -L`
    #[command(after_help = OPEN_LOCAL_EXAMPLES)]
    OpenLocal(OpenLocalArgs),

    /// A SOCKS proxy on tunneld's machine that connects through an SSH host, like `ssh -D`
    #[command(after_help = OPEN_DYNAMIC_EXAMPLES)]
    OpenDynamic(OpenDynamicArgs),

    /// Listen on an SSH host and forward back to tunneld's side, like `ssh -R`
    #[command(after_help = OPEN_REMOTE_EXAMPLES)]
    OpenRemote(OpenRemoteArgs),

    /// List open tunnels
    #[command(visible_alias = "ls", after_help = LIST_EXAMPLES)]
    List(ListArgs),

    /// Close tunnels by id, or all of them
    #[command(after_help = CLOSE_EXAMPLES)]
    Close(CloseArgs),

    /// List the SSH hosts tunneld knows and the state of their connections
    #[command(after_help = HOSTS_EXAMPLES)]
    Hosts(HostsArgs),

    /// Show whether tunneld is up: its version, health, tunnels and hosts
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),

    /// Follow hosts, tunnels and connections as they change, one line each
    #[command(after_help = WATCH_EXAMPLES)]
    Watch(WatchArgs),

    /// Add or remove SSH hosts while tunneld runs
    #[command(subcommand, after_help = HOST_EXAMPLES)]
    Host(HostCommand),

    /// Have tunneld read its config file again (as SIGHUP): hosts and
    /// declared tunnels added, changed or removed; a file with problems
    /// changes nothing
    #[command(after_help = RELOAD_EXAMPLES)]
    Reload(ReloadArgs),

    /// Print a shell completion script
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

/// Arguments of `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// SSH host to run on, as named in tunneld's config (default: the default host)
    #[arg(long, value_name = "NAME", value_parser = parse_nonempty)]
    pub host: Option<String>,

    /// Terminal, stdin, environment and time limit.
    #[command(flatten)]
    pub run: RunArgs,

    /// The command and its arguments, joined with spaces as ssh does; with
    /// -t and none, the login shell (as `tunnelctl ssh`)
    #[arg(
        value_name = "COMMAND",
        required_unless_present = "tty",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// Arguments of `ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Terminal, stdin, environment and time limit.
    #[command(flatten)]
    pub run: RunArgs,

    /// SSH host, as named in tunneld's config (default: the default host)
    #[arg(value_name = "HOST", value_parser = parse_nonempty)]
    pub host: Option<String>,

    /// A command to run instead of the login shell, joined with spaces as ssh does
    #[arg(
        value_name = "COMMAND",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// What `exec` and `ssh` share, with ssh's letters.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Limit on the command's run time; on expiry it gets SIGTERM
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Set a variable for the command (repeatable)
    #[arg(short, long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Do not forward standard input, like `ssh -n`
    #[arg(short = 'n', long)]
    pub no_stdin: bool,

    /// Run on a terminal, like `ssh -t`: when stdin is one; twice (-tt) even when not
    #[arg(short = 't', long = "tty", action = clap::ArgAction::Count, conflicts_with = "no_tty")]
    pub tty: u8,

    /// Never run on a terminal, like `ssh -T` (the default with a command)
    #[arg(short = 'T', long)]
    pub no_tty: bool,
}

/// Flags every open verb takes, flattened after its own spec and port flags.
#[derive(Debug, Args)]
pub struct OpenCommonArgs {
    /// SSH host that carries the forward (default: the default host)
    #[arg(long, value_name = "NAME", value_parser = parse_nonempty)]
    pub host: Option<String>,

    /// Limits on the forward's connections.
    #[command(flatten)]
    pub limits: ConnectionLimitArgs,

    /// Keep the tunnel only while tunnelctl runs, printing each connection;
    /// Ctrl-C (or SIGTERM, SIGHUP) closes it, like `ssh -N`
    #[arg(long)]
    pub attach: bool,

    /// Name the tunnel (1-63 of a-z, 0-9 and -, unique among open tunnels);
    /// close and watch accept the name in place of the id
    #[arg(long, value_name = "NAME", value_parser = parse_tunnel_name)]
    pub name: Option<String>,

    /// Keep the tunnel across tunneld restarts: tunneld records it in its
    /// state directory and restores it, same id, name and port, at every
    /// start until it is closed
    #[arg(long, conflicts_with = "attach")]
    pub persist: bool,
}

/// A tunnel name, checked as tunneld checks it.
fn parse_tunnel_name(s: &str) -> Result<String, String> {
    tunnel_proto::name::check_tunnel_name(s).map(|()| s.to_string())
}

/// Limits on a forward's connections, part of [`OpenCommonArgs`].
#[derive(Debug, Args)]
pub struct ConnectionLimitArgs {
    /// Connections carried at once; more are refused [default: tunneld's
    /// --max-connections-per-tunnel]
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub max_connections: Option<u32>,

    /// Close a connection after no byte has moved either way for this long,
    /// e.g. 30s, 10m [default: never]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_negative_numbers = true)]
    pub idle_timeout: Option<Duration>,
}

/// Arguments of `open-local`.
#[derive(Debug, Args)]
pub struct OpenLocalArgs {
    /// The forward in OpenSSH -L syntax, instead of the flags below; a unix
    /// socket path (absolute) may stand for either end:
    /// /LPATH:RHOST:RPORT, [BIND:]LPORT:/RPATH or /LPATH:/RPATH
    #[arg(
        short = 'L',
        value_name = "[BIND:]LPORT:RHOST:RPORT",
        value_parser = parse_local_forward,
        conflicts_with_all = ["lport", "rport", "rhost", "bind"]
    )]
    pub spec: Option<ForwardSpec>,

    /// Port tunneld listens on; 0 picks a free one
    #[arg(long, value_name = "PORT", value_parser = parse_port_or_pick, required_unless_present = "spec")]
    pub lport: Option<u16>,

    /// Port the SSH host connects to
    #[arg(long, value_name = "PORT", value_parser = parse_port, required_unless_present = "spec")]
    pub rport: Option<u16>,

    /// Host the SSH host connects to, resolved there [default: localhost]
    #[arg(long, value_name = "HOST", value_parser = parse_nonempty)]
    pub rhost: Option<String>,

    /// Address tunneld listens on [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR", value_parser = parse_nonempty)]
    pub bind: Option<String>,

    /// The host, limits and `--attach`.
    #[command(flatten)]
    pub common: OpenCommonArgs,
}

/// Arguments of `open-remote`.
#[derive(Debug, Args)]
pub struct OpenRemoteArgs {
    /// The forward in OpenSSH -R syntax, instead of the flags below; a unix
    /// socket path (absolute) may stand for either end: /RPATH:LHOST:LPORT,
    /// [BIND:]RPORT:/LPATH or /RPATH:/LPATH. Without a target,
    /// [BIND:]RPORT or /RPATH is a SOCKS proxy on the server that connects
    /// from tunneld's machine (`ssh -R 1080`)
    #[arg(
        short = 'R',
        value_name = "[BIND:]RPORT:LHOST:LPORT",
        value_parser = parse_remote_forward,
        conflicts_with_all = ["rport", "lport", "lhost", "rbind"]
    )]
    pub spec: Option<ForwardSpec>,

    /// Port the SSH host listens on; 0 lets the server pick one
    #[arg(long, value_name = "PORT", value_parser = parse_port_or_pick, required_unless_present = "spec")]
    pub rport: Option<u16>,

    /// Port tunneld connects to
    #[arg(long, value_name = "PORT", value_parser = parse_port, required_unless_present = "spec")]
    pub lport: Option<u16>,

    /// Host tunneld connects to [default: localhost]
    #[arg(long, value_name = "HOST", value_parser = parse_nonempty)]
    pub lhost: Option<String>,

    /// Address the SSH host listens on [default: its loopback]
    #[arg(long, value_name = "ADDR", value_parser = parse_nonempty)]
    pub rbind: Option<String>,

    /// With a SOCKS -R (no target): a target it may reach, as OpenSSH's
    /// PermitRemoteOpen (repeatable): HOST:PORT, * for any host or port,
    /// IPv6 as [ADDR]:PORT; or `any` or `none` alone. Without it any target
    /// is allowed: whoever can reach the server's port reaches everything
    /// tunneld's machine reaches, its loopback and private networks included
    #[arg(
        long,
        value_name = "HOST:PORT",
        value_parser = parse_permit_remote_open,
        requires = "spec"
    )]
    pub permit_remote_open: Vec<String>,

    /// The host, limits and `--attach`.
    #[command(flatten)]
    pub common: OpenCommonArgs,
}

/// Arguments of `open-dynamic`.
#[derive(Debug, Args)]
pub struct OpenDynamicArgs {
    /// The proxy in OpenSSH -D syntax, instead of --lport and --bind
    #[arg(
        short = 'D',
        value_name = "[BIND:]PORT",
        value_parser = parse_dynamic_forward,
        conflicts_with_all = ["lport", "bind"]
    )]
    pub spec: Option<TcpListen>,

    /// Port tunneld listens on; 0 picks a free one
    #[arg(long, value_name = "PORT", value_parser = parse_port_or_pick, required_unless_present = "spec")]
    pub lport: Option<u16>,

    /// Address tunneld listens on, * for every interface [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR", value_parser = parse_nonempty)]
    pub bind: Option<String>,

    /// The host, limits and `--attach`.
    #[command(flatten)]
    pub common: OpenCommonArgs,
}

impl Cli {
    /// What clap cannot check alone, as a usage error like clap's own:
    /// `--permit-remote-open` only with a SOCKS `-R`, and `any` or `none`
    /// only by themselves.
    pub fn check(self) -> Result<Self, clap::Error> {
        if let Command::OpenRemote(args) = &self.command {
            let permits = &args.permit_remote_open;
            let dynamic = args.spec.as_ref().is_some_and(ForwardSpec::is_dynamic);
            if !permits.is_empty() && !dynamic {
                return Err(usage(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--permit-remote-open applies only to a SOCKS proxy, -R [BIND:]PORT with \
                     no target (as `ssh -R 1080`); a -R with a target connects only there",
                ));
            }
            if let Err(message) = check_permit_list(permits) {
                return Err(usage(clap::error::ErrorKind::ArgumentConflict, &message));
            }
        }
        Ok(self)
    }
}

/// A usage error that prints as clap's do.
fn usage(kind: clap::error::ErrorKind, message: &str) -> clap::Error {
    use clap::CommandFactory;
    Cli::command().error(kind, message)
}

/// Arguments of `list` (none yet; filters will go here).
#[derive(Debug, Args)]
pub struct ListArgs {}

/// Arguments of `close`: ids, or `--all`, exactly one of the two.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["ids", "all"])))]
pub struct CloseArgs {
    /// Ids or names of the tunnels to close, as printed by open-* and list
    #[arg(value_name = "ID|NAME", value_parser = parse_nonempty)]
    pub ids: Vec<String>,

    /// Close every open tunnel but those declared in tunneld's config file
    #[arg(long)]
    pub all: bool,
}

/// Arguments of `reload` (none).
#[derive(Debug, Args)]
pub struct ReloadArgs {}

/// `host add` and `host remove`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add an SSH host, as `ssh [user@]host[:port]` would reach it
    #[command(after_help = HOST_EXAMPLES)]
    Add(HostAddArgs),
    /// Remove a host added with `host add`
    #[command(after_help = HOST_EXAMPLES)]
    Remove(HostRemoveArgs),
}

/// Arguments of `host add`.
#[derive(Debug, Args)]
pub struct HostAddArgs {
    /// The name requests will use for it (letters, digits, '.', '_', '-')
    #[arg(value_name = "NAME", value_parser = parse_host_name)]
    pub name: String,

    /// Destination as ssh takes it: [user@]host[:port], or an ssh_config
    /// alias of tunneld's user
    #[arg(long, value_name = "[USER@]HOST[:PORT]", value_parser = parse_nonempty)]
    pub ssh: String,

    /// Private key file on tunneld's machine [default: ssh_config's, or
    /// tunneld's --identity]; a relative path is made absolute here
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// known_hosts file on tunneld's machine [default: ssh_config's, or
    /// tunneld's --known-hosts]; a relative path is made absolute here
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Jump hosts as `ssh -J` takes them: comma-separated hops, each a host
    /// tunneld knows or [user@]host[:port]; `none` for none
    #[arg(long, short = 'J', value_name = "HOP[,HOP...]", value_parser = parse_nonempty)]
    pub jump: Option<String>,

    /// Keep the host across tunneld restarts (in its state directory)
    #[arg(long)]
    pub persist: bool,
}

/// Arguments of `host remove`.
#[derive(Debug, Args)]
pub struct HostRemoveArgs {
    /// The host's name
    #[arg(value_name = "NAME", value_parser = parse_nonempty)]
    pub name: String,

    /// Close the tunnels over it too (else a host with tunnels is kept)
    #[arg(long)]
    pub force: bool,
}

/// A host name as tunneld takes it.
fn parse_host_name(s: &str) -> Result<String, String> {
    tunnel_proto::name::check_host_name(s)?;
    Ok(s.to_string())
}

/// Arguments of `hosts` (none yet).
#[derive(Debug, Args)]
pub struct HostsArgs {}

/// Arguments of `status` (none yet).
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch only this tunnel (and its host), by id or name, until it is
    /// closed
    #[arg(value_name = "ID|NAME", value_parser = parse_nonempty)]
    pub id: Option<String>,
}

/// Arguments of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tunnelctl").chain(args.iter().copied()))
            .and_then(Cli::check)
    }

    #[test]
    fn exec_takes_everything_after_the_command() {
        let cli = parse(&["exec", "--host", "web1", "--", "ls", "-la", "--color"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.host.as_deref(), Some("web1"));
        assert_eq!(args.command, ["ls", "-la", "--color"]);

        let cli = parse(&["exec", "uname", "-a"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.command, ["uname", "-a"]);
    }

    #[test]
    fn exec_and_ssh_take_ssh_terminal_letters() {
        let cli = parse(&["exec", "-tt", "--", "top"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!((args.run.tty, args.run.no_tty), (2, false));
        assert_eq!(args.command, ["top"]);
        assert!(parse(&["exec", "-t", "-T", "--", "top"]).is_err());

        // A forgotten command is a usage error, not a shell reading stdin;
        // with -t it is the login shell, as `tunnelctl ssh`.
        assert!(parse(&["exec"]).is_err());
        assert!(parse(&["exec", "-T"]).is_err());
        let cli = parse(&["exec", "-t"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert!(args.command.is_empty());

        let cli = parse(&["ssh", "-T", "-n", "web1", "ls", "-l"]).unwrap();
        let Command::Ssh(args) = cli.command else {
            panic!("not ssh")
        };
        assert!(args.run.no_tty && args.run.no_stdin);
        assert_eq!(args.host.as_deref(), Some("web1"));
        assert_eq!(args.command, ["ls", "-l"]);

        let cli = parse(&["ssh"]).unwrap();
        let Command::Ssh(args) = cli.command else {
            panic!("not ssh")
        };
        assert_eq!((args.host, args.command.len()), (None, 0));
    }

    #[test]
    fn global_flags_go_anywhere_but_timeout_goes_first() {
        let cli = parse(&["--timeout", "5s", "list", "-q", "-o", "json"]).unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.timeout, Duration::from_secs(5));

        let cli = parse(&["--timeout", "5s", "exec", "--timeout", "1m", "--", "true"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(cli.timeout, Duration::from_secs(5));
        assert_eq!(args.run.timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn open_local_needs_ports_or_a_spec() {
        assert!(parse(&["open-local", "--lport", "0", "--rport", "5432"]).is_ok());
        assert!(parse(&["open-local", "-L", "[::1]:0:db:5432"]).is_ok());
        assert!(parse(&["open-local", "--lport", "5432"]).is_err());
        assert!(parse(&["open-local", "--lport", "1", "--rport", "0"]).is_err());
        assert!(parse(&["open-local", "-L", "1:db:2", "--lport", "3"]).is_err());
        assert!(parse(&["open-local", "-L", "1:db"]).is_err());
    }

    #[test]
    fn open_remote_needs_ports_or_a_spec() {
        assert!(parse(&["open-remote", "--rport", "0", "--lport", "3000"]).is_ok());
        assert!(parse(&["open-remote", "-R", "8080:localhost:3000"]).is_ok());
        assert!(parse(&["open-remote", "--rport", "8080", "--lport", "0"]).is_err());
        assert!(parse(&["open-remote", "--rport", "65536", "--lport", "1"]).is_err());
    }

    #[test]
    fn open_local_takes_paths_but_no_socks_proxy() {
        assert!(parse(&["open-local", "-L", "/tmp/pg.sock:/run/pg.sock"]).is_ok());
        assert!(parse(&["open-local", "-L", "2375:/var/run/docker.sock"]).is_ok());
        let err = parse(&["open-local", "-L", "1080"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = err.to_string();
        assert!(
            err.contains("-L") && err.contains("open-dynamic -D"),
            "{err}"
        );
    }

    #[test]
    fn open_dynamic_needs_a_port_or_a_spec() {
        let Command::OpenDynamic(args) = parse(&["open-dynamic", "-D", "[::1]:1080"])
            .unwrap()
            .command
        else {
            panic!("not open-dynamic")
        };
        let spec = args.spec.unwrap();
        assert_eq!((spec.bind.as_deref(), spec.port), (Some("::1"), 1080));
        assert!(parse(&["open-dynamic", "--lport", "0", "--bind", "*"]).is_ok());
        assert!(parse(&["open-dynamic", "--attach", "-D", "1080", "--host", "b"]).is_ok());
        for bad in [
            &["open-dynamic"][..],
            &["open-dynamic", "--bind", "*"],
            &["open-dynamic", "-D", "1080", "--lport", "1"],
            &["open-dynamic", "-D", "1080", "--bind", "*"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let err = parse(&["open-dynamic", "-D", "1080:db:80"]).unwrap_err();
        assert!(err.to_string().contains("-D takes [BIND:]PORT"), "{err}");
    }

    #[test]
    fn permit_remote_open_only_with_a_socks_remote() {
        let cli = parse(&[
            "open-remote",
            "-R",
            "1080",
            "--permit-remote-open",
            "db:5432",
            "--permit-remote-open",
            "[::1]:*",
        ])
        .unwrap();
        let Command::OpenRemote(args) = cli.command else {
            panic!("not open-remote")
        };
        assert_eq!(args.permit_remote_open, ["db:5432", "[::1]:*"]);
        assert!(parse(&["open-remote", "-R", "1080", "--permit-remote-open", "none"]).is_ok());

        for (args, kind) in [
            (
                &[
                    "open-remote",
                    "-R",
                    "8080:localhost:80",
                    "--permit-remote-open",
                    "a:1",
                ][..],
                clap::error::ErrorKind::ArgumentConflict,
            ),
            (
                &[
                    "open-remote",
                    "--rport",
                    "1",
                    "--lport",
                    "2",
                    "--permit-remote-open",
                    "a:1",
                ],
                // clap waives `requires = "spec"` when a flag that
                // conflicts with -R is there; check() refuses it instead.
                clap::error::ErrorKind::ArgumentConflict,
            ),
            (
                &["open-remote", "-R", "1080", "--permit-remote-open", "a"],
                clap::error::ErrorKind::ValueValidation,
            ),
            (
                &[
                    "open-remote",
                    "-R",
                    "1080",
                    "--permit-remote-open",
                    "any",
                    "--permit-remote-open",
                    "a:1",
                ],
                clap::error::ErrorKind::ArgumentConflict,
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
        }
        let err = parse(&[
            "open-remote",
            "-R",
            "8080:h:80",
            "--permit-remote-open",
            "a:1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("only to a SOCKS proxy"), "{err}");
    }

    #[test]
    fn permit_remote_open_alone_needs_a_spec() {
        let err = parse(&["open-remote", "--permit-remote-open", "a:1"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn bad_addr_is_a_usage_error() {
        assert!(parse(&["--addr", "https://x:1", "list"]).is_ok());
        assert!(parse(&["--addr", "ftp://x:1", "list"]).is_err());
        assert!(parse(&["--addr", "[::1]:4522", "list"]).is_ok());
        assert!(parse(&["--addr", "unix:", "list"]).is_err());
        assert!(parse(&["--addr", "unix://host/x.sock", "list"]).is_err());
    }

    #[test]
    fn security_flags_are_global_and_select_tls() {
        let cli = parse(&[
            "list",
            "--token-file",
            "/etc/tunneld/token",
            "--tls-ca",
            "ca.pem",
            "--tls-server-name",
            "localhost",
        ])
        .unwrap();
        let s = &cli.security;
        assert_eq!(
            s.token_file.as_deref(),
            Some(std::path::Path::new("/etc/tunneld/token"))
        );
        assert!(s.wants_tls() && s.client_certificate().is_none());
        assert_eq!(s.tls_server_name.as_deref(), Some("localhost"));

        let cli = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "status"]).unwrap();
        assert!(cli.security.wants_tls() && cli.security.client_certificate().is_some());

        let cli = parse(&["--token-file", "t", "ls"]).unwrap();
        assert!(!cli.security.wants_tls());
    }

    #[test]
    fn client_certificate_and_key_come_together() {
        for args in [
            &["--tls-cert", "c.pem", "list"],
            &["list", "--tls-key", "k.pem"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
        assert!(parse(&["--tls-server-name", "", "list"]).is_err());
    }

    #[test]
    fn there_is_no_flag_for_the_token_itself() {
        for flag in ["--token", "--tls-token"] {
            assert!(parse(&[flag, "x", "list"]).is_err(), "{flag}");
        }
    }

    #[test]
    fn unix_addr_goes_anywhere_and_shows_as_given() {
        let cli = parse(&["status", "--addr", "unix:///run/tunneld.sock"]).unwrap();
        assert_eq!(cli.addr.to_string(), "unix:///run/tunneld.sock");
        let cli = parse(&["--addr", "unix:/run/tunneld.sock", "hosts"]).unwrap();
        assert_eq!(cli.addr.to_string(), "unix:/run/tunneld.sock");
        let cli = parse(&["--addr", "unix:tunneld.sock", "ls"]).unwrap();
        assert_eq!(cli.addr.to_string(), "unix:tunneld.sock");
    }

    #[test]
    fn close_needs_ids_or_all_but_not_both() {
        let Command::Close(args) = parse(&["close", "t-1", "t-2"]).unwrap().command else {
            panic!("not close")
        };
        assert_eq!(args.ids, ["t-1", "t-2"]);
        assert!(!args.all);

        let Command::Close(args) = parse(&["close", "--all"]).unwrap().command else {
            panic!("not close")
        };
        assert!(args.all && args.ids.is_empty());

        let err = parse(&["close"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--all"), "{err}");
        let err = parse(&["close", "t-1", "--all"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(parse(&["close", ""]).is_err());
    }

    #[test]
    fn attach_on_both_open_verbs() {
        let cli = parse(&["open-local", "--attach", "-L", "0:db:5432"]).unwrap();
        let Command::OpenLocal(args) = cli.command else {
            panic!("not open-local")
        };
        assert!(args.common.attach);
        let cli = parse(&[
            "-o",
            "json",
            "open-remote",
            "-R",
            "0:localhost:3000",
            "--attach",
        ])
        .unwrap();
        let Command::OpenRemote(args) = cli.command else {
            panic!("not open-remote")
        };
        assert!(args.common.attach);
        assert_eq!(cli.output, OutputFormat::Json);
        let cli = parse(&["open-local", "--lport", "0", "--rport", "1"]).unwrap();
        let Command::OpenLocal(args) = cli.command else {
            panic!("not open-local")
        };
        assert!(!args.common.attach);
    }

    #[test]
    fn new_verbs_parse() {
        assert!(matches!(
            parse(&["hosts", "-q"]).unwrap().command,
            Command::Hosts(_)
        ));
        assert!(matches!(
            parse(&["--timeout", "1s", "status", "-o", "json"])
                .unwrap()
                .command,
            Command::Status(_)
        ));
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let Command::Completions(args) = parse(&["completions", shell]).unwrap().command else {
                panic!("not completions")
            };
            assert_eq!(args.shell.to_string(), shell);
        }
        assert!(parse(&["completions"]).is_err());
        assert!(parse(&["completions", "tcsh"]).is_err());
    }

    #[test]
    fn every_verb_has_examples() {
        let command = Cli::command();
        for verb in command.get_subcommands() {
            let help = verb
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.starts_with("Examples:\n") && help.contains("tunnelctl "),
                "{} has no examples",
                verb.get_name()
            );
        }
    }
}
