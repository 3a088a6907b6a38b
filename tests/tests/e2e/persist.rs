//! Tunnels that outlive tunneld: names, `persist`, the state store. Every
//! restart here is a real tunneld process stopped (SIGTERM) or killed
//! (SIGKILL) and a new one started on the same `--state-dir`; what comes
//! back is checked the way a user would: same id, name and port, and bytes
//! that arrive intact.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{
    OpenAttachedRequest, OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel, TunnelSource,
    TunnelState, WatchRequest, open_attached_request::Forward, watch_response::Event,
};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd, Tunneld, sshd};

use crate::support::{
    IO_TIMEOUT, carries, close, e2e, expect_status, list, local_port, open_local_req, remote_port,
};

/// A local forward to 127.0.0.1:`port`. A persisted one listens on a port
/// below the ephemeral range, so no other test's connection can take it
/// while tunneld is down and it waits to be bound again.
fn local(port: u16, name: &str, persist: bool) -> OpenLocalForwardRequest {
    let local_port = if persist {
        sshd::free_port().map(u32::from).unwrap_or(0)
    } else {
        0
    };
    OpenLocalForwardRequest {
        local_port,
        remote_host: "127.0.0.1".into(),
        remote_port: u32::from(port),
        name: name.into(),
        persist,
        ..Default::default()
    }
}

async fn start(sshd: &Sshd, state: &Path) -> Result<Tunneld> {
    Tunneld::builder(sshd).state_dir(state).start().await
}

/// Waits until every tunnel of `ids` is listed, and every tunnel listed is
/// OPEN (none still being restored); returns the list.
async fn restored(client: &Client, ids: &[&str]) -> Result<Vec<Tunnel>> {
    poll_until("the persisted tunnels to be restored", IO_TIMEOUT, || {
        let client = client.clone();
        async move {
            let tunnels = list(&client).await?.tunnels;
            let open = ids.iter().all(|id| tunnels.iter().any(|t| t.id == *id))
                && tunnels.iter().all(|t| t.state == TunnelState::Open as i32);
            if open {
                return Ok(Some(tunnels));
            }
            let seen: Vec<String> = tunnels
                .iter()
                .map(|t| format!("{} {}", t.id, t.state_detail))
                .collect();
            anyhow::bail!("waiting for {ids:?}; listed: {seen:?}")
        }
    })
    .await
}

