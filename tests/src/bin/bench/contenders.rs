//! The OpenSSH client as the comparison peer: `ssh -N -L`, `ssh -N -R`,
//! `ssh host cat FILE` and `ssh host 'cat > /dev/null'` fed a file, with
//! the same key, known_hosts, sshd and cipher as tunneld, and no user
//! config (`-F none`). [`feed`], which runs a client fed a file, also runs
//! tunnelctl for tunneld's side of the stdin rows.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tunneld_tests::Sshd;

use crate::procfs;

/// How long an `ssh -N` forward may take to start listening.
const SSH_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// An `ssh` command line for `sshd`: batch mode, its known_hosts only, its
/// key, `-c cipher` when one is given.
fn ssh_command(sshd: &Sshd, cipher: Option<&str>) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "none", "-o", "BatchMode=yes"])
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts().display()
        ))
        .args(["-o", "LogLevel=ERROR", "-i"])
        .arg(sshd.identity())
        .args(["-p", &sshd.port().to_string()]);
    if let Some(c) = cipher {
        cmd.args(["-c", c]);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// An `ssh -N -L` or `ssh -N -R` process; killed when dropped.
pub struct SshForward {
    child: Child,
    /// Where bench clients connect: ssh's listener (-L) or sshd's (-R).
    pub port: u16,
}

impl SshForward {
    /// `ssh -N -L 127.0.0.1:LPORT:127.0.0.1:TARGET`.
    pub async fn local(sshd: &Sshd, cipher: Option<&str>, target: u16) -> Result<SshForward> {
        let port = tunneld_tests::sshd::free_port()?;
        let spec = format!("127.0.0.1:{port}:127.0.0.1:{target}");
        Self::start(sshd, cipher, &[("-L", spec)], port).await
    }

    /// `ssh -N -R 127.0.0.1:RPORT:127.0.0.1:TARGET`: sshd listens on RPORT.
    pub async fn remote(sshd: &Sshd, cipher: Option<&str>, target: u16) -> Result<SshForward> {
        let port = tunneld_tests::sshd::free_port()?;
        let spec = format!("127.0.0.1:{port}:127.0.0.1:{target}");
        Self::start(sshd, cipher, &[("-R", spec)], port).await
    }

    /// A 3-hop chain in ONE ssh process, so one SSH connection (the pattern
    /// of OpenSSH's regress/forwarding.sh): `-R C:127.0.0.1:TARGET -L
    /// B:127.0.0.1:C -L A:127.0.0.1:B`, every port picked free first and
    /// bound on 127.0.0.1. A byte written to A crosses the SSH connection
    /// three times: A → sshd → B (ssh's listener) → sshd → C (sshd's
    /// listener) → ssh → TARGET. `port` is A; ssh listening on A does not
    /// mean the remote forward is up yet (see `load::wait_for_echo`).
    pub async fn chain(sshd: &Sshd, cipher: Option<&str>, target: u16) -> Result<SshForward> {
        // Held bound together while picking, so the three differ.
        let held = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .context("binding 127.0.0.1:0")?;
        let ports = held
            .iter()
            .map(|l| Ok(l.local_addr()?.port()))
            .collect::<std::io::Result<Vec<u16>>>()?;
        drop(held);
        let (a, b, c) = (ports[0], ports[1], ports[2]);
        let forwards = [
            ("-R", format!("127.0.0.1:{c}:127.0.0.1:{target}")),
            ("-L", format!("127.0.0.1:{b}:127.0.0.1:{c}")),
            ("-L", format!("127.0.0.1:{a}:127.0.0.1:{b}")),
        ];
        Self::start(sshd, cipher, &forwards, a).await
    }

    /// Starts `ssh -N` with `forwards` (flag, spec) and waits until `port`
    /// accepts connections.
    async fn start(
        sshd: &Sshd,
        cipher: Option<&str>,
        forwards: &[(&str, String)],
        port: u16,
    ) -> Result<SshForward> {
        let mut cmd = ssh_command(sshd, cipher);
        cmd.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        for (flag, spec) in forwards {
            cmd.args([flag, spec.as_str()]);
        }
        let what = forwards
            .iter()
            .map(|(f, s)| format!("{f} {s}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running ssh (install openssh-client)")?;
        let deadline = Instant::now() + SSH_READY_TIMEOUT;
        // A probe connection reaches the peer and closes; harmless.
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = child.try_wait()? {
                bail!("ssh {what} exited with {status} before listening");
            }
            if Instant::now() > deadline {
                bail!("ssh {what} not listening within {SSH_READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(SshForward { child, port })
    }

    /// The ssh process's pid.
    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("the ssh process has exited")
    }
}

/// What one streamed command returned.
#[derive(Debug)]
pub struct Streamed {
    /// MB/s from the first byte to the last.
    pub mbps: f64,
    /// ms from the start to the first byte.
    pub first_byte_ms: f64,
    /// CPU seconds of the client process (ssh) or of tunneld during it.
    pub cpu_secs: Option<f64>,
}

/// `ssh host cat FILE`, reading its stdout to the end; `bytes` is the
/// file's size. The ssh process's CPU is read once it has exited (a zombie
/// still has its times) before it is reaped.
pub async fn ssh_cat(
    sshd: &Sshd,
    cipher: Option<&str>,
    file: &Path,
    bytes: u64,
) -> Result<Streamed> {
    let start = Instant::now();
    let mut child = ssh_command(sshd, cipher)
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(format!("cat {}", file.display()))
        .stdout(Stdio::piped())
        // sshd at DEBUG1 sends its session's log lines as stderr; kept for
        // the error message only.
        .stderr(Stdio::piped())
        .spawn()
        .context("running ssh host cat")?;
    let pid = child.id().context("ssh exited at once")?;
    let mut out = child.stdout.take().context("stdout not piped")?;
    let mut err = child.stderr.take().context("stderr not piped")?;
    let stderr = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v).await;
        String::from_utf8_lossy(&v).into_owned()
    });
    let mut buf = vec![0u8; crate::peer::CHUNK];
    let mut got = 0u64;
    let mut first = None;
    loop {
        let n = out.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    let end = Instant::now();
    // Wait (bounded) for the process to become a zombie, then read its CPU.
    let deadline = Instant::now() + Duration::from_secs(10);
    while procfs::state(pid).is_some_and(|s| s != 'Z') && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu_secs = procfs::cpu_seconds(pid).ok();
    let status = child.wait().await?;
    let stderr = stderr.await.unwrap_or_default();
    ensure!(
        status.success(),
        "ssh host cat exited with {status}; its stderr:\n{stderr}"
    );
    ensure!(got == bytes, "ssh host cat gave {got} of {bytes} bytes");
    let first = first.context("ssh host cat gave no output")?;
    Ok(Streamed {
        mbps: got as f64 / (end - first).as_secs_f64() / 1e6,
        first_byte_ms: (first - start).as_secs_f64() * 1e3,
        cpu_secs,
    })
}

/// The remote command of the stdin rows, the same for both contenders.
pub const SINK_COMMAND: &str = "cat > /dev/null";

/// What one run of a command fed a file on its stdin took.
#[derive(Debug)]
pub struct Fed {
    /// Wall time from spawn to exit, seconds.
    pub secs: f64,
    /// CPU seconds of the client process itself (ssh or tunnelctl), read
    /// once it has exited, before it is reaped.
    pub cpu_secs: f64,
    /// tunneld's CPU seconds over the run, for tunnelctl, which leaves the
    /// SSH side to the daemon; `None` for ssh, which does both in one
    /// process.
    pub daemon_cpu_secs: Option<f64>,
}

/// `ssh host 'cat > /dev/null'` with `input` (`bytes` long) on its stdin.
pub async fn ssh_sink(sshd: &Sshd, cipher: Option<&str>, input: &Path, bytes: u64) -> Result<Fed> {
    let mut cmd = ssh_command(sshd, cipher);
    cmd.arg(format!("{}@127.0.0.1", sshd.user()))
        .arg(SINK_COMMAND);
    feed(cmd, &format!("ssh host '{SINK_COMMAND}'"), input, bytes).await
}

/// Runs `cmd` with the file `input` (`bytes` long) as its stdin until it
/// exits and checks that it exited with 0 having read all of `input`.
/// The time is from spawn to exit, the exit seen by `waitid(WNOWAIT)`,
/// which leaves the zombie for its CPU to be read before it is reaped.
/// stdout and stderr are read (sshd at DEBUG1 sends its session's log
/// lines as stderr) and kept for the error message only.
pub async fn feed(mut cmd: Command, what: &str, input: &Path, bytes: u64) -> Result<Fed> {
    let mut file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    // A duplicate shares the file offset: after the run, ours says how far
    // the child read.
    cmd.stdin(file.try_clone()?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("running {what}"))?;
    let pid = child
        .id()
        .with_context(|| format!("{what} exited at once"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    tokio::task::spawn_blocking(move || exited(pid)).await??;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = procfs::cpu_seconds(pid)?;
    let status = child.wait().await?;
    let (stdout, stderr) = (stdout.await?, stderr.await?);
    ensure!(
        status.success(),
        "{what} exited with {status}; its stderr:\n{stderr}{stdout}"
    );
    let read = std::io::Seek::stream_position(&mut file)?;
    ensure!(
        read == bytes,
        "{what} read {read} of the {bytes} bytes of its stdin"
    );
    Ok(Fed {
        secs,
        cpu_secs,
        daemon_cpu_secs: None,
    })
}

/// Reads a child's pipe to its end in a task of its own, as text.
fn drain(pipe: Option<impl AsyncRead + Send + Unpin + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut v = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut v).await;
        }
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Blocks until the child `pid` has exited, without reaping it.
fn exited(pid: u32) -> Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => {
                return r
                    .map(drop)
                    .with_context(|| format!("waiting for pid {pid}"));
            }
        }
    }
}
