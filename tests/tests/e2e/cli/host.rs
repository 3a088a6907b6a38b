//! `tunnelctl host add` and `host remove`: a host added from the command
//! line runs commands (the remote exit code is tunnelctl's) and carries a
//! forward; `hosts` marks it as added; removing it is refused while a
//! tunnel runs over it, and `--force` closes the tunnel and frees its
//! port; the refusals are one error line each, with their exit codes.

use anyhow::{Result, ensure};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::sshd;

use super::{ctl, expect_usage_errors};
use crate::support::{Bed, carries, e2e};

#[tokio::test(flavor = "multi_thread")]
async fn host_add_runs_exec_and_forwards_and_remove_frees_its_ports() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let identity = bed.sshd.identity().to_path_buf();
        // The key named relative to tunnelctl's directory: made absolute.
        let dir = identity.parent().unwrap_or(std::path::Path::new("/"));
        let file = identity.file_name().unwrap_or_default().to_string_lossy();
        let ctl = ctl(&bed)?.current_dir(dir);
        let out = ctl
            .run([
                "host",
                "add",
                "edge",
                "--ssh",
                &bed.sshd.address(),
                "-i",
                &*file,
            ])
            .await?;
        out.success()?;
        let want = format!("host edge added ({})", bed.sshd.address());
        ensure!(out.stdout_lines() == [want.clone()], "want {want:?}: {out}");

        let out = ctl
            .run(["exec", "--host", "edge", "--", "echo hi; exit 5"])
            .await?;
        out.expect_code(5)?;
        ensure!(out.stdout_text() == "hi\n", "{out}");

        let hosts = ctl.run(["hosts"]).await?;
        hosts.success()?;
        ensure!(
            hosts
                .stdout_lines()
                .iter()
                .any(|l| l.starts_with("edge") && l.contains("(added)")),
            "{hosts}"
        );

        let port = sshd::free_port()?;
        let spec = format!("{port}:127.0.0.1:{}", echo.port());
        let out = ctl
            .run(["-q", "open-local", "--host", "edge", "-L", &spec])
            .await?;
        out.success()?;
        let id = out.stdout_text().trim().to_string();
        carries(port, "a forward over a host added by tunnelctl").await?;

        let out = ctl.run(["host", "remove", "edge"]).await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(line.contains(&id) && line.contains("--force"), "{line}");
        ensure!(!port_is_free(port), "the refused removal freed the port");

        let out = ctl.run(["host", "remove", "edge", "--force"]).await?;
        out.success()?;
        let want = format!("host edge removed; tunnels closed: {id}");
        ensure!(out.stdout_lines() == [want.clone()], "want {want:?}: {out}");
        ensure!(
            port_is_free(port),
            "port {port} held after host remove --force"
        );
        // As ssh: 255 when the command could not run.
        let out = ctl.run(["exec", "--host", "edge", "--", "true"]).await?;
        out.expect_code(255)?;
        ensure!(out.error_line()?.contains("edge"), "{out}");

        let out = ctl.run(["host", "remove", "default"]).await?;
        out.expect_code(1)?;
        ensure!(out.error_line()?.contains("reload"), "{out}");

        expect_usage_errors(
            &ctl,
            &[
                (&["host", "add", "a@b", "--ssh", "h"], &["host name", "'@'"]),
                (&["host", "add", "ok"], &["--ssh"]),
                (&["host", "add", "a b", "--ssh", "h"], &["' '"]),
                (&["host", "remove"], &["NAME"]),
            ],
        )
        .await?;
        Ok(())
    })
    .await
}
