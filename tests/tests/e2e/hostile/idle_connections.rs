//! Finding 1: under `ulimit -n 256`, 400 TCP connections to the API that
//! never send a byte. Before: the accept loop spun a core, the log grew by
//! millions of lines, and an open local forward stopped carrying
//! connections.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::net::TcpStream;
use tunneld_tests::daemon::connect;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Sshd, Tunneld};

use super::{cpu_time, line_stats};
use crate::support::{e2e, exchange, list, local_port, open_local};

#[tokio::test(flavor = "multi_thread")]
async fn four_hundred_idle_api_connections_under_a_low_fd_limit_stop_nothing() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        // The operator's default log filter, as the attack was reproduced.
        let daemon = Tunneld::builder(&sshd)
            .nofile(256)
            .default_log()
            .start()
            .await?;
        let pid = daemon.pid().context("tunneld pid")?;
        let client = daemon.client();
        let tunnel = open_local(&client, "", echo.port()).await?;
        let port = local_port(&tunnel)?;
        let data = random_bytes(256 * 1024);
        let got = exchange(port, &data, Duration::from_secs(10)).await?;
        ensure!(
            sha256_hex(&got) == sha256_hex(&data),
            "echo before the attack"
        );

        let (lines_before, _) = line_stats(&daemon.log());
        let cpu_before = cpu_time(pid)?;
        let attack_started = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..400 {
            // A refused connect (the kernel backlog is full) is fine: the
            // attacker just gets fewer.
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(daemon.addr()))
                    .await
            {
                idle.push(s);
            }
        }
        ensure!(
            idle.len() >= 300,
            "only {} idle connections were made",
            idle.len()
        );

        // While they are held, the tunnel carries new connections, byte-exact.
        for round in 0..5 {
            let data = random_bytes(64 * 1024 + round);
            let got = exchange(port, &data, Duration::from_secs(10))
                .await
                .with_context(|| format!("tunnel connection {round} during the attack"))?;
            ensure!(
                sha256_hex(&got) == sha256_hex(&data),
                "echo {round} during the attack"
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let cpu = cpu_time(pid)? - cpu_before;
        let spent = attack_started.elapsed();
        // Spinning on EMFILE burned a whole core (5 s of CPU in 5 s).
        ensure!(
            cpu < spent / 4,
            "tunneld used {cpu:?} of CPU in {spent:?} with idle API connections open"
        );
        let log = daemon.log();
        let (lines, longest) = line_stats(&log);
        ensure!(
            lines - lines_before < 200,
            "the log grew by {} lines during the attack (longest {longest} chars); last lines:\n{}",
            lines - lines_before,
            crate::support::tail(&log, 20)
        );
        ensure!(
            log.contains("--max-api-connections"),
            "no line names --max-api-connections:\n{}",
            crate::support::tail(&log, 20)
        );

        // The silent connections are closed by the handshake deadline (or
        // at the cap), and the API answers again, still with them held.
        // A new client each time: the fixture's connection was open before.
        let addr = daemon.addr();
        let answered = poll_until(
            "the API to answer a new client",
            Duration::from_secs(20),
            || async move {
                let Ok(Ok(fresh)) =
                    tokio::time::timeout(Duration::from_secs(2), connect(addr)).await
                else {
                    return Ok(None);
                };
                Ok(tokio::time::timeout(Duration::from_secs(2), list(&fresh))
                    .await
                    .ok()
                    .and_then(Result::ok))
            },
        )
        .await?;
        ensure!(answered.tunnels.len() == 1, "List: {answered:?}");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        ensure!(
            fds < 200,
            "tunneld holds {fds} descriptors after the deadline"
        );
        drop(idle);
        let got = exchange(port, &data, Duration::from_secs(10)).await?;
        ensure!(
            sha256_hex(&got) == sha256_hex(&data),
            "echo after the attack"
        );
        Ok(())
    })
    .await
}
