//! `tunnelctl completions SHELL`: a completion script on stdout that knows
//! the verbs, with no tunneld needed. bash checks the script's syntax too.

use anyhow::{Context, Result, ensure};
use tokio::process::Command;
use tunneld_tests::Ctl;

use super::dead_addr;
use crate::support::e2e;

#[tokio::test(flavor = "multi_thread")]
async fn completion_scripts_for_bash_zsh_fish() -> Result<()> {
    e2e(async {
        // Nothing listens there: completions must not call tunneld.
        let ctl = Ctl::new(dead_addr()?)?;
        for shell in ["bash", "zsh", "fish"] {
            let out = ctl.run(["completions", shell]).await?;
            out.success()?;
            let script = out.stdout_text();
            ensure!(
                script.contains("tunnelctl"),
                "{shell} script does not mention tunnelctl: {out}"
            );
            for verb in ["open-local", "open-remote", "exec", "close"] {
                ensure!(
                    script.contains(verb),
                    "{shell} script does not know {verb}: {out}"
                );
            }
            ensure!(out.stderr.is_empty(), "{shell}: {out}");
        }

        let out = ctl.run(["completions", "bash"]).await?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("tunnelctl.bash");
        std::fs::write(&file, &out.stdout)?;
        let check = Command::new("bash")
            .arg("-n")
            .arg(&file)
            .output()
            .await
            .context("running bash -n")?;
        ensure!(
            check.status.success(),
            "bash -n rejects the script: {}",
            String::from_utf8_lossy(&check.stderr)
        );

        let out = ctl.run(["completions", "no-such-shell"]).await?;
        out.expect_code(2)?;
        out.error_line()?;
        Ok(())
    })
    .await
}
