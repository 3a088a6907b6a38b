//! What to run and what comes back: the command, its environment, terminal
//! and limits, and the events of its run.

use std::time::Duration;

use bytes::Bytes;

use super::input::Stdin;

/// What to run.
#[derive(Debug, Default)]
pub struct ExecSpec {
    /// Command line for the remote login shell; empty starts the login shell
    /// itself, as `ssh host` does.
    pub command: String,
    /// The command's standard input.
    pub stdin: Stdin,
    /// Variables exported before the command runs.
    pub env: Vec<(String, String)>,
    /// Run-time limit.
    pub timeout: Option<Duration>,
    /// A pseudo-terminal to run it on, as `ssh -t`.
    pub terminal: Option<Terminal>,
}

/// A pseudo-terminal requested for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    /// The TERM value.
    pub term: String,
    /// Its initial size.
    pub size: TerminalSize,
}

/// A terminal's size in characters and pixels (0: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Width in characters.
    pub columns: u32,
    /// Height in characters.
    pub rows: u32,
    /// Width in pixels.
    pub width_pixels: u32,
    /// Height in pixels.
    pub height_pixels: u32,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(u32),
    /// Killed by a signal.
    Signal {
        /// Signal name without "SIG".
        name: String,
        /// Whether it dumped core.
        core_dumped: bool,
        /// The server's message.
        message: String,
    },
}

/// One event of a running command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// A chunk of stdout.
    Stdout(Bytes),
    /// A chunk of stderr.
    Stderr(Bytes),
    /// The end; always last on success.
    Exit(ExitStatus),
}

/// Prefixes `export NAME='value';` for each variable (POSIX shell quoting):
/// sshd drops `env` requests its AcceptEnv does not list, so variables are
/// set by the remote shell instead.
pub(super) fn with_env(env: &[(String, String)], command: &str) -> String {
    let mut line = String::new();
    for (k, v) in env {
        line.push_str("export ");
        line.push_str(k);
        line.push_str("='");
        line.push_str(&v.replace('\'', r"'\''"));
        line.push_str("'; ");
    }
    line.push_str(command);
    line
}

/// Whether `name` is a valid environment variable name.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_exported_with_shell_quoting() {
        let env = vec![
            ("A".to_string(), "it's".to_string()),
            ("B".to_string(), "$x y".to_string()),
        ];
        assert_eq!(
            with_env(&env, "echo $A"),
            r"export A='it'\''s'; export B='$x y'; echo $A"
        );
        assert_eq!(with_env(&[], "true"), "true");
    }

    #[test]
    fn env_names_are_checked() {
        assert!(valid_env_name("FOO_1"));
        assert!(valid_env_name("_x"));
        assert!(!valid_env_name("1A"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name("A;rm"));
        assert!(!valid_env_name(""));
    }
}
