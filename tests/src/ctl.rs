//! The real `tunnelctl` binary as a child process: one-shot runs that return
//! the exit status and everything written ([`Ctl::run`]), and spawned runs
//! read line by line and signalled, for `--attach` and long `exec`s
//! ([`Ctl::spawn`]).
//!
//! Every run is bounded ([`RUN_TIMEOUT`], or the limit passed), and every
//! child is killed when its handle (or the future running it) is dropped.
//! The child never inherits `TUNNELD_ADDR`, a token or TLS settings
//! (`TUNNELD_TOKEN*`, `TUNNELD_TLS_*`): a test says where tunneld is and how
//! to reach it, whatever the developer's shell holds.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::binaries;

/// Upper bound on one [`Ctl::run`]: tunnelctl's own default `--timeout` is
/// 30 s, so a hang shows up as a failure here rather than at the test's
/// timeout.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`CtlChild`] waits for its stderr to reach end-of-file once the
/// process has exited.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Prefix of every error line tunnelctl prints.
pub const ERROR_PREFIX: &str = "tunnelctl: ";

/// How to run tunnelctl: the binary, the `--addr` to pass, extra environment
/// and working directory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ctl {
    bin: PathBuf,
    addr: Option<String>,
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
}

impl Ctl {
    /// tunnelctl with `--addr ADDR` before every verb. Looks the binary up
    /// with [`binaries::bin_path`], which builds it first if this process has
    /// not yet (blocking; the e2e wrapper builds before a test starts).
    pub fn new(addr: impl fmt::Display) -> Result<Ctl> {
        let mut ctl = Ctl::without_addr()?;
        ctl.addr = Some(addr.to_string());
        Ok(ctl)
    }

    /// tunnelctl with no `--addr`: it uses `TUNNELD_ADDR` if [`Ctl::env`]
    /// sets it, else its built-in default.
    pub fn without_addr() -> Result<Ctl> {
        Ok(Ctl {
            bin: binaries::bin_path("tunnelctl")?,
            addr: None,
            env: Vec::new(),
            dir: None,
        })
    }

    /// The same runner with an environment variable set for the child.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The same runner with the child started in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The `--addr` this runner passes, if any.
    pub fn addr(&self) -> Option<&str> {
        self.addr.as_deref()
    }

    /// The command line `tunnelctl [--addr ADDR] ARGS...`, stdio not yet set,
    /// killed when dropped.
    pub fn command<I, S>(&self, args: I) -> (Command, Vec<String>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut full: Vec<OsString> = Vec::new();
        if let Some(addr) = &self.addr {
            full.push("--addr".into());
            full.push(addr.into());
        }
        full.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        let shown = full
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut cmd = Command::new(&self.bin);
        cmd.args(&full);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| {
                k == "TUNNELD_ADDR"
                    || k.starts_with("TUNNELD_TOKEN")
                    || k.starts_with("TUNNELD_TLS_")
            }) {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        (cmd, shown)
    }

    /// Runs `tunnelctl ARGS...` with stdin at end-of-file (`/dev/null`, not a
    /// terminal) and returns what it did; bounded by [`RUN_TIMEOUT`].
    pub async fn run<I, S>(&self, args: I) -> Result<CtlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_inner(args, None, RUN_TIMEOUT).await
    }

    /// Like [`Ctl::run`], with `stdin` piped to the child (written while its
    /// output is read, so neither side can block the other).
    pub async fn run_with_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Result<CtlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_inner(args, Some(stdin), RUN_TIMEOUT).await
    }

    /// Like [`Ctl::run`] with another bound.
    pub async fn run_within<I, S>(&self, limit: Duration, args: I) -> Result<CtlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_inner(args, None, limit).await
    }

    async fn run_inner<I, S>(
        &self,
        args: I,
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<CtlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut cmd, args) = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting tunnelctl {}", args.join(" ")))?;
        let input = child.stdin.take();
        let feed = async move {
            if let (Some(mut pipe), Some(data)) = (input, stdin) {
                // tunnelctl may exit without reading everything (an error);
                // a broken pipe then is its business, not the test's.
                let _ = pipe.write_all(data).await;
                let _ = pipe.shutdown().await;
            }
        };
        let work = async {
            let (out, ()) = tokio::join!(child.wait_with_output(), feed);
            out
        };
        // On timeout the future is dropped, and with it the child (killed).
        let out = tokio::time::timeout(limit, work)
            .await
            .with_context(|| format!("tunnelctl {} still running after {limit:?}", args.join(" ")))?
            .with_context(|| format!("waiting for tunnelctl {}", args.join(" ")))?;
        Ok(CtlOutput {
            args,
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
            took: start.elapsed(),
        })
    }

    /// Starts `tunnelctl ARGS...` with stdin at end-of-file, stdout read line
    /// by line through the handle and stderr collected in the background.
    pub async fn spawn<I, S>(&self, args: I) -> Result<CtlChild>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut cmd, args) = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting tunnelctl {}", args.join(" ")))?;
        let stdout = child.stdout.take().context("stdout not piped")?;
        let mut stderr_pipe = child.stderr.take().context("stderr not piped")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr buffer poisoned")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Ok(CtlChild {
            child,
            args,
            stdout: BufReader::new(stdout).lines(),
            stderr,
            stderr_task: Some(stderr_task),
            started: Instant::now(),
        })
    }
}

