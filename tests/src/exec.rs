//! Running an `Exec` call to its end and keeping everything it returned:
//! output, exit status, the gRPC error if any, and when each event came.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tunnel_proto::pbjson_types;
use tunnel_proto::v1::exec_response::Event;
use tunnel_proto::v1::exit_status::Status;
use tunnel_proto::v1::{ExecRequest, ExitStatus};

use crate::Client;

/// An `ExecRequest` for `command` on the default host, no stdin, no env.
pub fn request(command: impl Into<String>) -> ExecRequest {
    ExecRequest {
        command: command.into(),
        ..Default::default()
    }
}

/// A protobuf `Duration` from a std one.
pub fn proto_duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Everything one `Exec` call produced.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    /// All stdout chunks, concatenated.
    pub stdout: Vec<u8>,
    /// All stderr chunks, concatenated.
    pub stderr: Vec<u8>,
    /// The exit message, if one came.
    pub exit: Option<ExitStatus>,
    /// The gRPC error that ended the call (at the start or mid-stream).
    pub error: Option<tonic::Status>,
    /// Every event with its arrival time, measured from the call's start.
    pub events: Vec<(Duration, Event)>,
}

impl ExecOutcome {
    /// Stdout as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The exit code; an error describing what happened instead otherwise.
    pub fn code(&self) -> Result<i32> {
        match self.status()? {
            Status::Code(c) => Ok(*c),
            Status::Signal(s) => bail!("command was killed by signal {s}, not exited: {self}"),
        }
    }

    /// The signal name; an error describing what happened instead otherwise.
    pub fn signal(&self) -> Result<String> {
        match self.status()? {
            Status::Signal(s) => Ok(s.clone()),
            Status::Code(c) => bail!("command exited with code {c}, not by a signal: {self}"),
        }
    }

    fn status(&self) -> Result<&Status> {
        if let Some(err) = &self.error {
            bail!(
                "Exec failed with {:?}: {:?} ({self})",
                err.code(),
                err.message()
            );
        }
        match &self.exit {
            Some(ExitStatus {
                status: Some(s), ..
            }) => Ok(s),
            Some(other) => bail!("exit message without a status: {other:?}"),
            None => bail!("Exec stream ended without an exit message: {self}"),
        }
    }

    /// The gRPC error code, or an error if the call succeeded.
    pub fn error_code(&self) -> Result<tonic::Code> {
        match &self.error {
            Some(e) => Ok(e.code()),
            None => bail!("Exec succeeded, expected an error: {self}"),
        }
    }

    /// True when the exit message is the last event and comes exactly once.
    pub fn exit_is_last_and_unique(&self) -> bool {
        let exits = self
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Exit(_)))
            .count();
        exits == 1 && matches!(self.events.last(), Some((_, Event::Exit(_))))
    }
}

impl fmt::Display for ExecOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stdout={:?} stderr={:?} exit={:?} error={:?}",
            self.stdout_text(),
            self.stderr_text(),
            self.exit,
            self.error
                .as_ref()
                .map(|e| (e.code(), e.message().to_owned()))
        )
    }
}

/// Runs `req` and reads the stream to its end.
pub async fn run(client: &Client, req: ExecRequest) -> ExecOutcome {
    let mut client = client.clone();
    let start = Instant::now();
    let mut outcome = ExecOutcome::default();
    let mut stream = match client.exec(req).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            outcome.error = Some(status);
            return outcome;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                let Some(event) = msg.event else { continue };
                match &event {
                    Event::Stdout(b) => outcome.stdout.extend_from_slice(b),
                    Event::Stderr(b) => outcome.stderr.extend_from_slice(b),
                    Event::Exit(e) => outcome.exit = Some(e.clone()),
                }
                outcome.events.push((start.elapsed(), event));
            }
            Ok(None) => break,
            Err(status) => {
                outcome.error = Some(status);
                break;
            }
        }
    }
    outcome
}

/// Runs `command` on the default host and returns its stdout, failing unless
/// it exits 0.
pub async fn run_ok(client: &Client, command: &str) -> Result<String> {
    let out = run(client, request(command)).await;
    let code = out.code()?;
    if code != 0 {
        bail!("`{command}` exited with {code}: {out}");
    }
    Ok(out.stdout_text())
}
