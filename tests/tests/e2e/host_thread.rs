//! Where a host's byte path runs (`--host-thread`): on a thread of the
//! host's own by default, visible as `ssh:NAME` in `top -H`, or on the API's
//! worker threads with `shared`. Both carry every byte both ways.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tunneld_tests::{
    Sshd,
    data::{random_bytes, sha256_hex},
    peers::TcpPeer,
};

use crate::{
    forward_remote::open_remote,
    support::{Bed, e2e, exchange, open_local},
};

/// Names of the daemon's threads, from /proc.
fn thread_names(pid: u32) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm"))?;
        names.push(comm.trim_end().to_string());
    }
    Ok(names)
}

/// Sends 4 MiB through a local and a remote forward to an echo server and
/// checks each comes back whole.
async fn both_forwards_carry_every_byte(bed: &Bed) -> Result<()> {
    let echo = TcpPeer::echo().await?;
    let data = random_bytes(4 << 20);
    let local = open_local(&bed.client, "", echo.port()).await?;
    let remote = open_remote(&bed.client, "", echo.port()).await?;
    for (what, port) in [
        ("local", local.local.as_ref().context("no local end")?.port),
        (
            "remote",
            remote.remote.as_ref().context("no remote end")?.port,
        ),
    ] {
        let got = exchange(port as u16, &data, Duration::from_secs(30)).await?;
        ensure!(
            sha256_hex(&got) == sha256_hex(&data),
            "{what} forward: {} bytes back, not the {} sent",
            got.len(),
            data.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_host_gets_its_own_thread_by_default() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let pid = bed.daemon.pid().context("tunneld not running")?;
        ensure!(
            !thread_names(pid)?.iter().any(|n| n.starts_with("ssh:")),
            "a host thread before any connection: {:?}",
            thread_names(pid)?
        );
        both_forwards_carry_every_byte(&bed).await?;
        let names = thread_names(pid)?;
        ensure!(
            names.iter().filter(|n| *n == "ssh:default").count() == 1,
            "expected one thread ssh:default, threads are {names:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_runs_the_byte_path_on_the_api_threads() -> Result<()> {
    e2e(async {
        let bed = Bed::with(Sshd::start()?, |b| b.arg("--host-thread").arg("shared")).await?;
        both_forwards_carry_every_byte(&bed).await?;
        let names = thread_names(bed.daemon.pid().context("tunneld not running")?)?;
        ensure!(
            !names.iter().any(|n| n.starts_with("ssh:")),
            "--host-thread shared started a host thread: {names:?}"
        );
        Ok(())
    })
    .await
}
