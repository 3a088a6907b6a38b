//! Caps with a status: past `--max-tunnels`, `--max-watchers` and
//! `--max-execs` a call gets RESOURCE_EXHAUSTED naming the flag, and what
//! is already open keeps working; a place freed is usable again.

use std::time::Duration;

use anyhow::{Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{OpenLocalForwardRequest, OpenRemoteForwardRequest, WatchRequest};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::{Sshd, exec};

use crate::support::{Bed, close, e2e, exchange, expect_status, local_port};

fn local(port: u16) -> OpenLocalForwardRequest {
    OpenLocalForwardRequest {
        local_port: 0,
        remote_host: "127.0.0.1".into(),
        remote_port: port.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn past_each_cap_a_call_gets_resource_exhausted_naming_its_flag() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let flags = [
            "--max-tunnels",
            "3",
            "--max-watchers",
            "2",
            "--max-execs",
            "1",
        ];
        let bed = Bed::with(sshd, |b| flags.iter().fold(b, |b, f| b.arg(*f))).await?;
        let client = &bed.client;

        // Tunnels: three of any kind, then refused.
        let mut open = Vec::new();
        for _ in 0..2 {
            open.push(
                client
                    .clone()
                    .open_local_forward(local(echo.port()))
                    .await?
                    .into_inner(),
            );
        }
        let remote = client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                remote_port: 0,
                local_host: "127.0.0.1".into(),
                local_port: echo.port().into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let refused = client.clone().open_local_forward(local(echo.port())).await;
        let status = expect_status(
            "a 4th tunnel",
            refused,
            Code::ResourceExhausted,
            &["--max-tunnels"],
        )?;
        ensure!(
            status.message().contains("3 tunnels open"),
            "{:?}",
            status.message()
        );
        // What is open still carries.
        let port = local_port(open[0].tunnel.as_ref().unwrap())?;
        ensure!(exchange(port, b"still here", Duration::from_secs(10)).await? == b"still here");
        // A closed tunnel frees its place.
        close(client, &remote.tunnel.unwrap().id).await?;
        client
            .clone()
            .open_local_forward(local(echo.port()))
            .await?;

        // Watchers.
        let w1 = client.clone().watch(WatchRequest::default()).await?;
        let w2 = client.clone().watch(WatchRequest::default()).await?;
        let third = client.clone().watch(WatchRequest::default()).await;
        expect_status(
            "a 3rd Watch",
            third,
            Code::ResourceExhausted,
            &["--max-watchers"],
        )?;
        drop(w1);
        // The freed place is seen once the server notices the stream ended.
        let mut again = None;
        for _ in 0..50 {
            match client.clone().watch(WatchRequest::default()).await {
                Ok(w) => {
                    again = Some(w);
                    break;
                }
                Err(s) if s.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => return Err(s.into()),
            }
        }
        ensure!(again.is_some(), "a Watch place was not freed");
        drop(w2);

        // Exec: one at a time. The first is running once it has written.
        let mut first = client
            .clone()
            .exec(exec::request("echo started; sleep 1; echo done"))
            .await?
            .into_inner();
        let started = first.message().await?;
        ensure!(started.is_some(), "the first Exec ended at once");
        let second = client
            .clone()
            .exec(exec::request("echo second"))
            .await
            .map(|_| ());
        expect_status(
            "a 2nd Exec",
            second,
            Code::ResourceExhausted,
            &["--max-execs"],
        )?;
        let mut rest = 0;
        while let Some(msg) = first.message().await? {
            rest += usize::from(msg.event.is_some());
        }
        ensure!(rest >= 2, "the first Exec's output and exit: {rest} events");
        let after = exec::run_ok(client, "echo after").await?;
        ensure!(after == "after\n", "{after:?}");
        Ok(())
    })
    .await
}