fn seq(id: &str) -> u64 {
    id.trim_start_matches("t-").parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn persisted_tunnels_survive_sigterm_and_sigkill_with_their_ids_names_and_ports() -> Result<()>
{
    e2e(async {
        let sshd = Sshd::start()?;
        let state = tempfile::tempdir()?;
        let echo = TcpPeer::echo().await?;
        let service = TcpPeer::echo().await?;
        let mut daemon = start(&sshd, state.path()).await?;
        let client = daemon.client();

        let db = open_local_req(&client, local(echo.port(), "db", true)).await?;
        let web = client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                remote_port: u32::from(sshd::free_port()?),
                local_host: "127.0.0.1".into(),
                local_port: u32::from(service.port()),
                persist: true,
                max_connections: 7,
                ..Default::default()
            })
            .await?
            .into_inner()
            .tunnel
            .context("no tunnel")?;
        let scratch = open_local_req(&client, local(echo.port(), "scratch", false)).await?;
        ensure!(
            db.name == "db" && db.source == TunnelSource::Persisted as i32,
            "{db:?}"
        );
        ensure!(scratch.source == TunnelSource::Api as i32, "{scratch:?}");
        let (db_port, web_port) = (local_port(&db)?, remote_port(&web)?);
        carries(db_port, "db").await?;
        carries(web_port, "the remote forward").await?;
        let mut given = vec![db.id.clone(), web.id.clone(), scratch.id.clone()];

        for stop in ["SIGTERM", "SIGKILL"] {
            if stop == "SIGTERM" {
                daemon.terminate().await?;
            } else {
                daemon.kill().await?;
            }
            ensure!(
                port_is_free(local_port(&scratch)?) || stop == "SIGKILL",
                "scratch port held"
            );
            daemon = start(&sshd, state.path()).await?;
            let client = daemon.client();
            let tunnels = restored(&client, &[&db.id, &web.id]).await?;
            ensure!(
                tunnels.len() == 2,
                "after {stop}: expected db and the remote forward only, got {tunnels:?}"
            );
            let back_db = tunnels.iter().find(|t| t.id == db.id).context("db")?;
            let back_web = tunnels.iter().find(|t| t.id == web.id).context("web")?;
            ensure!(back_db.name == "db", "after {stop}: {back_db:?}");
            ensure!(
                local_port(back_db)? == db_port && remote_port(back_web)? == web_port,
                "after {stop}: ports changed: {back_db:?} {back_web:?}"
            );
            ensure!(back_web.max_connections == 7, "limits lost: {back_web:?}");
            ensure!(
                back_db.source == TunnelSource::Persisted as i32,
                "after {stop}: {back_db:?}"
            );
            carries(db_port, "db after a restart").await?;
            carries(web_port, "the remote forward after a restart").await?;
            // A new tunnel never takes an id given before, persisted or not.
            let fresh = open_local_req(&client, local(echo.port(), "", false)).await?;
            ensure!(
                given.iter().all(|g| seq(&fresh.id) > seq(g)),
                "after {stop}: new tunnel {} reuses or precedes an earlier id ({given:?})",
                fresh.id
            );
            given.push(fresh.id);
        }

        // Closed by name: forgotten, so the next start does not bring it back.
        let client = daemon.client();
        let closed = close(&client, "db").await?;
        ensure!(closed.id == db.id, "closing by name closed {closed:?}");
        ensure!(port_is_free(db_port), "db's port held after Close");
        daemon.terminate().await?;
        let daemon = start(&sshd, state.path()).await?;
        let client = daemon.client();
        let tunnels = restored(&client, &[&web.id]).await?;
        ensure!(
            tunnels.len() == 1,
            "closed tunnel came back or web is missing: {tunnels:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_unique_checked_and_answer_for_the_id() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let state = tempfile::tempdir()?;
        let daemon = start(&sshd, state.path()).await?;
        let client = daemon.client();
        let echo = TcpPeer::echo().await?;
        let first = open_local_req(&client, local(echo.port(), "api", false)).await?;
        expect_status(
            "a second tunnel named api",
            client
                .clone()
                .open_local_forward(local(echo.port(), "api", false))
                .await,
            Code::AlreadyExists,
            &[&first.id],
        )?;
        for bad in ["API", "t-9", "-x", "a_b"] {
            expect_status(
                "a bad name",
                client
                    .clone()
                    .open_local_forward(local(echo.port(), bad, false))
                    .await,
                Code::InvalidArgument,
                &["tunnel name"],
            )?;
        }
        let attached = OpenAttachedRequest {
            forward: Some(Forward::Local(local(echo.port(), "", true))),
        };
        expect_status(
            "persist on an attached tunnel",
            client.clone().open_attached(attached).await.map(|_| ()),
            Code::InvalidArgument,
            &["attached"],
        )?;
        // Watch takes the name.
        let mut watch = client
            .clone()
            .watch(WatchRequest {
                tunnel_id: "api".into(),
            })
            .await?
            .into_inner();
        let seen = tokio::time::timeout(IO_TIMEOUT, async {
            while let Some(msg) = watch.message().await? {
                if let Some(Event::Tunnel(t)) = msg.event {
                    return Ok::<_, anyhow::Error>(Some(t));
                }
            }
            Ok(None)
        })
        .await??;
        ensure!(
            seen.as_ref().is_some_and(|t| t.id == first.id),
            "Watch(api) showed {seen:?}"
        );
        // The name is free again once its tunnel is closed.
        close(&client, "api").await?;
        open_local_req(&client, local(echo.port(), "api", false)).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_state_dir_persist_is_refused_and_nothing_else_changes() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let daemon = Tunneld::builder(&sshd)
            .arg("--state-dir=none")
            .start()
            .await?;
        let client = daemon.client();
        let echo = TcpPeer::echo().await?;
        expect_status(
            "persist without a store",
            client
                .clone()
                .open_local_forward(local(echo.port(), "", true))
                .await,
            Code::FailedPrecondition,
            &["--state-dir"],
        )?;
        let t = open_local_req(&client, local(echo.port(), "", false)).await?;
        carries(local_port(&t)?, "an unpersisted tunnel").await?;
        Ok(())
    })
    .await
}

/// One acknowledged call of the crash loop.
#[derive(Debug, Clone)]
enum Acked {
    Opened { id: String, port: u16 },
    Closed { id: String },
}

