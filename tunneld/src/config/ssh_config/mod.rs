//! OpenSSH client configuration (`ssh_config`), resolved for one
//! destination as `ssh -G` resolves it (OpenSSH 9.2), for the keys tunneld
//! uses. Pure: files are read, nothing is run, no DNS; who the user is and
//! where their home is are inputs ([`SshConfigContext`]), so results are
//! exact in tests.
//!
//! - `parse`: files → lines (keyword, unquoted arguments), `Include`
//!   followed (globs via `glob`), bounded in depth, files, lines and bytes.
//! - `matching`: `Host` patterns and the `Match` criteria tunneld can
//!   evaluate (host, originalhost, user, localuser, all); the others
//!   (exec, canonical, final, localnetwork, tagged…) are refused with the
//!   file and line, never skipped.
//! - `directive`: one line → a typed value (`ciphers`, `jump` for the two
//!   with a grammar of their own); unknown keywords are ignored, since
//!   OpenSSH knows hundreds tunneld has no use for.
//! - `resolve`: first value wins, then `%h`, defaults and `tokens` (`~`
//!   and `%`), into a [`SshConfigHost`].
//!
//! What tunneld refuses where `ssh` would do something it cannot: the Match
//! criteria above, `ProxyCommand` (other than `none`), `CanonicalizeHostname`
//! other than `no`, `~otheruser` paths, and service names as ports.

mod ciphers;
mod directive;
mod error;
mod glob;
mod host;
mod jump;
mod matching;
mod parse;
mod resolve;
mod tokens;

use std::{collections::BTreeMap, path::PathBuf};

pub use error::{Origin, SshConfigError};
pub use host::{
    DEFAULT_IDENTITY_FILES, DEFAULT_PORT, DEFAULT_USER_KNOWN_HOSTS_FILES, SshConfigHost,
    StrictHostKeyChecking,
};

use parse::{ConfigFile, Item, Kind, Reader};

/// The system-wide file's directory (`/etc/ssh`): its relative `Include`s
/// are relative to it.
pub const SYSTEM_DIR: &str = "/etc/ssh";

/// Who resolves: what `ssh` takes from the passwd entry and the machine.
#[derive(Clone, PartialEq, Eq)]
pub struct SshConfigContext {
    /// The passwd home directory (not `$HOME`, as `ssh`): `~`, `%d`,
    /// `~/.ssh/config` and the user file's relative includes.
    pub home: PathBuf,
    /// The local user's name: `%u`, `Match localuser`, the default user.
    pub local_user: String,
    /// The local host name as gethostname(2) gives it: `%l`, and `%L` (up
    /// to the first dot), and `%C`.
    pub local_host: String,
    /// The local user id: `%i`, and who may own included files.
    pub uid: u32,
    /// Where the system file (`ssh_config`) and its relative includes
    /// are; [`SYSTEM_DIR`] but in tests.
    pub system_dir: PathBuf,
    /// Environment variables for `${NAME}` in paths.
    pub env: BTreeMap<String, String>,
}

/// Shows the environment by size only: it holds tunneld's whole
/// environment, passphrase variables included, which must never reach a
/// log line.
impl std::fmt::Debug for SshConfigContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConfigContext")
            .field("home", &self.home)
            .field("local_user", &self.local_user)
            .field("local_host", &self.local_host)
            .field("uid", &self.uid)
            .field("system_dir", &self.system_dir)
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .finish()
    }
}

impl SshConfigContext {
    /// A context with the system directory `/etc/ssh` and no environment
    /// variables.
    pub fn new(home: PathBuf, local_user: String, local_host: String, uid: u32) -> Self {
        SshConfigContext {
            home,
            local_user,
            local_host,
            uid,
            system_dir: PathBuf::from(SYSTEM_DIR),
            env: BTreeMap::new(),
        }
    }
}

/// Which files to read, as `ssh` without and with `-F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshConfigFiles {
    /// `~/.ssh/config` then the system `ssh_config`; either may be absent.
    Default,
    /// This file alone (`-F FILE`); it must exist.
    File(PathBuf),
    /// No file at all (`-F none`).
    None,
}

