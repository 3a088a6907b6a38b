//! The API's security rules (issue 6), one test per rule, each written so it
//! fails if the rule is taken out of the daemon:
//!
//! - [`listen`]: the API is served beyond loopback only with TLS and client
//!   authentication, or with `--insecure-listen` and a warning.
//! - [`unix_socket`]: the socket is mode 0600 and other uids are refused.
//! - [`token`]: `--token-file` bearer tokens; health without, reflection with.
//! - [`mtls`]: client certificates from `--tls-client-ca`, and the caller
//!   named after the certificate.
//! - [`policy`]: `permit_open`, `permit_listen`, `allow_local_bind`, checked
//!   before anything is opened.
//! - [`audit`]: who did what, on stderr and in `--audit-log`, and never a
//!   token.
//! - [`files`]: secrets in files others can read are refused (identity,
//!   passphrase, token file, TLS key), with the `chmod` that fixes it.
//!
//! Non-loopback listeners use `0.0.0.0:0`: the refusals happen before
//! binding, and the daemons that do bind there require a token or a client
//! certificate and live for a moment only.

mod audit;
mod files;
mod listen;
mod mtls;
mod policy;
mod token;
mod unix_socket;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tunneld_tests::Tunneld;
use tunneld_tests::wait::poll_until;

/// How long an audit line may take to reach the log after its call returned.
pub const AUDIT_WAIT: Duration = Duration::from_secs(5);

/// The message every refusal of a non-loopback listener starts with.
pub const NON_LOOPBACK_REFUSAL: &str = "refusing to serve the API on non-loopback address";

/// The audit lines in tunneld's stderr (target `tunneld::audit`, message
/// `audit`).
pub fn stderr_audit_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("tunneld::audit: audit"))
        .collect()
}

/// Waits until an audit line on the daemon's stderr contains every one of
/// `needles`, and returns it.
pub async fn wait_for_audit_line(daemon: &Tunneld, needles: &[&str]) -> Result<String> {
    poll_until(
        &format!("an audit line on tunneld's stderr with {needles:?}"),
        AUDIT_WAIT,
        || async {
            let log = daemon.log();
            Ok(stderr_audit_lines(&log)
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_owned))
        },
    )
    .await
    .with_context(|| {
        format!(
            "audit lines so far:\n{}",
            stderr_audit_lines(&daemon.log()).join("\n")
        )
    })
}

/// The records of an `--audit-log` file: one JSON object per line.
pub fn audit_records(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("audit log line is not JSON: {l:?}"))
        })
        .collect()
}

/// A field of an audit record, as text: at the top level, or under
/// `fields` (tracing's JSON layout).
pub fn audit_field(record: &Value, name: &str) -> Option<String> {
    let v = record
        .get(name)
        .or_else(|| record.get("fields").and_then(|f| f.get(name)))?;
    Some(match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The permission bits of `path` (`& 0o777`).
pub fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// Fails if `secret` occurs in `text`, naming where.
pub fn ensure_absent(secret: &str, text: &str, what: &str) -> Result<()> {
    ensure!(
        !text.contains(secret),
        "a secret appears in {what}: {:?}",
        text.lines()
            .filter(|l| l.contains(secret))
            .collect::<Vec<_>>()
    );
    Ok(())
}
