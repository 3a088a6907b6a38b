//! SSH keys made with the real `ssh-keygen`, and known_hosts lines built
//! from them.
//!
//! Keys are generated fresh for every fixture (no keys are checked in), so a
//! test can never pass because of a key left over on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// Key algorithms a test can ask `ssh-keygen` for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `ssh-ed25519`, the default everywhere in these fixtures.
    Ed25519,
    /// `ecdsa-sha2-nistp256`.
    Ecdsa,
    /// `ssh-rsa` (3072 bits; signed with rsa-sha2-256/512 by modern clients).
    Rsa,
}

impl KeyType {
    /// The `-t` argument of `ssh-keygen`.
    pub fn keygen_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
        }
    }
}

/// A private key file and its `.pub` beside it.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The private key (OpenSSH format, no passphrase, mode 0600).
    pub private: PathBuf,
    /// The public key, one line: `TYPE BASE64 COMMENT`.
    pub public: PathBuf,
}

impl KeyPair {
    /// The public key line as written by `ssh-keygen` (without the newline).
    pub fn public_line(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.public)
            .with_context(|| format!("reading {}", self.public.display()))?;
        Ok(text.trim().to_owned())
    }

    /// The key's algorithm name and base64 blob, e.g. `("ssh-ed25519", "AAAA…")`.
    pub fn type_and_blob(&self) -> Result<(String, String)> {
        let line = self.public_line()?;
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next()) {
            (Some(kind), Some(blob)) => Ok((kind.to_owned(), blob.to_owned())),
            _ => bail!("malformed public key {}: {line:?}", self.public.display()),
        }
    }

    /// The key's SHA256 fingerprint as OpenSSH prints it, e.g. `SHA256:abc…`.
    pub fn fingerprint(&self) -> Result<String> {
        let out = run(Command::new("ssh-keygen")
            .arg("-l")
            .arg("-E")
            .arg("sha256")
            .arg("-f")
            .arg(&self.public))?;
        // "256 SHA256:xxxx comment (ED25519)"
        out.split_whitespace()
            .find(|f| f.starts_with("SHA256:"))
            .map(str::to_owned)
            .with_context(|| format!("no SHA256 fingerprint in ssh-keygen output {out:?}"))
    }
}

/// Generates a key pair `dir/name` and `dir/name.pub` with an empty passphrase.
pub fn generate(dir: &Path, name: &str, kind: KeyType) -> Result<KeyPair> {
    let private = dir.join(name);
    let public = dir.join(format!("{name}.pub"));
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind.keygen_name(), "-N", "", "-C"])
        .arg(format!("tunneld-tests-{name}"))
        .arg("-f")
        .arg(&private);
    if kind == KeyType::Rsa {
        cmd.args(["-b", "3072"]);
    }
    run(&mut cmd)?;
    ensure!(
        public.exists(),
        "ssh-keygen did not write {}",
        public.display()
    );
    Ok(KeyPair { private, public })
}

/// A known_hosts line for a server on 127.0.0.1 at `port` with host key `key`:
/// `[127.0.0.1]:PORT TYPE BASE64`.
pub fn known_hosts_line(port: u16, key: &KeyPair) -> Result<String> {
    known_hosts_line_at("127.0.0.1", port, key)
}

/// The known_hosts line for a server on `host` (an address) and `port`:
/// `[host]:PORT <type> <base64>`.
pub fn known_hosts_line_at(host: &str, port: u16, key: &KeyPair) -> Result<String> {
    let (kind, blob) = key.type_and_blob()?;
    Ok(format!("[{host}]:{port} {kind} {blob}"))
}

/// Writes `lines` (each without a newline) to `path` as a known_hosts file.
pub fn write_known_hosts(path: &Path, lines: &[String]) -> Result<()> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Hashes the host names of a known_hosts file in place with `ssh-keygen -H`
/// (and removes the `.old` copy it leaves).
pub fn hash_known_hosts(path: &Path) -> Result<()> {
    run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(path))?;
    let old = PathBuf::from(format!("{}.old", path.display()));
    let _ = std::fs::remove_file(old);
    Ok(())
}

/// Runs a command to completion and returns its stdout; fails with its
/// stderr when it exits non-zero or cannot be started.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {cmd:?} (is openssh-client installed?)"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
