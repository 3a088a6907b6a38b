//! `tunnelctl open-local` and `open-remote`, by flags and by OpenSSH's
//! `-L`/`-R` spec: the printed tunnel, bytes going through it, `-q` ids that
//! `close` takes, `-o json` in the proto3 mapping, and invalid forms refused
//! before any call.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tunneld_tests::data::{random_bytes, random_token};
use tunneld_tests::peers::{HttpPeer, TcpPeer, http_get, port_is_free};
use tunneld_tests::wait::poll_until;

use super::{check_local_tunnel_json, ctl, num_field, parse_tunnel_line, str_field};
use crate::support::{Bed, e2e, exchange, find_tunnel, list, local_port};

/// Sends a few KiB through 127.0.0.1:`port` to an echo server behind it and
/// checks they come back unchanged.
async fn echo_through(port: u16) -> Result<()> {
    let data = random_bytes(64 * 1024);
    let got = exchange(port, &data, Duration::from_secs(10)).await?;
    ensure!(
        got == data,
        "echo through port {port}: {} bytes back of {}",
        got.len(),
        data.len()
    );
    Ok(())
}

/// Polls until 127.0.0.1:`port` can be bound again.
async fn wait_port_free(port: u16) -> Result<()> {
    poll_until(
        "the forward's port to be free",
        Duration::from_secs(5),
        || async { Ok(port_is_free(port).then_some(())) },
    )
    .await
}

