//! `tunneld --check-config FILE`: the shipped example passes (so it cannot
//! rot), and a broken file fails with exit 2 and every problem as
//! `FILE:LINE:COL: message`, without an sshd or a listener.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, ensure};
use tokio::process::Command;
use tunneld_tests::binaries;

use crate::support::e2e;

/// Runs `tunneld --check-config FILE` with `flags` after it, reading no
/// ssh_config, so the machine's own cannot change the outcome.
async fn check(file: &Path, flags: &[&str]) -> Result<Output> {
    let bin = tokio::task::spawn_blocking(|| binaries::bin_path("tunneld"))
        .await
        .context("binary lookup task panicked")??;
    Command::new(bin)
        .arg("--check-config")
        .arg(file)
        .args(["--ssh-config", "none"])
        .args(flags)
        .output()
        .await
        .context("running tunneld --check-config")
}

/// A config file holding `text` in a fresh temp dir (kept as long as the
/// returned guard).
fn file(text: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tunneld.toml");
    std::fs::write(&path, text)?;
    Ok((dir, path))
}

/// Checks that `out` failed with exit 2, nothing on stdout, and stderr of
/// exactly one line per `expected` prefix, in order.
fn refused(out: &Output, path: &Path, expected: &[&str]) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?}, stderr:\n{stderr}",
        out.status
    );
    ensure!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(
        lines.len() == expected.len(),
        "expected {} lines, got:\n{stderr}",
        expected.len()
    );
    for (line, want) in lines.iter().zip(expected) {
        let want = format!("{}:{want}", path.display());
        ensure!(
            line.starts_with(&want),
            "{line:?} does not start with {want:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_shipped_example_passes() -> Result<()> {
    e2e(async {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/hosts.example.toml");
        let out = check(&example, &[]).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "exit {:?}, stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            stdout == format!("{}: ok (3 hosts, 5 tunnels)\n", example.display()),
            "{stdout:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_other_flags_apply() -> Result<()> {
    e2e(async {
        // No host in the file: the tunnel goes through --ssh's.
        let (_dir, path) = file("[tunnels.proxy]\ndynamic = \"1080\"\n")?;
        let out = check(&path, &["--ssh", "me@ssh.example.com"]).await?;
        ensure!(
            out.status.success() && out.stdout.ends_with(b": ok (1 hosts, 1 tunnels)\n"),
            "{out:?}"
        );
        // Without it, the tunnel has no host to go through.
        let out = check(&path, &[]).await?;
        refused(&out, &path, &["1:10: tunnel \"proxy\" names no host"])
    })
    .await
}

#[tokio::test]
async fn a_syntax_error_is_placed() -> Result<()> {
    e2e(async {
        let (_dir, path) = file("[hosts.a]\naddress = \"u@h.example\"\n[tunnels.x\n")?;
        let out = check(&path, &[]).await?;
        refused(&out, &path, &["3:11: "])
    })
    .await
}

#[tokio::test]
async fn every_problem_of_the_file_is_placed() -> Result<()> {
    e2e(async {
        let (_dir, path) = file(
            "[hosts.a]\n\
             address = \"u@h.example\"\n\
             \n\
             [tunnels.one]\n\
             host = \"b\"\n\
             local = \"15432:db:5432\"\n\
             \n\
             [tunnels.two]\n\
             dynamic = \"1080:db:5432\"\n\
             \n\
             [tunnels.DB]\n\
             dynamic = \"1081\"\n",
        )?;
        let out = check(&path, &[]).await?;
        refused(
            &out,
            &path,
            &[
                "5:8: tunnel \"one\": host \"b\" is not a configured host (configured: a)",
                "9:11: tunnel \"two\": dynamic \"1080:db:5432\": dynamic takes [BIND:]PORT only",
                "11:10: [tunnels.DB]: tunnel name \"DB\" holds 'D'",
            ],
        )
    })
    .await
}

#[tokio::test]
async fn a_declared_tunnel_the_policy_would_refuse_is_placed() -> Result<()> {
    e2e(async {
        let (_dir, path) = file(
            "[hosts.a]\n\
             address = \"u@h.example\"\n\
             permit_open = [\"db:5432\"]\n\
             [tunnels.ssh]\n\
             local = \"2222:db:22\"\n\
             [tunnels.pg]\n\
             local = \"0.0.0.0:15432:db:5432\"\n",
        )?;
        let out = check(&path, &[]).await?;
        refused(
            &out,
            &path,
            &[
                "5:9: tunnel \"ssh\": forwarding to db:22 is not permitted by permit_open of host \"a\" (allowed: db:5432)",
                "7:9: tunnel \"pg\": local forwards may listen only on loopback addresses: 0.0.0.0 is not allowed by allow_local_bind",
            ],
        )?;
        // The flags' policy applies too, and a loosened one passes.
        let out = check(&path, &["--allow-local-bind", "0.0.0.0"]).await?;
        refused(&out, &path, &["5:9: tunnel \"ssh\": forwarding to db:22"])?;
        Ok(())
    })
    .await
}
