//! `tunnelctl`, the command-line client for tunneld.
//!
//! Module map:
//! - [`cli`]: clap types for the global flags and the verbs; values are
//!   validated there, before any call.
//! - [`spec`]: parsers for OpenSSH `-L`/`-R`/`-D` specs, ports, durations,
//!   `K=V`.
//! - [`client`]: the `--addr` forms (TCP, `https://` or `unix:/path`), the
//!   [`client::Remote`] that joins an address with its TLS settings and
//!   token, connecting to tunneld within a deadline; transport failures and
//!   gRPC statuses turned into messages a person can act on.
//! - [`auth`]: the bearer token — `--token-file`, `TUNNELD_TOKEN`,
//!   `TUNNELD_TOKEN_FILE` — and the interceptor that sends it on every call.
//!   The token is never printed, not even by `Debug`.
//! - [`tls`]: the `--tls-*` files read and checked, and TLS failures
//!   explained with the flag that fixes them.
//! - [`output`]: rendering that returns strings and prints nothing: tables
//!   and lines (`tunnels`, `hosts`, `status`, the `--attach` `events`, the
//!   `watch` lines), and
//!   proto3 JSON as grpcurl prints it (`json`, through prost-reflect and the
//!   API's own descriptors).
//! - [`commands`]: one module per verb (`exec`, `open`, `list`, `close`,
//!   `hosts`, `status`, `watch`, `completions`), plus `attach`, the `--attach` mode of
//!   the open verbs; each prints and returns an exit code.
//!
//! This file parses, runs, and maps errors to one stderr line and an exit
//! code: 2 for bad usage (flags, and a token or TLS setting that cannot be
//! used, found before any connection), 1 for a failed call, and for `exec`
//! the remote command's code or 255, as ssh does.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod cli;
mod client;
mod commands;
mod output;
mod tls;

// The parsers live in the library, so the fuzz targets and property tests
// reach them; `crate::spec` keeps naming them here.
pub(crate) use tunnelctl::{spec, terminal};

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, SecurityArgs};
use crate::client::{Addr, Remote};
use crate::commands::Context;
use crate::output::Mode;
use crate::tls::TlsSettings;

/// Exit code for a command line clap rejected (clap's own choice too).
const USAGE_EXIT: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse().and_then(Cli::check) {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let failure = match cli.command {
        Command::Exec(_) | Command::Ssh(_) => commands::exec::FAILURE_EXIT,
        _ => 1,
    };
    if let Command::Completions(args) = &cli.command {
        // Needs no tunneld, so no token or TLS file either.
        return finish(commands::completions::run(args), failure);
    }
    let remote = match remote(cli.addr.clone(), &cli.security) {
        Ok(remote) => remote,
        Err(err) => {
            commands::report(&one_line(&format!("{err:#}")));
            return ExitCode::from(USAGE_EXIT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            commands::report(&format!("cannot start the async runtime: {err}"));
            return ExitCode::from(failure);
        }
    };
    finish(runtime.block_on(run(cli, remote)), failure)
}

/// The exit code of a verb's outcome; an error is printed as one line and
/// exits with `failure`.
fn finish(outcome: anyhow::Result<ExitCode>, failure: u8) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(err) => {
            commands::report(&one_line(&format!("{err:#}")));
            ExitCode::from(failure)
        }
    }
}

/// tunneld's address with the TLS settings and token the flags and the
/// environment give; files are read now, so a bad one is named before any
/// connection.
fn remote(addr: Addr, security: &SecurityArgs) -> anyhow::Result<Remote> {
    let tls = if security.wants_tls() {
        Some(TlsSettings::load(
            security.tls_ca.as_deref(),
            security.client_certificate(),
            security.tls_server_name.as_deref(),
        )?)
    } else {
        None
    };
    let token = auth::resolve(security.token_file.as_deref(), |name| {
        std::env::var_os(name)
    })?;
    Remote::new(addr, tls, token)
}

