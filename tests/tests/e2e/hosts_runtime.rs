//! Hosts at runtime: added and removed through the API (AddHost,
//! RemoveHost), persisted across restarts, and the config file's hosts
//! added, replaced and removed by a reload. Real tunneld processes, a real
//! sshd; what is checked is what a user checks: the command's exit code and
//! output, bytes that arrive intact, ports that are freed, ids and ports
//! kept.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{
    AddHostRequest, ExecRequest, HostSource, ListResponse, OpenLocalForwardRequest, ReloadRequest,
    RemoveHostRequest, SshHost, Tunnel, TunnelState, WatchRequest, WatchResponse,
    watch_response::Event,
};
use tunneld_tests::daemon::HostSpec;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd, Tunneld, exec, sshd};

use crate::support::{
    Bed, IO_TIMEOUT, carries, e2e, expect_status, list, local_port, open_local_req,
};

/// The states a Watch of one tunnel reports until the `n`th `last` (the
/// initial state counts), within [`IO_TIMEOUT`].
async fn states_until(
    events: &mut tonic::Streaming<WatchResponse>,
    last: TunnelState,
    n: usize,
) -> Result<Vec<TunnelState>> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    while seen.iter().filter(|s| **s == last).count() < n {
        let msg = tokio::time::timeout_at(deadline, events.message())
            .await
            .with_context(|| format!("no {last:?} in time; saw {seen:?}"))??
            .with_context(|| format!("the watch ended; saw {seen:?}"))?;
        if let Some(Event::Tunnel(t)) = msg.event {
            seen.push(TunnelState::try_from(t.state)?);
        }
    }
    Ok(seen)
}

/// A tunneld with no host of its own (no `--ssh`) on `state`.
async fn hostless(sshd: &Sshd, state: &Path) -> Result<Tunneld> {
    Tunneld::builder(sshd)
        .without_ssh_host()
        .state_dir(state)
        .start()
        .await
}

fn add(name: &str, sshd: &Sshd, persist: bool) -> AddHostRequest {
    AddHostRequest {
        name: name.into(),
        ssh: sshd.address(),
        persist,
        ..Default::default()
    }
}

fn host<'a>(l: &'a ListResponse, name: &str) -> Option<&'a SshHost> {
    l.hosts.iter().find(|h| h.name == name)
}

/// Runs `echo NAME; exit 3` on `host`: the output and the remote exit code
/// come back.
async fn exec_on(client: &Client, host: &str) -> Result<()> {
    let out = exec::run(
        client,
        ExecRequest {
            host: host.into(),
            command: format!("echo {host}; exit 3"),
            ..Default::default()
        },
    )
    .await;
    ensure!(
        out.code().ok() == Some(3) && out.stdout_text() == format!("{host}\n"),
        "exec on {host}: {out}"
    );
    Ok(())
}

/// A local forward over `host` to 127.0.0.1:`target` on `lport` (0: any).
fn forward(
    host: &str,
    name: &str,
    lport: u16,
    target: u16,
    persist: bool,
) -> OpenLocalForwardRequest {
    OpenLocalForwardRequest {
        host: host.into(),
        local_port: u32::from(lport),
        remote_host: "127.0.0.1".into(),
        remote_port: u32::from(target),
        name: name.into(),
        persist,
        ..Default::default()
    }
}

