//! A real `ssh-agent` of the test's own, on a socket in a temp dir, holding
//! the keys the test adds with the real `ssh-add`. Stopped (killed) when
//! dropped.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, ensure};

use crate::keys;

/// A running `ssh-agent`.
#[derive(Debug)]
pub struct SshAgent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshAgent {
    /// Starts an agent in the foreground (`-D`) so this fixture owns the
    /// process, and waits until its socket exists.
    pub fn start() -> Result<SshAgent> {
        let dir = tempfile::Builder::new()
            .prefix("tunneld-agent-")
            .tempdir()
            .context("creating the agent's temp dir")?;
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ssh-agent (is openssh-client installed?)")?;
        let mut agent = SshAgent {
            child,
            socket,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            ensure!(
                agent.child.try_wait()?.is_none(),
                "ssh-agent exited before creating its socket"
            );
            ensure!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not create {} within 10s",
                agent.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(agent)
    }

    /// The agent's socket (what `SSH_AUTH_SOCK` names).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Adds the private key at `key` with `ssh-add`.
    pub fn add(&self, key: &Path) -> Result<()> {
        keys::run(
            Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.socket),
        )
        .map(drop)
    }

    /// The public keys the agent holds, as `ssh-add -L` prints them.
    pub fn list(&self) -> Result<String> {
        keys::run(
            Command::new("ssh-add")
                .arg("-L")
                .env("SSH_AUTH_SOCK", &self.socket),
        )
    }

    /// Kills the agent now (as when it goes away under a running tunneld).
    pub fn kill(&mut self) -> Result<()> {
        let _ = self.child.kill();
        self.child.wait().context("waiting for ssh-agent")?;
        Ok(())
    }
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
