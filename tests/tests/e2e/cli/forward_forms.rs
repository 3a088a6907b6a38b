//! Every forward form `ssh -L`/`-R`/`-D` takes, typed into tunnelctl: unix
//! socket paths on either side of `-L` and `-R`, `-R PORT` alone as a
//! reverse SOCKS proxy within `--permit-remote-open`, and `open-dynamic
//! -D`, by `-o json` and `--attach`. Each test checks what a user would:
//! bytes hashed through the forward, the body curl saw, the socket or port
//! gone after `close`, the exit code. Specs ssh refuses are refused the same
//! way, and `ssh -G` (which parses every `-L`/`-R`/`-D` and connects
//! nowhere) is asked alongside.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunneld_tests::Ctl;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{HttpPeer, TcpPeer, port_is_free};
use tunneld_tests::unix_peer::{self, UnixPeer};
use tunneld_tests::wait::poll_until;

use super::open::wait_refused;
use super::{ctl, num_field, parse_tunnel_line, str_field};
use crate::support::{Bed, curl, curl_socks, e2e, exchange, find_tunnel, local_port, remote_port};

/// Bound on one exchange through a forward, and on an attached tunnelctl's
/// first line and exit.
const PROMPT: Duration = Duration::from_secs(10);

/// A private directory for a test's sockets: short, to fit `sun_path`.
fn socket_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("tcf")
        .tempdir_in("/tmp")
        .context("creating a socket directory")
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// `tunnelctl ARGS -q`: exit 0 and exactly the new tunnel's id on stdout.
async fn open_quiet(ctl: &Ctl, args: &[&str]) -> Result<String> {
    let out = ctl.run(args.iter().chain(&["-q"])).await?;
    out.success()?;
    let lines = out.stdout_lines();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("t-"),
        "-q printed no single id: {out}"
    );
    Ok(lines[0].clone())
}

/// `tunnelctl close ID`, exit 0.
async fn close(ctl: &Ctl, id: &str) -> Result<()> {
    ctl.run(["close", id]).await?.success()?;
    Ok(())
}

/// Polls until connecting to the socket at `path` fails: removed, or a file
/// nothing listens on (what sshd leaves after a `-R /sock` forward).
async fn wait_dead(path: &Path) -> Result<()> {
    let what = format!("nothing to serve {}", path.display());
    poll_until(&what, PROMPT, || async {
        Ok(std::os::unix::net::UnixStream::connect(path)
            .is_err()
            .then_some(()))
    })
    .await
}

/// Polls until 127.0.0.1:`port` can be bound again.
async fn wait_port_free(port: u16) -> Result<()> {
    poll_until("the forward's port to be free", PROMPT, || async {
        Ok(port_is_free(port).then_some(()))
    })
    .await
}