/// What one finished tunnelctl run did.
#[derive(Debug)]
pub struct CtlOutput {
    /// The arguments it ran with (after the binary).
    pub args: Vec<String>,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// From spawn to exit.
    pub took: Duration,
}

impl CtlOutput {
    /// The exit code; `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Stdout as (lossy) UTF-8.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as (lossy) UTF-8.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Stdout's lines.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_text().lines().map(str::to_owned).collect()
    }

    /// Fails unless the exit code is `code`; the message shows everything.
    pub fn expect_code(&self, code: i32) -> Result<&Self> {
        ensure!(
            self.code() == Some(code),
            "expected exit code {code}: {self}"
        );
        Ok(self)
    }

    /// Fails unless tunnelctl exited 0.
    pub fn success(&self) -> Result<&Self> {
        self.expect_code(0)
    }

    /// Stdout parsed as one JSON document.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.stdout)
            .with_context(|| format!("stdout is not one JSON document: {self}"))
    }

    /// The error line: fails unless stderr is exactly one line starting with
    /// `tunnelctl: ` (the CLI's error contract), and returns it without its
    /// newline.
    pub fn error_line(&self) -> Result<String> {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        ensure!(
            lines.len() == 1 && text.ends_with('\n'),
            "expected exactly one line on stderr, got {}: {self}",
            lines.len()
        );
        ensure!(
            lines[0].starts_with(ERROR_PREFIX),
            "error line does not start with {ERROR_PREFIX:?}: {self}"
        );
        ensure!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "tunnelctl panicked: {self}"
        );
        Ok(lines[0].to_owned())
    }
}

impl fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`tunnelctl {}` exited with {} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.took,
            truncated(&self.stdout_text()),
            truncated(&self.stderr_text()),
        )
    }
}

/// Keeps failure messages readable when a run printed a lot.
fn truncated(text: &str) -> String {
    const MAX: usize = 4000;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// A tunnelctl still running: read its stdout lines as they come, signal it,
/// wait for it. Killed when dropped.
#[derive(Debug)]
pub struct CtlChild {
    child: Child,
    args: Vec<String>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
    started: Instant,
}

impl CtlChild {
    /// The next stdout line (without its newline), `None` at end-of-file;
    /// fails if none comes within `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> Result<Option<String>> {
        match tokio::time::timeout(limit, self.stdout.next_line()).await {
            Ok(line) => line.with_context(|| format!("reading stdout of {}", self.describe())),
            Err(_) => bail!(
                "no stdout line within {limit:?} from {}; stderr so far: {:?}",
                self.describe(),
                self.stderr_text()
            ),
        }
    }

    /// The next stdout line; end-of-file is an error.
    pub async fn expect_line(&mut self, limit: Duration) -> Result<String> {
        match self.next_line(limit).await? {
            Some(line) => Ok(line),
            None => bail!(
                "stdout of {} ended; exit status {:?}, stderr: {:?}",
                self.describe(),
                self.child.try_wait().ok().flatten(),
                self.stderr_text()
            ),
        }
    }

    /// Every stdout line left until end-of-file, which must come within `limit`.
    pub async fn rest_of_stdout(&mut self, limit: Duration) -> Result<Vec<String>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await? {
                Some(line) => lines.push(line),
                None => return Ok(lines),
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has already exited", self.describe()))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid()?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to {}", self.describe()))
    }

    /// The exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for the process to exit within `limit`, then for its stderr to
    /// end, so [`CtlChild::stderr_text`] is complete afterwards.
    pub async fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("waiting for {}", self.describe()))?,
            Err(_) => bail!(
                "{} still running after {limit:?}; stderr so far: {:?}",
                self.describe(),
                self.stderr_text()
            ),
        };
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(STDERR_DRAIN_TIMEOUT, task).await;
        }
        Ok(status)
    }

    /// Stderr so far (all of it after [`CtlChild::wait`]).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer poisoned")).into_owned()
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// `` `tunnelctl ARGS` ``, for messages.
    pub fn describe(&self) -> String {
        format!("`tunnelctl {}`", self.args.join(" "))
    }
}

impl Drop for CtlChild {
    fn drop(&mut self) {
        // kill_on_drop does this too; explicit so the order is clear.
        let _ = self.child.start_kill();
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}
