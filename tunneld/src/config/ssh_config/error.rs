//! What can go wrong reading an ssh_config, said so a person can fix it.

use std::{fmt, path::PathBuf, sync::Arc};

/// Where a directive was read: a file and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as it was opened (after Include's glob and `~`).
    pub file: Arc<PathBuf>,
    /// The line in it, counted from 1; 0 for the file as a whole.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{} line {}", self.file.display(), self.line)
        }
    }
}

/// An ssh_config that tunneld cannot read, or reads differently from `ssh`.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    /// A file named with `--ssh-config` (like `ssh -F`) does not exist.
    #[error("ssh config file {0} does not exist (pass an existing file, or `none` for no file)")]
    Missing(PathBuf),
    /// A file could not be read.
    #[error("cannot read ssh config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file others may write to, which `ssh` refuses too.
    #[error(
        "bad owner or permissions on ssh config file {0}: it must belong to you (or root) and not be writable by group or others (chmod go-w)"
    )]
    Permissions(PathBuf),
    /// A line that `ssh` rejects too, or one tunneld would read differently
    /// from `ssh` (a Match criterion it cannot evaluate, ProxyCommand…).
    #[error("{at}: {message}")]
    Line {
        /// The line.
        at: Origin,
        /// What is wrong and what to change.
        message: String,
    },
    /// A bound on what a config may make tunneld read was passed.
    #[error("{at}: {message}")]
    Limit {
        /// The line (or file) where the bound was passed.
        at: Origin,
        /// Which bound.
        message: String,
    },
}

impl SshConfigError {
    /// An error of the line at `at`.
    pub(super) fn line(at: &Origin, message: impl Into<String>) -> Self {
        SshConfigError::Line {
            at: at.clone(),
            message: message.into(),
        }
    }

    /// A bound passed at `at`.
    pub(super) fn limit(at: &Origin, message: impl Into<String>) -> Self {
        SshConfigError::Limit {
            at: at.clone(),
            message: message.into(),
        }
    }
}
