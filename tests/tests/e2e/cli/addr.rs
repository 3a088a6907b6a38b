//! Where tunnelctl finds tunneld: `--addr` in its forms (`HOST:PORT`,
//! `http://HOST:PORT`, `unix:/abs/path`, `unix:///abs/path`, `unix:rel/path`
//! from the working directory), else `TUNNELD_ADDR`; messages show the
//! address as given.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Ctl, Sshd};

use super::dead_addr;
use crate::support::{Bed, e2e, exchange, find_tunnel, list, local_port};

#[tokio::test(flavor = "multi_thread")]
async fn tunneld_addr_env_is_used_and_addr_flag_wins() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let live = bed.daemon.addr().to_string();
        let dead = dead_addr()?.to_string();

        let out = Ctl::without_addr()?
            .env("TUNNELD_ADDR", &live)
            .run(["ls", "-q"])
            .await?;
        out.success()?;

        let out = Ctl::without_addr()?
            .env("TUNNELD_ADDR", &dead)
            .run(["--addr", &live, "ls", "-q"])
            .await?;
        out.success()?;

        let out = Ctl::without_addr()?
            .env("TUNNELD_ADDR", &dead)
            .run(["ls"])
            .await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains(&dead),
            "error line {line:?} does not name TUNNELD_ADDR's {dead}"
        );

        let out = Ctl::new(format!("http://{live}"))?
            .run(["ls", "-q"])
            .await?;
        out.success()?;
        Ok(())
    })
    .await
}

/// A bed whose tunneld serves only on a unix socket in its own temp dir.
async fn unix_bed() -> Result<(Bed, TempDir)> {
    // Short path: a unix socket path is limited to 107 bytes.
    let dir = tempfile::Builder::new().prefix("tctl-").tempdir()?;
    let socket = dir.path().join("tunneld.sock");
    let sshd = Sshd::start()?;
    let bed = Bed::with(sshd, |b| b.listen_unix(&socket)).await?;
    Ok((bed, dir))
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_address_works_for_every_form() -> Result<()> {
    e2e(async {
        let (bed, dir) = unix_bed().await?;
        let socket = dir.path().join("tunneld.sock");
        let abs = format!("unix:{}", socket.display());
        let echo = TcpPeer::echo().await?;
        let ctl = Ctl::new(&abs)?;

        let out = ctl
            .run([
                "open-local",
                "-q",
                "-L",
                &format!("0:127.0.0.1:{}", echo.port()),
            ])
            .await?;
        out.success()?;
        let id = out.stdout_text().trim_end().to_owned();
        let tunnel = find_tunnel(&bed.client, &id)
            .await?
            .context("id not in List")?;
        let port = local_port(&tunnel)?;
        let got = exchange(port, b"over unix", Duration::from_secs(10)).await?;
        ensure!(got == b"over unix", "echo returned {got:?}");

        let out = Ctl::new(format!("unix://{}", socket.display()))?
            .run(["ls", "-q"])
            .await?;
        out.success()?;
        ensure!(out.stdout_lines() == [id.clone()], "unix:// form: {out}");

        // Relative to the working directory.
        let rel = Ctl::new("unix:tunneld.sock")?.current_dir(dir.path());
        let out = rel.run(["ls", "-q"]).await?;
        out.success()?;
        ensure!(
            out.stdout_lines() == [id.clone()],
            "relative unix: form: {out}"
        );

        let out = ctl.run(["status"]).await?;
        out.success()?;
        let first = out.stdout_lines().into_iter().next().unwrap_or_default();
        let shown: Vec<&str> = first.split_whitespace().collect();
        ensure!(
            shown == ["address", abs.as_str()],
            "status shows the address as given: {out}"
        );

        let out = ctl.run(["exec", "--", "echo via-unix"]).await?;
        out.success()?;
        ensure!(out.stdout_text() == "via-unix\n", "{out}");

        ctl.run(["close", &id]).await?.success()?;
        poll_until("the port to be free", Duration::from_secs(5), || async {
            Ok(port_is_free(port).then_some(()))
        })
        .await?;
        ensure!(
            list(&bed.client).await?.tunnels.is_empty(),
            "tunnel left open"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_nobody_serves_is_one_line_naming_it() -> Result<()> {
    e2e(async {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nobody.sock");
        check_down(&missing).await?;

        // A socket file left behind by a dead daemon: bound, then closed.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale)?);
        check_down(&stale).await
    })
    .await
}

async fn check_down(path: &Path) -> Result<()> {
    let addr = format!("unix:{}", path.display());
    let ctl = Ctl::new(&addr)?;
    for (args, code) in [(&["ls"][..], 1), (&["exec", "--", "true"][..], 255)] {
        let out = ctl.run(args).await?;
        out.expect_code(code)?;
        ensure!(
            out.took < Duration::from_secs(5),
            "took {:?}: {out}",
            out.took
        );
        let line = out.error_line()?;
        ensure!(
            line.contains(&addr),
            "error line {line:?} does not name {addr}"
        );
    }
    Ok(())
}