/// Sends `data` to a digest server through the forward's listening side
/// (a TCP port on 127.0.0.1 or a unix socket) and checks the SHA-256 that
/// comes back.
async fn digest_through(via: &Via, data: &[u8]) -> Result<()> {
    let reply = match via {
        Via::Port(port) => exchange(*port, data, PROMPT).await?,
        Via::Socket(path) => tokio::time::timeout(PROMPT, unix_peer::exchange(path, data))
            .await
            .with_context(|| format!("exchange through {} hung", path.display()))??,
    };
    ensure!(
        reply == sha256_hex(data).as_bytes(),
        "digest through {via:?}: got {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}

/// Where a forward listens, as a test reaches it.
#[derive(Debug)]
enum Via {
    Port(u16),
    Socket(PathBuf),
}

/// A plain HTTP/1.1 server that counts its connections (HttpPeer does not):
/// answers every request with `body` and closes.
async fn counting_http(body: &'static str) -> Result<TcpPeer> {
    TcpPeer::start(move |mut stream| async move {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_local_form_carries_bytes_and_close_removes_its_socket() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let dir = socket_dir()?;
        let tcp_target = TcpPeer::digest().await?;
        let unix_target = dir.path().join("t.sock");
        let unix_peer = UnixPeer::digest(&unix_target).await?;
        let to_tcp = format!("127.0.0.1:{}", tcp_target.port());
        let to_unix = path_str(&unix_target);
        let l1 = dir.path().join("l1.sock");
        let l2 = dir.path().join("l2.sock");
        // (spec, the socket it listens on if any, whether it reaches the
        // unix target)
        let forms = [
            (format!("0:{to_tcp}"), None, false),
            (format!("{}:{to_tcp}", path_str(&l1)), Some(&l1), false),
            (format!("0:{to_unix}"), None, true),
            (format!("{}:{to_unix}", path_str(&l2)), Some(&l2), true),
        ];
        let data = random_bytes(1 << 20);
        let (mut tcp_seen, mut unix_seen) = (0, 0);
        for (spec, sock, to_socket) in forms {
            let id = open_quiet(&ctl, &["open-local", "-L", &spec]).await?;
            let via = match sock {
                Some(path) => {
                    ensure!(is_socket(path), "-L {spec}: no socket at {path:?}");
                    Via::Socket(path.clone())
                }
                None => {
                    let t = find_tunnel(&bed.client, &id)
                        .await?
                        .with_context(|| format!("-L {spec}: {id} not in List"))?;
                    Via::Port(local_port(&t)?)
                }
            };
            digest_through(&via, &data)
                .await
                .with_context(|| format!("-L {spec}"))?;
            if to_socket {
                unix_seen += 1;
            } else {
                tcp_seen += 1;
            }
            ensure!(
                tcp_target.accepted() == tcp_seen && unix_peer.accepted() == unix_seen,
                "-L {spec}: targets saw {} TCP and {} unix connections",
                tcp_target.accepted(),
                unix_peer.accepted()
            );
            close(&ctl, &id).await?;
            match via {
                Via::Socket(path) => {
                    ensure!(!path.exists(), "-L {spec}: {path:?} left after close")
                }
                Via::Port(port) => wait_port_free(port).await?,
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_remote_unix_form_carries_bytes_and_stops_serving_on_close() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let dir = socket_dir()?;

        // /rsock:host:port, reached with curl --unix-socket.
        let http = HttpPeer::start("through a socket sshd listens on").await?;
        let r1 = dir.path().join("r1.sock");
        let spec = format!("{}:127.0.0.1:{}", path_str(&r1), http.port());
        let id = open_quiet(&ctl, &["open-remote", "-R", &spec]).await?;
        let c = curl(&["--unix-socket", &path_str(&r1), "http://tunneld.test/"]).await?;
        ensure!(
            c.code == Some(0) && c.out == http.body(),
            "curl --unix-socket {}: {c:?}",
            r1.display()
        );
        close(&ctl, &id).await?;
        // sshd leaves the file (as after `ssh -R /sock:…`); nothing serves it.
        wait_dead(&r1).await?;

        // port:/lsock and /rsock:/lsock, bytes hashed by a local socket.
        let target = dir.path().join("lt.sock");
        let peer = UnixPeer::digest(&target).await?;
        let data = random_bytes(1 << 20);
        let id = open_quiet(
            &ctl,
            &["open-remote", "-R", &format!("0:{}", path_str(&target))],
        )
        .await?;
        let t = find_tunnel(&bed.client, &id)
            .await?
            .with_context(|| format!("{id} not in List"))?;
        let port = remote_port(&t)?;
        digest_through(&Via::Port(port), &data).await?;
        ensure!(peer.accepted() == 1, "target saw {}", peer.accepted());
        close(&ctl, &id).await?;
        wait_refused(port).await?;

        let r2 = dir.path().join("r2.sock");
        let spec = format!("{}:{}", path_str(&r2), path_str(&target));
        let id = open_quiet(&ctl, &["open-remote", "-R", &spec]).await?;
        ensure!(is_socket(&r2), "sshd made no socket at {}", r2.display());
        digest_through(&Via::Socket(r2.clone()), &data).await?;
        ensure!(peer.accepted() == 2, "target saw {}", peer.accepted());
        close(&ctl, &id).await?;
        wait_dead(&r2).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_port_alone_is_a_socks_proxy_within_permit_remote_open() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let allowed = HttpPeer::start("allowed from the server's side").await?;
        let other = counting_http("not allowed").await?;
        let permit = format!("localhost:{}", allowed.port());
        let id = open_quiet(
            &ctl,
            &["open-remote", "-R", "0", "--permit-remote-open", &permit],
        )
        .await?;
        let t = find_tunnel(&bed.client, &id)
            .await?
            .with_context(|| format!("{id} not in List"))?;
        ensure!(
            t.permit_remote_open == [permit.clone()],
            "permit-remote-open sent as {:?}",
            t.permit_remote_open
        );
        let proxy = remote_port(&t)?;

        let body = curl_socks(proxy, &format!("http://localhost:{}/", allowed.port())).await?;
        ensure!(body == allowed.body(), "allowed target answered {body:?}");

        let url = format!("http://localhost:{}/", other.port());
        let c = curl(&["--socks5-hostname", &format!("127.0.0.1:{proxy}"), &url]).await?;
        // 97: CURLE_PROXY, the SOCKS handshake refused.
        ensure!(c.code == Some(97), "curl to the refused target: {c:?}");
        ensure!(
            other.accepted() == 0,
            "the refused server saw {} connections",
            other.accepted()
        );
        // It is a working server all the same.
        let direct = curl(&[&url]).await?;
        ensure!(
            direct.code == Some(0) && direct.out == "not allowed" && other.accepted() == 1,
            "the refused server does not answer directly: {direct:?}"
        );
        close(&ctl, &id).await?;
        wait_refused(proxy).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_dynamic_json_names_the_kind_and_port_curl_goes_through() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let http = HttpPeer::start("through tunnelctl's SOCKS proxy").await?;
        let out = ctl.run(["open-dynamic", "-D", "0", "-o", "json"]).await?;
        out.success()?;
        let t: Value = out.json()?;
        ensure!(
            str_field(&t, "kind")? == "TUNNEL_KIND_DYNAMIC",
            "kind in {t}"
        );
        let id = str_field(&t, "id")?;
        let local = t.get("local").context("no local endpoint")?;
        ensure!(
            str_field(local, "host")? == "127.0.0.1",
            "local.host in {t}"
        );
        let port = num_field(local, "port")?;
        ensure!(port != 0 && port <= 65535, "local.port {port} in {t}");
        let port = port as u16;
        let body = curl_socks(port, &format!("http://localhost:{}/", http.port())).await?;
        ensure!(body == http.body(), "curl got {body:?}");
        close(&ctl, id).await?;
        wait_port_free(port).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_dynamic_attached_serves_until_ctrl_c_then_frees_the_port() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("while attached").await?;
        let mut child = ctl(&bed)?
            .spawn(["open-dynamic", "-D", "0", "--attach"])
            .await?;
        let t = parse_tunnel_line(&child.expect_line(PROMPT).await?)?;
        ensure!(
            t.kind == "dynamic" && t.listen_host == "127.0.0.1" && t.target == "SOCKS",
            "tunnel line {t:?}"
        );
        let url = format!("http://localhost:{}/", http.port());
        let body = curl_socks(t.listen_port, &url).await?;
        ensure!(body == http.body(), "curl got {body:?}");

        child.signal(Signal::SIGINT)?;
        let status = child.wait(PROMPT).await?;
        ensure!(
            status.code() == Some(0),
            "after SIGINT: {status}; stderr {:?}",
            child.stderr_text()
        );
        ensure!(
            port_is_free(t.listen_port),
            "port {} still taken after tunnelctl exited",
            t.listen_port
        );
        ensure!(
            find_tunnel(&bed.client, &t.id).await?.is_none(),
            "{} still in List",
            t.id
        );
        Ok(())
    })
    .await
}

/// `ssh -G -F /dev/null FLAG SPEC tunneld.invalid`: ssh parses the forward
/// as it would to connect, prints its configuration and connects nowhere.
/// Returns the exit code, stdout and stderr.
async fn ssh_g(flag: &str, spec: &str) -> Result<(Option<i32>, String, String)> {
    let out = tokio::process::Command::new("ssh")
        .args(["-G", "-F", "/dev/null", flag, spec, "tunneld.invalid"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running ssh -G")?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn specs_ssh_refuses_are_refused_and_unix_forms_it_takes_mean_the_same() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let refused = [
            ("open-local", "-L", "1080", "local"),
            ("open-local", "-L", "1080:localhost", "local"),
            ("open-local", "-L", "1080:localhost:70000", "local"),
            ("open-dynamic", "-D", "1080:localhost:80", "dynamic"),
            ("open-remote", "-R", "1080:localhost:0", "remote"),
        ];
        for (verb, flag, spec, kind) in refused {
            let (code, _, err) = ssh_g(flag, spec).await?;
            ensure!(
                code == Some(255)
                    && err.contains(&format!("Bad {kind} forwarding specification '{spec}'")),
                "ssh -G {flag} {spec} did not refuse it: exit {code:?}, {err:?}"
            );
            let out = ctl.run([verb, flag, spec]).await?;
            out.expect_code(2)?;
            let line = out.error_line()?;
            ensure!(
                line.contains(flag),
                "{verb} {flag} {spec}: {line:?} does not name {flag}"
            );
            ensure!(out.stdout.is_empty(), "{verb} {flag} {spec}: {out}");
        }

        // Unix forms both take, read the same way: ssh -G's
        // `localforward LISTEN TARGET` against tunnelctl's -o json.
        let dir = socket_dir()?;
        let http = HttpPeer::start("unused").await?;
        let l = path_str(&dir.path().join("l.sock"));
        let t = path_str(&dir.path().join("t.sock"));
        let r = path_str(&dir.path().join("r.sock"));
        let accepted = [
            (
                "open-local",
                "-L",
                format!("{l}:{t}"),
                format!("localforward {l} {t}"),
            ),
            (
                "open-remote",
                "-R",
                format!("{r}:127.0.0.1:{}", http.port()),
                format!("remoteforward {r} [127.0.0.1]:{}", http.port()),
            ),
        ];
        for (verb, flag, spec, ssh_line) in accepted {
            let (code, out, err) = ssh_g(flag, &spec).await?;
            ensure!(
                code == Some(0) && out.lines().any(|l| l == ssh_line),
                "ssh -G {flag} {spec}: exit {code:?}, no {ssh_line:?} in\n{out}{err}"
            );
            let out = ctl.run([verb, flag, &spec, "-o", "json"]).await?;
            out.success()?;
            let json = out.json()?;
            let (listen, target) = if flag == "-L" {
                ("local", "remote")
            } else {
                ("remote", "local")
            };
            let listen_path = str_field(&json[listen], "path")?;
            let shown = match str_field(&json[target], "path") {
                Ok(path) => path.to_owned(),
                Err(_) => format!(
                    "[{}]:{}",
                    str_field(&json[target], "host")?,
                    num_field(&json[target], "port")?
                ),
            };
            let ours = format!("{}forward {listen_path} {shown}", &listen);
            ensure!(
                ours == ssh_line,
                "tunnelctl read {spec} as {ours:?}, ssh as {ssh_line:?}: {json}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_socks_for_a_dynamic_tunnel_and_paths_for_sockets() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let dir = socket_dir()?;
        let http = HttpPeer::start("unused").await?;
        let target = format!("127.0.0.1:{}", http.port());
        let l = path_str(&dir.path().join("l.sock"));
        let r = path_str(&dir.path().join("r.sock"));
        let dynamic = open_quiet(&ctl, &["open-dynamic", "-D", "0"]).await?;
        let local = open_quiet(&ctl, &["open-local", "-L", &format!("{l}:{target}")]).await?;
        let remote = open_quiet(&ctl, &["open-remote", "-R", &format!("{r}:{target}")]).await?;
        let proxy = local_port(
            &find_tunnel(&bed.client, &dynamic)
                .await?
                .context("dynamic tunnel not in List")?,
        )?;

        let out = ctl.run(["list"]).await?;
        out.success()?;
        let lines = out.stdout_lines();
        let header: Vec<&str> = lines
            .first()
            .context("no header")?
            .split_whitespace()
            .collect();
        ensure!(
            header[..5] == ["ID", "KIND", "LOCAL", "REMOTE", "HOST"],
            "header {header:?}"
        );
        let expected = [
            (
                &dynamic,
                "dynamic",
                format!("127.0.0.1:{proxy}"),
                "SOCKS".to_string(),
            ),
            (&local, "local", l.clone(), target.clone()),
            (&remote, "remote", target.clone(), r.clone()),
        ];
        for (id, kind, local_col, remote_col) in expected {
            let row = lines
                .iter()
                .find(|line| line.split_whitespace().next() == Some(id.as_str()))
                .with_context(|| format!("no row for {id}: {out}"))?;
            let words: Vec<&str> = row.split_whitespace().collect();
            ensure!(
                words[1..5] == [kind, local_col.as_str(), remote_col.as_str(), "default"],
                "row for {id} ({kind}): {row:?}"
            );
        }
        Ok(())
    })
    .await
}