/// A small xorshift generator: the crash loop's moments and choices,
/// reproducible from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Rounds of opening and closing persisted tunnels while tunneld is
/// SIGKILLed at random moments. After each restart the store opens and the
/// restored set is exactly what the acknowledged calls say, give or take
/// the one call in flight at the kill: nothing acknowledged is lost,
/// nothing closed comes back, nothing comes back half (each restored tunnel
/// is OPEN on its own port).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_never_loses_or_tears_a_persisted_tunnel() -> Result<()> {
    const ROUNDS: usize = 50;
    // The loop stops early when this is spent, so the test stays inside
    // its bound on a slow machine; it must still have done MIN_ROUNDS.
    const BUDGET: Duration = Duration::from_secs(40);
    const MIN_ROUNDS: usize = 10;
    e2e(async {
        let sshd = Sshd::start()?;
        let state = tempfile::tempdir()?;
        let echo = TcpPeer::echo().await?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64
            | 1;
        eprintln!("crash loop seed {seed}");
        let mut rng = Rng(seed);
        // What must be there: id -> port, from acknowledged calls only.
        let mut expected: BTreeMap<String, u16> = BTreeMap::new();
        // A close sent but not acknowledged when tunneld was killed: that
        // tunnel may be gone or not.
        let mut maybe_gone: Option<String> = None;
        let started = Instant::now();
        let mut rounds = 0;
        while rounds < ROUNDS && started.elapsed() < BUDGET {
            rounds += 1;
            let mut daemon = start(&sshd, state.path()).await?;
            let client = daemon.client();
            let ids: Vec<&str> = expected
                .keys()
                .filter(|id| maybe_gone.as_ref() != Some(*id))
                .map(String::as_str)
                .collect();
            let tunnels = restored(&client, &ids)
                .await
                .with_context(|| format!("round {rounds}: {}", daemon.log()))?;
            let persisted: BTreeMap<String, u16> = tunnels
                .iter()
                .filter(|t| t.source == TunnelSource::Persisted as i32)
                .map(|t| Ok((t.id.clone(), local_port(t)?)))
                .collect::<Result<_>>()?;
            for t in &tunnels {
                ensure!(
                    t.state == TunnelState::Open as i32,
                    "round {rounds}: restored tunnel not whole: {t:?}"
                );
            }
            // The call in flight at the kill may or may not have landed;
            // everything else is exactly as acknowledged.
            for (id, port) in &expected {
                if maybe_gone.as_ref() == Some(id) && !persisted.contains_key(id) {
                    continue;
                }
                ensure!(
                    persisted.get(id) == Some(port),
                    "round {rounds}: acknowledged tunnel {id} on port {port} lost: {persisted:?}"
                );
            }
            let extra: Vec<&String> = persisted
                .keys()
                .filter(|id| !expected.contains_key(*id))
                .collect();
            ensure!(
                extra.len() <= 1,
                "round {rounds}: more came back than was in flight: {extra:?} (expected {expected:?})"
            );
            // An open in flight that landed counts as opened from now on.
            expected = persisted;

            let log: Arc<Mutex<Vec<Acked>>> = Arc::default();
            let closing: Arc<Mutex<Option<String>>> = Arc::default();
            let ops = {
                let client = client.clone();
                let log = log.clone();
                let closing = closing.clone();
                let mut rng = Rng(rng.next() | 1);
                let mut open_now: Vec<String> = expected.keys().cloned().collect();
                let echo_port = echo.port();
                tokio::spawn(async move {
                    loop {
                        if open_now.len() >= 6 || (!open_now.is_empty() && rng.below(3) == 0) {
                            let id = open_now.remove(rng.below(open_now.len() as u64) as usize);
                            *closing.lock().unwrap() = Some(id.clone());
                            // A call that failed met the kill: its outcome is
                            // unknown (tunneld may have done it and died
                            // before answering), so it stays in flight and
                            // the loop stops.
                            if close(&client, &id).await.is_err() {
                                return;
                            }
                            log.lock().unwrap().push(Acked::Closed { id });
                            *closing.lock().unwrap() = None;
                        } else {
                            let Ok(t) = open_local_req(&client, local(echo_port, "", true)).await else {
                                return;
                            };
                            let port = local_port(&t).unwrap_or(0);
                            open_now.push(t.id.clone());
                            log.lock().unwrap().push(Acked::Opened { id: t.id, port });
                        }
                    }
                })
            };
            tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
            daemon.kill().await?;
            ops.abort();
            let _ = ops.await;
            maybe_gone = closing.lock().unwrap().take();
            for acked in log.lock().unwrap().iter() {
                match acked {
                    Acked::Opened { id, port } => {
                        expected.insert(id.clone(), *port);
                    }
                    Acked::Closed { id } => {
                        expected.remove(id);
                    }
                }
            }
        }
        ensure!(
            rounds >= MIN_ROUNDS,
            "only {rounds} rounds within {BUDGET:?}"
        );
        eprintln!("crash loop: {rounds} rounds, {} tunnels at the end", expected.len());
        // The last state carries bytes (the last round's close in flight,
        // if any, may have landed).
        if let Some(id) = &maybe_gone {
            expected.remove(id);
        }
        let daemon = start(&sshd, state.path()).await?;
        let client = daemon.client();
        let ids: Vec<&str> = expected.keys().map(String::as_str).collect();
        restored(&client, &ids).await?;
        for (id, port) in &expected {
            carries(*port, id).await?;
        }
        Ok(())
    })
    .await
}
