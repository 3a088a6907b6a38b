//! The audit log: one line per mutating call (Exec, opens, Close) and per
//! refused call, naming the caller, the request and the outcome.
//!
//! Lines are tracing events with target `tunneld::audit` and message
//! `audit`, so they reach stderr with the other logs and, with
//! `--audit-log FILE`, a JSON-lines file of their own. What is never in
//! them: tokens, the authorization header, Exec's stdin and environment
//! values (only variable names), key material.

use tonic::{Code, Request, Status};
use tunnel_proto::{
    clip::{SHOWN_CHARS, bare},
    v1 as pb,
};

use super::{
    caller::Caller,
    convert::{DEFAULT_LOCAL_BIND, DEFAULT_REMOTE_BIND, DEFAULT_TARGET_HOST},
};

/// The tracing target of audit lines.
pub use crate::logging::AUDIT_TARGET;

/// Most characters of a command kept in a line; longer ones are cut, with
/// their length noted.
const MAX_COMMAND_CHARS: usize = 1024;

/// One audited call, logged once its outcome is known.
pub(super) struct Audit {
    rpc: &'static str,
    caller: Caller,
    host: String,
    request: String,
}

impl Audit {
    /// Starts the record of `rpc`, taking the caller the auth layer found;
    /// `host` as the request names it (empty: the default host; `-`: the
    /// call names none).
    pub(super) fn new<T>(
        rpc: &'static str,
        req: &Request<T>,
        host: &str,
        request: String,
    ) -> Audit {
        let caller = req
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::unknown);
        Audit {
            rpc,
            caller,
            host: if host.is_empty() {
                "(default)".to_string()
            } else {
                bare(host, SHOWN_CHARS)
            },
            request,
        }
    }

    /// Runs `call` and logs its outcome (with `tunnel` naming the tunnel id
    /// of a success); returns the call's result.
    pub(super) async fn around<R>(
        self,
        call: impl Future<Output = Result<R, Status>>,
        tunnel: impl FnOnce(&R) -> String,
    ) -> Result<R, Status> {
        let result = call.await;
        self.outcome(&result, tunnel);
        result
    }

    /// Logs the outcome: `ok` (with the tunnel id, if one), or the status.
    fn outcome<R>(self, result: &Result<R, Status>, tunnel: impl FnOnce(&R) -> String) {
        let code;
        // One event either way; a `None` field is left out of the line.
        let (outcome, tunnel, error): (&dyn tracing::Value, _, _) = match result {
            Ok(r) => (&"ok", Some(tunnel(r)), None),
            Err(status) => {
                code = tracing::field::debug(status.code());
                (&code, None, Some(status.message()))
            }
        };
        tracing::info!(
            target: AUDIT_TARGET,
            rpc = self.rpc,
            caller = %self.caller.identity,
            peer = %self.caller.peer,
            host = %self.host,
            request = %self.request,
            outcome,
            tunnel = tunnel.as_ref().map(tracing::field::display),
            error = error.map(tracing::field::display),
            "audit"
        );
    }
}

/// Logs a call the auth layer refused; `rpc` is its gRPC path.
pub(super) fn refused(rpc: &str, caller: &Caller, code: Code, reason: &str) {
    tracing::warn!(
        target: AUDIT_TARGET,
        rpc,
        caller = %caller.identity,
        peer = %caller.peer,
        outcome = ?code,
        error = reason,
        "audit"
    );
}

/// `Exec`: the command (cut at [`MAX_COMMAND_CHARS`]), environment names,
/// stdin's size and the timeout.
pub(super) fn exec(r: &pb::ExecRequest) -> String {
    let mut text = command(&r.command);
    text.push_str(&env_names(r.env.keys()));
    if !r.stdin.is_empty() {
        text.push_str(&format!(" stdin_bytes={}", r.stdin.len()));
    }
    if let Some(t) = &r.timeout {
        text.push_str(&format!(" timeout={}s", t.seconds));
    }
    text
}

/// `ExecStream`: as for Exec, with `stdin=streamed` instead of a size (the
/// input itself is never looked at), and the terminal's TERM when one is
/// asked for.
pub(super) fn exec_stream(r: &pb::ExecStart) -> String {
    let mut text = if r.command.is_empty() {
        "login shell".to_string()
    } else {
        command(&r.command)
    };
    text.push_str(&env_names(r.env.keys()));
    text.push_str(" stdin=streamed");
    if let Some(t) = &r.terminal {
        text.push_str(&format!(" terminal={:?}", bare(&t.term, SHOWN_CHARS)));
    }
    if let Some(t) = &r.timeout {
        text.push_str(&format!(" timeout={}s", t.seconds));
    }
    text
}

