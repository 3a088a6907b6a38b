//! `tunnelctl reload`: have tunneld read its config file (and token file)
//! again, as SIGHUP does, and say what changed.

use std::process::ExitCode;

use tunnel_proto::v1::{ReloadRequest, ReloadResponse};

use super::{Context, print};
use crate::cli::ReloadArgs;
use crate::output::{Mode, json};

/// Reloads; a file with problems is an error naming each, and changes
/// nothing.
pub async fn run(ctx: &Context, _args: &ReloadArgs) -> anyhow::Result<ExitCode> {
    let deadline = ctx.deadline();
    let mut client = ctx.connect(deadline).await?;
    let response = ctx
        .call(
            deadline,
            "tunneld did not reload its config",
            client.reload(ReloadRequest {}),
        )
        .await?;
    print(&match ctx.mode {
        Mode::Json => json::pretty(&response)?,
        Mode::Quiet => String::new(),
        Mode::Table => summary(&response),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One line per kind of change that happened: `added: web, db`.
fn summary(r: &ReloadResponse) -> String {
    let mut lines = Vec::new();
    for (what, names) in [
        ("added", &r.added),
        ("changed", &r.changed),
        ("removed", &r.removed),
    ] {
        if !names.is_empty() {
            lines.push(format!("{what}: {}", names.join(", ")));
        }
    }
    if !r.unchanged.is_empty() {
        lines.push(format!("unchanged: {}", r.unchanged.len()));
    }
    if lines.is_empty() {
        lines.push("reloaded: no declared tunnels".to_string());
    }
    for (what, names) in [
        ("hosts added", &r.hosts_added),
        ("hosts changed", &r.hosts_changed),
        ("hosts removed", &r.hosts_removed),
        (
            "hosts not applied (a host added with `host add` has the name)",
            &r.hosts_pending,
        ),
    ] {
        if !names.is_empty() {
            lines.push(format!("{what}: {}", names.join(", ")));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_what_changed() {
        let r = ReloadResponse {
            unchanged: vec!["a".into(), "b".into()],
            added: vec!["web".into()],
            removed: vec!["db".into()],
            hosts_changed: vec!["bastion".into()],
            ..Default::default()
        };
        assert_eq!(
            summary(&r),
            "added: web\nremoved: db\nunchanged: 2\nhosts changed: bastion"
        );
        assert_eq!(
            summary(&ReloadResponse::default()),
            "reloaded: no declared tunnels"
        );
    }
}