impl SshConfigFiles {
    /// The files a `--ssh-config` value names: `none`, or a path.
    pub fn from_arg(arg: &str) -> Self {
        if arg == "none" {
            SshConfigFiles::None
        } else {
            SshConfigFiles::File(PathBuf::from(arg))
        }
    }
}

/// ssh_config files read once, with their includes, to resolve any number
/// of destinations against (every host, hop and alias of one load).
#[derive(Debug, Default)]
pub struct SshConfig {
    files: Vec<ConfigFile>,
}

impl SshConfig {
    /// Reads the files `files` names.
    pub fn read(files: &SshConfigFiles, ctx: &SshConfigContext) -> Result<Self, SshConfigError> {
        Ok(SshConfig {
            files: read(files, ctx)?,
        })
    }

    /// Resolves `alias` (the host as given, without `user@`) as `ssh [-l
    /// user_override] [-p port_override] alias` would, for the keys tunneld
    /// uses.
    pub fn resolve(
        &self,
        alias: &str,
        user_override: Option<&str>,
        port_override: Option<u16>,
        ctx: &SshConfigContext,
    ) -> Result<SshConfigHost, SshConfigError> {
        if alias.is_empty() || alias.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(SshConfigError::Line {
                at: Origin {
                    file: std::sync::Arc::new(PathBuf::from("(destination)")),
                    line: 0,
                },
                message: format!("{alias:?} is not a host name"),
            });
        }
        resolve::resolve_files(&self.files, alias, user_override, port_override, ctx)
    }

    /// Every concrete alias named on a `Host` line (and in the files they
    /// include): no wildcard, no negation; in order, once each.
    pub fn concrete_aliases(&self) -> Vec<String> {
        fn walk(file: &ConfigFile, out: &mut Vec<String>) {
            for item in &file.items {
                match item {
                    Item::Include(files) => files.iter().for_each(|f| walk(f, out)),
                    Item::Line(line) if line.keyword == "host" => {
                        for p in &line.args {
                            if !p.is_empty() && !p.contains(['*', '?', '!']) && !out.contains(p) {
                                out.push(p.clone());
                            }
                        }
                    }
                    Item::Line(_) => {}
                }
            }
        }
        let mut out = Vec::new();
        for file in &self.files {
            walk(file, &mut out);
        }
        out
    }
}

/// Resolves `alias` through `files` (read now) as [`SshConfig::resolve`].
pub fn resolve(
    alias: &str,
    user_override: Option<&str>,
    port_override: Option<u16>,
    files: &SshConfigFiles,
    ctx: &SshConfigContext,
) -> Result<SshConfigHost, SshConfigError> {
    SshConfig::read(files, ctx)?.resolve(alias, user_override, port_override, ctx)
}

/// [`SshConfig::concrete_aliases`] of `files`, read now.
pub fn concrete_aliases(
    files: &SshConfigFiles,
    ctx: &SshConfigContext,
) -> Result<Vec<String>, SshConfigError> {
    Ok(SshConfig::read(files, ctx)?.concrete_aliases())
}

/// The files `files` names, read with their includes.
fn read(files: &SshConfigFiles, ctx: &SshConfigContext) -> Result<Vec<ConfigFile>, SshConfigError> {
    let mut reader = Reader::new(&ctx.home, &ctx.system_dir, ctx.uid);
    let mut out = Vec::new();
    match files {
        SshConfigFiles::None => {}
        SshConfigFiles::File(path) => match reader.read_top(path, Kind::User, false)? {
            Some(f) => out.push(f),
            None => return Err(SshConfigError::Missing(path.clone())),
        },
        SshConfigFiles::Default => {
            let user = ctx.home.join(".ssh").join("config");
            let system = ctx.system_dir.join("ssh_config");
            for (path, kind, check) in [
                (user.as_path(), Kind::User, true),
                (system.as_path(), Kind::System, false),
            ] {
                if let Some(f) = reader.read_top(path, kind, check)? {
                    out.push(f);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