/// `command="…"`, cut at [`MAX_COMMAND_CHARS`].
fn command(command: &str) -> String {
    let shown: String = command.chars().take(MAX_COMMAND_CHARS).collect();
    let mut text = format!("command={shown:?}");
    let total = command.chars().count();
    if total > MAX_COMMAND_CHARS {
        text.push_str(&format!(" (cut, {total} chars)"));
    }
    text
}

/// ` env=A,B` with the variables' names (never values), or nothing.
fn env_names<'a>(env: impl Iterator<Item = &'a String>) -> String {
    let mut names: Vec<String> = env.map(|k| bare(k, SHOWN_CHARS)).collect();
    if names.is_empty() {
        return String::new();
    }
    names.sort_unstable();
    format!(" env={}", names.join(","))
}

/// `OpenLocalForward`: `local BIND:PORT -> TARGET:PORT`, either side a
/// socket path instead.
pub(super) fn local(r: &pb::OpenLocalForwardRequest) -> String {
    format!(
        "local {} -> {}{}",
        end(
            &r.local_path,
            &r.bind_address,
            DEFAULT_LOCAL_BIND,
            r.local_port
        ),
        end(
            &r.remote_path,
            &r.remote_host,
            DEFAULT_TARGET_HOST,
            r.remote_port
        ),
        kept(&r.name, r.persist),
    )
}

/// ` name=NAME` and ` persist` when asked.
fn kept(name: &str, persist: bool) -> String {
    let mut out = String::new();
    if !name.is_empty() {
        out.push_str(" name=");
        out.push_str(&bare(name, SHOWN_CHARS));
    }
    if persist {
        out.push_str(" persist");
    }
    out
}

/// `OpenDynamicForward`: `dynamic BIND:PORT -> SOCKS`.
pub(super) fn dynamic(r: &pb::OpenDynamicForwardRequest) -> String {
    format!(
        "dynamic {} -> SOCKS{}",
        end("", &r.bind_address, DEFAULT_LOCAL_BIND, r.local_port),
        kept(&r.name, r.persist),
    )
}

/// `OpenRemoteForward`: `remote BIND:PORT -> TARGET:PORT`, either side a
/// socket path instead, or `-> SOCKS` with its `permit_remote_open`.
pub(super) fn remote(r: &pb::OpenRemoteForwardRequest) -> String {
    let listen = end(
        &r.remote_path,
        &r.remote_bind_address,
        DEFAULT_REMOTE_BIND,
        r.remote_port,
    );
    if r.dynamic {
        let rule = if r.permit_remote_open.is_empty() {
            String::new()
        } else {
            let entries: Vec<String> = r
                .permit_remote_open
                .iter()
                .take(16)
                .map(|e| bare(e, SHOWN_CHARS))
                .collect();
            format!(" permit_remote_open={}", entries.join(","))
        };
        return format!("remote {listen} -> SOCKS{rule}{}", kept(&r.name, r.persist));
    }
    format!(
        "remote {listen} -> {}{}",
        end(
            &r.local_path,
            &r.local_host,
            DEFAULT_TARGET_HOST,
            r.local_port
        ),
        kept(&r.name, r.persist),
    )
}

/// One end as asked: the socket path when given, else `HOST:PORT`.
fn end(path: &str, host: &str, default: &str, port: u32) -> String {
    if path.is_empty() {
        format!("{}:{port}", or(host, default))
    } else {
        bare(path, SHOWN_CHARS)
    }
}

/// `OpenAttached`: the forward it carries, and its host.
pub(super) fn attached(r: &pb::OpenAttachedRequest) -> (&str, String) {
    match &r.forward {
        Some(pb::open_attached_request::Forward::Local(l)) => {
            (&l.host, format!("attached {}", local(l)))
        }
        Some(pb::open_attached_request::Forward::Remote(rm)) => {
            (&rm.host, format!("attached {}", remote(rm)))
        }
        Some(pb::open_attached_request::Forward::Dynamic(d)) => {
            (&d.host, format!("attached {}", dynamic(d)))
        }
        None => ("", "attached (no forward)".to_string()),
    }
}

/// `value` (escaped and cut), or `default` when empty.
fn or(value: &str, default: &str) -> String {
    if value.is_empty() {
        default.to_string()
    } else {
        bare(value, SHOWN_CHARS)
    }
}