/// Waits until the tunnel `id` is listed OPEN.
async fn open_again(client: &Client, id: &str) -> Result<Tunnel> {
    poll_until(&format!("{id} to be open"), IO_TIMEOUT, || {
        let client = client.clone();
        async move {
            let tunnels = list(&client).await?.tunnels;
            match tunnels.into_iter().find(|t| t.id == id) {
                Some(t) if t.state == TunnelState::Open as i32 => Ok(Some(t)),
                other => anyhow::bail!("listed: {other:?}"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_added_at_runtime_carry_exec_and_forwards_and_persisted_ones_survive_restarts()
-> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let state = tempfile::tempdir()?;
        let echo = TcpPeer::echo().await?;
        let mut daemon = hostless(&sshd, state.path()).await?;
        let client = daemon.client();
        ensure!(list(&client).await?.hosts.is_empty(), "hosts at start");

        // Added, not persisted: exec and a forward over it.
        let edge = client
            .clone()
            .add_host(add("edge", &sshd, false))
            .await
            .context("AddHost edge")?
            .into_inner()
            .host
            .context("no host")?;
        ensure!(
            edge.source == HostSource::Api as i32
                && edge.address.ends_with(&sshd.port().to_string()),
            "{edge:?}"
        );
        exec_on(&client, "edge").await?;
        let t = open_local_req(&client, forward("edge", "", 0, echo.port(), false)).await?;
        carries(local_port(&t)?, "a forward over an added host").await?;

        // Refusals: a taken name, a bad one, a relative key path.
        let r = client.clone().add_host(add("edge", &sshd, false)).await;
        expect_status("the name again", r, Code::AlreadyExists, &["edge"])?;
        let r = client.clone().add_host(add("-x", &sshd, false)).await;
        expect_status("a bad name", r, Code::InvalidArgument, &["-x"])?;
        let r = client
            .clone()
            .add_host(AddHostRequest {
                identity_file: "keys/id".into(),
                ..add("rel", &sshd, false)
            })
            .await;
        expect_status("a relative key", r, Code::InvalidArgument, &["absolute"])?;

        // Persisted, with its own key and known_hosts, and a persisted
        // tunnel over it.
        client
            .clone()
            .add_host(AddHostRequest {
                identity_file: sshd.identity().display().to_string(),
                known_hosts_file: sshd.known_hosts().display().to_string(),
                ..add("kept", &sshd, true)
            })
            .await
            .context("AddHost kept")?;
        let lport = sshd::free_port()?;
        let db = open_local_req(&client, forward("kept", "db", lport, echo.port(), true)).await?;
        carries(lport, "a persisted forward over a persisted host").await?;
        let r = client
            .clone()
            .remove_host(RemoveHostRequest {
                name: "kept".into(),
                force: false,
            })
            .await;
        expect_status(
            "removing a host with tunnels",
            r,
            Code::FailedPrecondition,
            &[&db.id],
        )?;

        daemon.terminate().await?;
        ensure!(
            port_is_free(lport),
            "port {lport} held after tunneld stopped"
        );
        let mut daemon = hostless(&sshd, state.path()).await?;
        let client = daemon.client();
        let again = open_again(&client, &db.id).await?;
        ensure!(
            again.name == "db" && local_port(&again)? == lport,
            "restored as {again:?}"
        );
        carries(lport, "the restored forward").await?;
        let l = list(&client).await?;
        ensure!(host(&l, "edge").is_none(), "edge came back: {:?}", l.hosts);
        let kept = host(&l, "kept").context("kept not restored")?;
        ensure!(kept.source == HostSource::Persisted as i32, "{kept:?}");
        exec_on(&client, "kept").await?;

        // Forced removal closes its tunnel, frees its port, forgets both.
        let removed = client
            .clone()
            .remove_host(RemoveHostRequest {
                name: "kept".into(),
                force: true,
            })
            .await
            .context("RemoveHost --force")?
            .into_inner();
        ensure!(
            removed.closed.iter().any(|t| t.id == db.id),
            "closed: {:?}",
            removed.closed
        );
        ensure!(
            port_is_free(lport),
            "port {lport} held after its host was removed"
        );
        let r = client
            .clone()
            .exec(ExecRequest {
                host: "kept".into(),
                command: "true".into(),
                ..Default::default()
            })
            .await;
        expect_status("exec on a removed host", r, Code::NotFound, &["kept"])?;
        daemon.terminate().await?;
        let mut daemon = hostless(&sshd, state.path()).await?;
        let l = list(&daemon.client()).await?;
        ensure!(
            l.hosts.is_empty() && l.tunnels.is_empty(),
            "after removal and restart: {l:?}"
        );
        daemon.terminate().await?;
        Ok(())
    })
    .await
}

/// The config file: `hosts` as `(name, table)`, and one declared local
/// forward `web` over `second` when given.
fn config(hosts: &[(&str, toml::Table)], web: Option<String>) -> Result<String> {
    let mut root = toml::Table::new();
    let hosts: toml::Table = hosts
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone().into()))
        .collect();
    root.insert("hosts".into(), hosts.into());
    if let Some(spec) = web {
        let mut web = toml::Table::new();
        web.insert("host".into(), "second".into());
        web.insert("local".into(), spec.into());
        let mut tunnels = toml::Table::new();
        tunnels.insert("web".into(), web.into());
        root.insert("tunnels".into(), tunnels.into());
    }
    Ok(toml::to_string(&root)?)
}

async fn reload(bed: &Bed, text: &str) -> Result<tunnel_proto::v1::ReloadResponse> {
    let path = bed.daemon.config_file().context("no config file")?;
    std::fs::write(path, text)?;
    Ok(bed
        .client
        .clone()
        .reload(ReloadRequest {})
        .await
        .context("Reload")?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_adds_replaces_and_removes_the_files_hosts() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let sshd = Sshd::start()?;
        let spec = HostSpec::from_sshd(&sshd);
        let first = spec.to_toml();
        let state = tempfile::tempdir()?;
        let bed = Bed::with(sshd, |b| {
            b.host("first", spec.clone()).state_dir(state.path())
        })
        .await?;
        let client = bed.client.clone();
        let api = open_local_req(&client, forward("first", "api", 0, echo.port(), false)).await?;
        let kport = sshd::free_port()?;
        let keep =
            open_local_req(&client, forward("first", "keep", kport, echo.port(), true)).await?;
        carries(local_port(&api)?, "api").await?;
        let mut watching = client
            .clone()
            .watch(WatchRequest {
                tunnel_id: api.id.clone(),
            })
            .await?
            .into_inner();

        // first changed (another keepalive), second added with a tunnel.
        let mut changed = first.clone();
        changed.insert("keepalive_interval".into(), "20s".into());
        let wport = sshd::free_port()?;
        let text = config(
            &[("first", changed.clone()), ("second", first.clone())],
            Some(format!("{wport}:127.0.0.1:{}", echo.port())),
        )?;
        let r = reload(&bed, &text).await?;
        ensure!(
            r.hosts_changed == ["first"] && r.hosts_added == ["second"] && r.added == ["web"],
            "{r:?}"
        );
        // first's tunnels are reopened with their ids and ports.
        for t in [&api, &keep] {
            let again = open_again(&client, &t.id).await?;
            ensure!(
                local_port(&again)? == local_port(t)? && again.name == t.name,
                "{} came back as {again:?}",
                t.id
            );
            carries(
                local_port(t)?,
                &format!("{} over the replaced host", t.name),
            )
            .await?;
        }
        carries(wport, "web over the added host").await?;
        // Its watcher saw it reopen, never end: RECONNECTING, then OPEN.
        let states = states_until(&mut watching, TunnelState::Open, 2).await?;
        ensure!(
            states.contains(&TunnelState::Reconnecting) && !states.contains(&TunnelState::Closed),
            "the watcher of {} saw {states:?} across its host's replacement",
            api.id
        );

        // An unchanged file changes nothing.
        let r = reload(&bed, &text).await?;
        ensure!(
            r.hosts_changed.is_empty() && r.hosts_added.is_empty() && r.hosts_removed.is_empty(),
            "{r:?}"
        );

        // first removed: the API tunnel closes, its port freed; the
        // persisted one waits for the host.
        let text = config(
            &[("second", first.clone())],
            Some(format!("{wport}:127.0.0.1:{}", echo.port())),
        )?;
        let r = reload(&bed, &text).await?;
        ensure!(r.hosts_removed == ["first"], "{r:?}");
        let l = list(&client).await?;
        ensure!(l.tunnels.iter().all(|t| t.id != api.id), "api still listed");
        // Its watcher's last message is CLOSED, and the stream ends.
        states_until(&mut watching, TunnelState::Closed, 1).await?;
        let after = tokio::time::timeout(IO_TIMEOUT, watching.message()).await??;
        ensure!(after.is_none(), "the watch went on after CLOSED: {after:?}");
        ensure!(port_is_free(local_port(&api)?), "api's port held");
        let waiting = l
            .tunnels
            .iter()
            .find(|t| t.id == keep.id)
            .context("keep gone")?;
        ensure!(
            waiting.state == TunnelState::Failed as i32 && waiting.state_detail.contains("first"),
            "{waiting:?}"
        );
        ensure!(port_is_free(kport), "keep's port held");
        carries(wport, "web after first was removed").await?;

        // first back: keep opens again with its id and port.
        let text = config(
            &[("first", first.clone()), ("second", first)],
            Some(format!("{wport}:127.0.0.1:{}", echo.port())),
        )?;
        let r = reload(&bed, &text).await?;
        ensure!(r.hosts_added == ["first"], "{r:?}");
        let again = open_again(&client, &keep.id).await?;
        ensure!(local_port(&again)? == kport, "{again:?}");
        carries(kport, "keep once its host came back").await?;

        // A file host cannot be removed through the API.
        let r = client
            .clone()
            .remove_host(RemoveHostRequest {
                name: "second".into(),
                force: true,
            })
            .await;
        expect_status(
            "removing a file host",
            r,
            Code::FailedPrecondition,
            &["reload"],
        )?;
        Ok(())
    })
    .await
}
