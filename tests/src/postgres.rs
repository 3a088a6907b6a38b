//! A real PostgreSQL server for forwards to reach, on a free loopback port
//! or on its unix socket only, with throwaway data and `trust` auth; stopped
//! (`pg_ctl stop -m immediate`) when dropped. Follows
//! `/work/shared/TESTING.md`: as root, the server runs as `postgres`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
}

/// Where Debian puts the server binaries (the newest version installed).
fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (scripts/ensure-deps.sh installs it)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `cmd` as the server's user: `postgres` when we are root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    /// Starts a server on 127.0.0.1 (a free port) and its unix socket.
    pub fn start() -> Result<Postgres> {
        Self::start_with(true)
    }

    /// Starts a server that listens only on its unix socket.
    pub fn start_unix_only() -> Result<Postgres> {
        Self::start_with(false)
    }

    fn start_with(tcp: bool) -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("tdpg")
            .tempdir_in("/tmp")
            .context("creating PostgreSQL's directory")?;
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(dir.path());
                    c
                },
                "chown postgres",
            )?;
        }
        let data = dir.path().join("data");
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(initdb, "initdb")?;
        // The port names the socket (`.s.PGSQL.PORT`) even when unix only.
        let port = crate::sshd::free_port()?;
        let listen = if tcp { "127.0.0.1" } else { "" };
        let options = format!(
            "-p {port} -k {} -c listen_addresses='{listen}' -c fsync=off",
            dir.path().display()
        );
        let mut start = as_server_user(&bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "30", "start"]);
        run(start, "pg_ctl start")?;
        let pg = Postgres { dir, bin, port };
        ensure!(
            pg.socket().exists(),
            "PostgreSQL started but {} is missing",
            pg.socket().display()
        );
        Ok(pg)
    }

    /// The TCP port (or, unix only, the number in the socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its unix socket (`psql -h DIR`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(format!(".s.PGSQL.{}", self.port))
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }
}

/// Runs `psql` against `host` (a directory for a unix socket, or an
/// address) and `port`, as user `postgres`, with `sql`; returns its
/// unaligned, tuples-only output.
pub fn psql(host: &str, port: u16, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-h", host, "-p", &port.to_string(), "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .context("running psql")?;
    ensure!(
        out.status.success(),
        "psql -h {host} -p {port} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}
