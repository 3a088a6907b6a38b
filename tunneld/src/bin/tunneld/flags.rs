//! tunneld's command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tunneld::{ApiFlags, config::Flags};

/// SSH tunnel daemon with a gRPC control API.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "\
Examples:
  tunneld --ssh deploy@bastion.example.com
  tunneld --listen 127.0.0.1:4522 --ssh me@10.0.0.5:2222 --identity ~/.ssh/id_ed25519
  tunneld --config /etc/tunneld/hosts.toml
  tunneld --check-config /etc/tunneld/hosts.toml
  tunneld --listen unix:$XDG_RUNTIME_DIR/tunneld.sock --ssh deploy@bastion.example.com"
)]
pub struct Args {
    #[command(flatten)]
    pub api: ApiFlags,

    /// Shape of the log on stderr: `text` (one line per event, fields as
    /// key=value) or `json` (one object per line: timestamp, level,
    /// target, message, fields, and the spans' fields such as tunnel, host
    /// and peer), for log shippers.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Also append audit lines (every Exec, open, close and refused call) to
    /// FILE as JSON, one object per line; created mode 0600.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Check FILE as `--config FILE` would load it with the other flags,
    /// then exit: 0 printing `FILE: ok (N hosts, M tunnels)`, or 2 with
    /// each problem on stderr as FILE:LINE:COL: message. Binds, connects
    /// and starts nothing.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,

    #[command(flatten)]
    pub daemon: Flags,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}