/// Runs the verb the command line names.
async fn run(cli: Cli, remote: Remote) -> anyhow::Result<ExitCode> {
    let ctx = Context {
        remote,
        mode: Mode::new(cli.output, cli.quiet),
        timeout: cli.timeout,
    };
    match &cli.command {
        Command::Exec(args) => commands::exec::run(&ctx, args).await,
        Command::Ssh(args) => commands::exec::ssh(&ctx, args).await,
        Command::OpenLocal(args) => commands::open::run_local(&ctx, args).await,
        Command::OpenDynamic(args) => commands::open::run_dynamic(&ctx, args).await,
        Command::OpenRemote(args) => commands::open::run_remote(&ctx, args).await,
        Command::List(args) => commands::list::run(&ctx, args).await,
        Command::Reload(args) => commands::reload::run(&ctx, args).await,
        Command::Close(args) => commands::close::run(&ctx, args).await,
        Command::Hosts(args) => commands::hosts::run(&ctx, args).await,
        Command::Host(cmd) => commands::host::run(&ctx, cmd).await,
        Command::Status(args) => commands::status::run(&ctx, args).await,
        Command::Watch(args) => commands::watch::run(&ctx, args).await,
        Command::Completions(args) => commands::completions::run(args),
    }
}

/// Prints help or version as clap does, and any other parse error as one
/// `tunnelctl: ` line that points at the verb's help.
fn usage_error(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => err.exit(),
        _ => {
            let verb = verb_in(std::env::args().skip(1));
            let help = match verb {
                Some(verb) => format!("tunnelctl {verb} --help"),
                None => "tunnelctl --help".to_string(),
            };
            commands::report(&format!("{}; see '{help}'", clap_message(&err)));
            ExitCode::from(USAGE_EXIT)
        }
    }
}

/// clap's message on one line: the first line without its `error: `, with
/// the indented lines under it (missing arguments, tips) appended.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let details: Vec<&str> = lines
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    if !details.is_empty() {
        let sep = if message.ends_with(':') { " " } else { "; " };
        message.push_str(sep);
        message.push_str(&details.join(", "));
    }
    message
}

/// The first argument naming a verb (or an alias of one), if any.
fn verb_in(args: impl Iterator<Item = String>) -> Option<String> {
    let command = Cli::command();
    let verbs: Vec<&clap::Command> = command.get_subcommands().collect();
    args.into_iter().find_map(|arg| {
        verbs
            .iter()
            .find(|v| v.get_name() == arg || v.get_all_aliases().any(|a| a == arg))
            .map(|v| v.get_name().to_string())
    })
}

/// Folds a message onto one line, for the one-line error contract.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> String {
        let err = Cli::try_parse_from(std::iter::once("tunnelctl").chain(args.iter().copied()))
            .and_then(Cli::check)
            .unwrap_err();
        clap_message(&err)
    }

    #[test]
    fn clap_errors_fold_to_one_line_naming_the_flag() {
        let m = message(&["open-local", "--lport", "70000", "--rport", "1"]);
        assert!(!m.contains('\n'));
        assert!(m.contains("--lport"), "{m}");

        let m = message(&["open-local", "-L", "8080:db:80:x:y"]);
        assert!(m.contains("-L") && m.contains("5 fields"), "{m}");
        let m = message(&["open-local", "-L", "8080:db"]);
        assert!(m.contains("-L needs a target"), "{m}");

        let m = message(&[
            "open-remote",
            "-R",
            "8080:h:80",
            "--permit-remote-open",
            "a:1",
        ]);
        assert!(m.starts_with("--permit-remote-open applies only"), "{m}");
        assert!(!m.contains('\n'));

        let m = message(&["open-remote"]);
        assert!(m.contains("--rport") && m.contains("--lport"), "{m}");
        assert!(!m.contains('\n'));
    }

    #[test]
    fn close_without_ids_names_all() {
        let m = message(&["close"]);
        assert!(m.ends_with("not provided: <ID|NAME|--all>"), "{m}");
        assert!(!m.contains('\n'));
        let m = message(&["close", "t-1", "--all"]);
        assert!(m.contains("--all") && m.contains("cannot be used"), "{m}");
    }

    #[test]
    fn verb_is_found_past_global_flags() {
        let args = ["--addr", "x:1", "ls", "-q"].map(String::from);
        assert_eq!(verb_in(args.into_iter()).as_deref(), Some("list"));
    }
}