/// Polls until connecting to 127.0.0.1:`port` is refused (the SSH server
/// stopped listening there).
pub async fn wait_refused(port: u16) -> Result<()> {
    poll_until(
        "the port to refuse connections",
        Duration::from_secs(5),
        || async {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Some(())),
                Err(e) => bail!("connect error {e}"),
                Ok(_) => bail!("port {port} still accepts"),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_local_by_flags_prints_the_tunnel_and_carries_bytes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let out = ctl
            .run([
                "open-local",
                "--lport",
                "0",
                "--rhost",
                "127.0.0.1",
                "--rport",
                &echo.port().to_string(),
            ])
            .await?;
        out.success()?;
        let lines = out.stdout_lines();
        ensure!(lines.len() == 1, "expected one line: {out}");
        let t = parse_tunnel_line(&lines[0])?;
        ensure!(t.kind == "local" && t.via == "default", "{t:?}");
        ensure!(
            t.listen_host == "127.0.0.1",
            "listening on {:?}",
            t.listen_host
        );
        ensure!(
            t.target == format!("127.0.0.1:{}", echo.port()),
            "target {:?}",
            t.target
        );
        let listed = find_tunnel(&bed.client, &t.id)
            .await?
            .context("printed id not in List")?;
        ensure!(
            local_port(&listed)? == t.listen_port,
            "List port vs printed: {listed:?}"
        );

        echo_through(t.listen_port).await?;
        ensure!(
            echo.accepted() == 1,
            "the echo server saw {} connections",
            echo.accepted()
        );

        ctl.run(["close", &t.id]).await?.success()?;
        wait_port_free(t.listen_port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_local_by_spec_quiet_prints_the_id_close_frees_the_port() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let out = ctl.run(["open-local", "-q", "-L", &spec]).await?;
        out.success()?;
        let id = out.stdout_text();
        let id = id.strip_suffix('\n').context("no newline after the id")?;
        ensure!(
            id.starts_with("t-") && !id.contains(char::is_whitespace),
            "-q printed more than an id: {out}"
        );
        let tunnel = find_tunnel(&bed.client, id)
            .await?
            .context("id not in List")?;
        let port = local_port(&tunnel)?;
        echo_through(port).await?;

        // `tunnelctl close $(tunnelctl open-local -q ...)`
        let closed = ctl.run(["close", id]).await?;
        closed.success()?;
        ensure!(
            closed.stdout_text() == format!("{id}\n"),
            "close printed: {closed}"
        );
        wait_port_free(port).await?;
        ensure!(
            find_tunnel(&bed.client, id).await?.is_none(),
            "closed tunnel still listed"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_local_spec_with_bind_address_binds_there() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("127.0.0.1:0:127.0.0.1:{}", echo.port());
        let out = ctl(&bed)?.run(["open-local", "-L", &spec]).await?;
        out.success()?;
        let t = parse_tunnel_line(out.stdout_text().trim_end())?;
        ensure!(t.listen_host == "127.0.0.1", "{t:?}");
        echo_through(t.listen_port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_local_json_is_the_tunnel_message() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let out = ctl(&bed)?
            .run([
                "open-local",
                "-o",
                "json",
                "--lport",
                "0",
                "--rhost",
                "127.0.0.1",
                "--rport",
                &echo.port().to_string(),
            ])
            .await?;
        out.success()?;
        ensure!(
            out.stdout_lines().len() > 1,
            "a single message is pretty-printed: {out}"
        );
        let t = out.json()?;
        check_local_tunnel_json(&t, 0, echo.port())?;
        ensure!(
            str_field(&t, "state")? == "TUNNEL_STATE_OPEN",
            "state in {t}"
        );
        ensure!(
            t.get("attached").is_none(),
            "attached=false is a default and must be omitted: {t}"
        );
        ensure!(
            t.get("stateDetail").is_none(),
            "empty stateDetail must be omitted: {t}"
        );
        let id = str_field(&t, "id")?;
        let port = num_field(&t["local"], "port")? as u16;
        let listed = find_tunnel(&bed.client, id)
            .await?
            .context("JSON id not in List")?;
        ensure!(local_port(&listed)? == port, "List {listed:?} vs JSON {t}");
        echo_through(port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_remote_by_flags_serves_through_the_ssh_server() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let body = format!("served locally {}", random_token());
        let http = HttpPeer::start(body.clone()).await?;
        let ctl = ctl(&bed)?;
        let out = ctl
            .run([
                "open-remote",
                "--rport",
                "0",
                "--lhost",
                "127.0.0.1",
                "--lport",
                &http.port().to_string(),
            ])
            .await?;
        out.success()?;
        let t = parse_tunnel_line(out.stdout_text().trim_end())?;
        ensure!(t.kind == "remote" && t.via == "default", "{t:?}");
        ensure!(
            t.target == format!("127.0.0.1:{}", http.port()),
            "target {:?}",
            t.target
        );
        ensure!(
            t.listen_port != 0,
            "server-allocated port not printed: {t:?}"
        );
        let (status, got) = http_get(&format!("http://127.0.0.1:{}/", t.listen_port)).await?;
        ensure!(
            status == 200 && got == body,
            "through the remote forward: {status} {got:?}"
        );

        ctl.run(["close", &t.id]).await?.success()?;
        wait_refused(t.listen_port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_remote_by_spec_quiet_and_json() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("behind -R").await?;
        let ctl = ctl(&bed)?;
        let spec = format!("0:127.0.0.1:{}", http.port());

        let out = ctl.run(["open-remote", "-q", "-R", &spec]).await?;
        out.success()?;
        let id = out.stdout_text().trim_end().to_owned();
        ensure!(
            out.stdout_lines() == [id.clone()] && id.starts_with("t-"),
            "-q: {out}"
        );
        let tunnel = find_tunnel(&bed.client, &id)
            .await?
            .context("id not in List")?;
        let port = crate::support::remote_port(&tunnel)?;
        let (status, body) = http_get(&format!("http://127.0.0.1:{port}/")).await?;
        ensure!(status == 200 && body == "behind -R", "{status} {body:?}");

        let out = ctl.run(["open-remote", "-o", "json", "-R", &spec]).await?;
        out.success()?;
        let t = out.json()?;
        super::check_camel_case(&t)?;
        ensure!(
            str_field(&t, "kind")? == "TUNNEL_KIND_REMOTE",
            "kind in {t}"
        );
        ensure!(num_field(&t["remote"], "port")? != 0, "remote.port in {t}");
        ensure!(
            num_field(&t["local"], "port")? == u64::from(http.port()),
            "local.port in {t}"
        );

        ctl.run(["close", &id]).await?.success()?;
        wait_refused(port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_forwards_are_usage_errors_and_open_nothing() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        // (arguments, the flag the message must name)
        let cases: &[(&[&str], &str)] = &[
            (&["open-local", "-L", "8080:db"], "-L"),
            (&["open-local", "-L", "70000:h:1"], "-L"),
            (&["open-local", "-L", "1:h:0"], "-L"),
            (&["open-local", "-L", "a:b:c:d:e"], "-L"),
            (&["open-local", "-L", "[::1:0:h:1"], "-L"),
            (
                &["open-local", "--lport", "70000", "--rport", "1"],
                "--lport",
            ),
            (&["open-local", "--lport", "0", "--rport", "0"], "--rport"),
            (&["open-local", "--lport", "x", "--rport", "1"], "--lport"),
            (&["open-local", "--rport", "1"], "--lport"),
            (&["open-local", "-L", "0:h:1", "--lport", "2"], "--lport"),
            (&["open-remote", "-R", "x:y"], "-R"),
            (&["open-remote", "-R", "0:h:70000"], "-R"),
            (
                &["open-remote", "--rport", "65536", "--lport", "1"],
                "--rport",
            ),
            (&["open-remote", "--rport", "0", "--lport", "0"], "--lport"),
        ];
        for (args, flag) in cases {
            let out = ctl.run(args.iter()).await?;
            out.expect_code(2)?;
            let line = out.error_line()?;
            ensure!(
                line.contains(flag),
                "{args:?}: message {line:?} does not name {flag}"
            );
            ensure!(out.stdout.is_empty(), "{args:?} printed on stdout: {out}");
        }
        let open = list(&bed.client).await?.tunnels;
        ensure!(open.is_empty(), "invalid commands opened tunnels: {open:?}");
        Ok(())
    })
    .await
}
