//! ExecStream through the API: stdin streamed as the command reads it,
//! interleaved with its output, signals and a terminal, as `ssh host cmd`
//! and `ssh -t host` give them. The tunnelctl side is in `cli::exec_stream`.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tunnel_proto::v1::exec_stream_request::Message;
use tunnel_proto::v1::exec_stream_response::Event;
use tunnel_proto::v1::exit_status::Status;
use tunnel_proto::v1::{
    ExecStart, ExecStreamRequest, ExecStreamResponse, ExitStatus, Terminal, TerminalSize,
};
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::procs::rss_kib;
use tunneld_tests::{Client, Sshd};

use crate::support::{Bed, e2e};

/// One running ExecStream call: what to send, and what came back so far.
struct Call {
    tx: mpsc::Sender<ExecStreamRequest>,
    rx: Streaming<ExecStreamResponse>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Call {
    async fn start(client: &Client, start: ExecStart) -> Result<Call, tonic::Status> {
        let (tx, rx) = mpsc::channel(4);
        tx.send(msg(Message::Start(start))).await.expect("queue");
        let rx = client
            .clone()
            .exec_stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Call {
            tx,
            rx,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    async fn send(&self, m: Message) -> Result<()> {
        self.tx
            .send(msg(m))
            .await
            .map_err(|_| anyhow::anyhow!("the call's input is closed"))
    }

    /// Reads output until stdout ends with `needle`.
    async fn read_until(&mut self, needle: &[u8]) -> Result<()> {
        let found = |out: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        tokio::time::timeout(Duration::from_secs(20), async {
            while !found(&self.stdout) {
                match self.rx.message().await? {
                    Some(ExecStreamResponse {
                        event: Some(Event::Stdout(d)),
                    }) => self.stdout.extend_from_slice(&d),
                    Some(ExecStreamResponse {
                        event: Some(Event::Stderr(d)),
                    }) => self.stderr.extend_from_slice(&d),
                    Some(other) => bail!("unexpected {other:?} before {needle:?}"),
                    None => bail!("the call ended before {needle:?}"),
                }
            }
            Ok(())
        })
        .await
        .with_context(|| {
            format!(
                "{:?} did not come; stdout so far: {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.stdout)
            )
        })?
    }

    /// Reads to the end of the call: its exit status, or its error.
    async fn finish(mut self) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), tonic::Status> {
        drop(self.tx);
        let mut exit = None;
        while let Some(m) = self.rx.message().await? {
            match m.event {
                Some(Event::Stdout(d)) => self.stdout.extend_from_slice(&d),
                Some(Event::Stderr(d)) => self.stderr.extend_from_slice(&d),
                Some(Event::Exit(s)) => exit = Some(s),
                None => {}
            }
        }
        let exit = exit.ok_or_else(|| tonic::Status::internal("no exit status"))?;
        Ok((exit, self.stdout, self.stderr))
    }
}

fn msg(m: Message) -> ExecStreamRequest {
    ExecStreamRequest { message: Some(m) }
}

fn command(c: &str) -> ExecStart {
    ExecStart {
        command: c.into(),
        ..Default::default()
    }
}

fn code(s: &ExitStatus) -> Option<i32> {
    match s.status {
        Some(Status::Code(c)) => Some(c),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_larger_than_any_window_arrives_whole() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let data = random_bytes(24 << 20);
        let call = Call::start(&bed.client, command("sha256sum")).await?;
        for chunk in data.chunks(300_000) {
            call.send(Message::Stdin(chunk.to_vec())).await?;
        }
        call.send(Message::StdinEof(true)).await?;
        let (exit, stdout, stderr) = call.finish().await?;
        ensure!(code(&exit) == Some(0), "{exit:?}, stderr {stderr:?}");
        let want = format!("{}  -\n", sha256_hex(&data));
        ensure!(
            String::from_utf8_lossy(&stdout) == want,
            "remote sha256sum {:?} != local {want:?}",
            String::from_utf8_lossy(&stdout)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_and_stdout_interleave_line_by_line() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let mut call = Call::start(&bed.client, command("cat")).await?;
        for i in 0..100 {
            let line = format!("line {i} of the conversation\n");
            call.send(Message::Stdin(line.clone().into_bytes())).await?;
            // The echo comes back before the next line is written: nothing
            // waits for the whole input.
            call.read_until(line.as_bytes()).await?;
        }
        let (exit, stdout, _) = call.finish().await?;
        ensure!(code(&exit) == Some(0), "{exit:?}");
        ensure!(stdout.iter().filter(|b| **b == b'\n').count() == 100);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn int_reaches_the_remote_command() -> Result<()> {
    e2e(async {
        let sshd = Sshd::builder().unprivileged_login().start()?;
        let bed = Bed::with(sshd, |b| b).await?;
        let mut call = Call::start(&bed.client, command("echo started; exec sleep 60")).await?;
        call.read_until(b"started\n").await?;
        call.send(Message::Signal("INT".into())).await?;
        let (exit, _, _) = tokio::time::timeout(Duration::from_secs(20), call.finish())
            .await
            .context("the command did not end after INT")??;
        ensure!(
            exit.status == Some(Status::Signal("INT".into())),
            "exit status {exit:?}, want signal INT"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_is_a_pty_of_the_requested_size_and_follows_resizes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let start = ExecStart {
            command: "tty; stty size; read go; stty size".into(),
            terminal: Some(Terminal {
                term: "xterm".into(),
                size: Some(TerminalSize {
                    columns: 101,
                    rows: 33,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let mut call = Call::start(&bed.client, start).await?;
        call.read_until(b"33 101\r\n").await?;
        ensure!(
            String::from_utf8_lossy(&call.stdout).starts_with("/dev/pts/"),
            "tty printed {:?}",
            String::from_utf8_lossy(&call.stdout)
        );
        call.send(Message::Resize(TerminalSize {
            columns: 120,
            rows: 40,
            ..Default::default()
        }))
        .await?;
        call.send(Message::Stdin(b"go\r".to_vec())).await?;
        call.read_until(b"40 120\r\n").await?;
        let (exit, _, _) = call.finish().await?;
        ensure!(code(&exit) == Some(0), "{exit:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn login_shell_on_a_terminal_exits_with_its_code() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let start = ExecStart {
            terminal: Some(Terminal::default()),
            ..Default::default()
        };
        let mut call = Call::start(&bed.client, start).await?;
        call.send(Message::Stdin(b"echo in-the-shell-$((6*7))\r".to_vec()))
            .await?;
        call.read_until(b"in-the-shell-42").await?;
        call.send(Message::Stdin(b"exit 3\r".to_vec())).await?;
        let (exit, _, _) = call.finish().await?;
        ensure!(code(&exit) == Some(3), "{exit:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn misordered_or_wrong_messages_are_invalid_argument() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // A first message that is not `start`.
        let (tx, rx) = mpsc::channel(1);
        tx.send(msg(Message::Stdin(b"x".to_vec()))).await?;
        drop(tx);
        let status = bed
            .client
            .clone()
            .exec_stream(ReceiverStream::new(rx))
            .await
            .expect_err("a call without start was accepted");
        ensure!(
            status.code() == tonic::Code::InvalidArgument && status.message().contains("start"),
            "{status:?}"
        );
        // A resize for a command without a terminal ends it, saying why.
        let mut call = Call::start(&bed.client, command("echo up; exec sleep 60")).await?;
        call.read_until(b"up\n").await?;
        call.send(Message::Resize(TerminalSize {
            columns: 80,
            rows: 24,
            ..Default::default()
        }))
        .await?;
        let status = call
            .finish()
            .await
            .expect_err("a resize without terminal was accepted");
        ensure!(
            status.code() == tonic::Code::InvalidArgument && status.message().contains("terminal"),
            "{status:?}"
        );
        // An unknown signal.
        let call = Call::start(&bed.client, command("exec sleep 60")).await?;
        call.send(Message::Signal("WINCH".into())).await?;
        let status = call.finish().await.expect_err("WINCH was accepted");
        ensure!(
            status.code() == tonic::Code::InvalidArgument && status.message().contains("WINCH"),
            "{status:?}"
        );
        // The daemon still runs commands.
        let (exit, out, _) = Call::start(&bed.client, command("echo fine"))
            .await?
            .finish()
            .await?;
        ensure!(
            code(&exit) == Some(0) && out == b"fine\n",
            "{exit:?} {out:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unread_caller_pauses_its_command_not_the_daemon() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = tempfile::tempdir()?;
        let finished = dir.path().join("finished");
        const FLOOD: usize = 256 << 20;
        let pid = bed.daemon.pid().context("tunneld is not running")?;
        let idle = rss_kib(pid).context("reading tunneld's RSS")?;
        let mut call = Call::start(
            &bed.client,
            command(&format!(
                "head -c {FLOOD} /dev/zero; touch {}",
                finished.display()
            )),
        )
        .await?;
        // Nobody reads: the command must be held back (its output cannot all
        // wait in tunneld), while the daemon serves others.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            !finished.exists(),
            "the command ran to its end while its caller read nothing: its output was buffered whole"
        );
        let (exit, out, _) = Call::start(&bed.client, command("echo still-serving"))
            .await?
            .finish()
            .await?;
        ensure!(code(&exit) == Some(0) && out == b"still-serving\n", "{out:?}");
        let grown = rss_kib(pid).unwrap_or(0).saturating_sub(idle);
        ensure!(
            grown < 64 * 1024,
            "tunneld's RSS grew by {grown} KiB holding an unread command's output"
        );
        // Read now: every byte comes, then the command finishes.
        let mut got = 0usize;
        let mut exit = None;
        while let Some(m) = call.rx.message().await? {
            match m.event {
                Some(Event::Stdout(d)) => got += d.len(),
                Some(Event::Exit(s)) => exit = Some(s),
                _ => {}
            }
        }
        ensure!(got == FLOOD, "got {got} of {FLOOD} bytes");
        ensure!(exit.as_ref().and_then(code) == Some(0), "{exit:?}");
        ensure!(finished.exists(), "the command did not finish after being read");
        Ok(())
    })
    .await
}
