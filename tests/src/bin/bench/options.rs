//! Command-line flags of the bench, with the full-run defaults and the
//! `--smoke` sizes.

use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The cipher both contenders are held to unless `--cipher` says otherwise.
pub const DEFAULT_CIPHER: &str = "aes256-gcm@openssh.com";

pub const USAGE: &str = "\
usage: bench [--smoke] [--mib N] [--reps N] [--rtt N] [--tunnels N] [--list-calls N]
             [--idle N] [--cipher NAME|any] [--sshd-log-level LEVEL]
             [--slow-mib N] [--slow-rate N] [--slow-reps N]
             [--skip GROUP]... [--only GROUP]... [--tunneld-arg ARG]... [--time-limit SECS]

  --smoke            tiny sizes (8 MiB, 20 round trips, 20 tunnels, 50 idle
                     connections, a 4 MiB slow pull, 1 repetition); fails on
                     errors, never on speed
  --mib N            MiB per single-stream transfer (also through the 3-hop
                     chain), per Exec `cat` and stdin run, and in total per
                     aggregate run (default 1024)
  --reps N           repetitions of the throughput, setup, chain and Exec rows
                     (default 5)
  --slow-mib N       MiB of the rate-limited pull beside a busy sibling
                     (group slow; default 256)
  --slow-rate N      MB/s (10^6 bytes) that pull's reader takes (default 8)
  --slow-reps N      repetitions of that row (default 1: each takes
                     --slow-mib / --slow-rate seconds per contender, ~34 s)
  --rtt N            connections per setup+round-trip sample set (default 500)
  --tunnels N        tunnels opened for the control-RPC rows (default 1000)
  --list-calls N     List calls timed with those tunnels open (default 200)
  --idle N           idle forwarded connections held at once (default 10000)
  --cipher NAME      the only cipher sshd offers, and `ssh -c NAME`
                     (default aes256-gcm@openssh.com; `any`: no constraint)
  --sshd-log-level L sshd LogLevel (default DEBUG1, which logs the negotiated
                     cipher of every connection; VERBOSE logs less)
  --skip GROUP       leave out a group: local, remote, exec, control, slow,
                     chain, idle
  --only GROUP       run only this group (repeatable; --skip still applies),
                     e.g. --only chain
  --tunneld-arg ARG  pass ARG to tunneld (repeatable), e.g. to try a setting:
                     --tunneld-arg --max-connection-buffer --tunneld-arg 64MiB
  --time-limit SECS  abort the whole run after this long (default 3600)";

/// Groups of rows that `--skip` leaves out and `--only` selects.
pub const GROUPS: &[&str] = &[
    "local", "remote", "exec", "control", "slow", "chain", "idle",
];

/// What to measure and how much.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tiny sizes for CI.
    pub smoke: bool,
    /// Bytes of one single-stream transfer (and of one aggregate run, split
    /// over its streams, and of the file `cat` reads).
    pub bytes: u64,
    /// Repetitions of the throughput, setup and Exec rows.
    pub reps: usize,
    /// Connections per setup+round-trip sample set.
    pub rtt: usize,
    /// Tunnels opened for the control-RPC rows.
    pub tunnels: usize,
    /// List calls timed with those tunnels open.
    pub list_calls: usize,
    /// Idle forwarded connections held at once.
    pub idle: usize,
    /// `None`: no cipher constraint.
    pub cipher: Option<String>,
    /// sshd's LogLevel.
    pub sshd_log_level: String,
    /// Bytes of the rate-limited pull beside a busy sibling.
    pub slow_bytes: u64,
    /// The rate (MB/s, 10^6 bytes) that pull's reader takes.
    pub slow_rate: u64,
    /// Repetitions of that row.
    pub slow_reps: usize,
    /// Groups left out.
    pub skip: Vec<String>,
    /// When not empty, the only groups run.
    pub only: Vec<String>,
    /// Extra arguments for tunneld.
    pub tunneld_args: Vec<String>,
    /// Bound on the whole run.
    pub time_limit: Duration,
    /// Internal: run as the peer process (see `peer::serve`).
    pub serve_peer: bool,
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options> {
        let args: Vec<String> = args.into_iter().collect();
        let smoke = args.iter().any(|a| a == "--smoke");
        let mut args = args.into_iter();
        let mut o = if smoke {
            Options {
                smoke,
                bytes: 8 << 20,
                reps: 1,
                rtt: 20,
                tunnels: 20,
                list_calls: 20,
                idle: 50,
                slow_bytes: 4 << 20,
                ..Options::full()
            }
        } else {
            Options::full()
        };
        while let Some(a) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            let number = |name: &str, v: String| -> Result<u64> {
                v.parse::<u64>()
                    .with_context(|| format!("{name} {v:?}: not a number\n{USAGE}"))
            };
            match a.as_str() {
                "--smoke" => {}
                "--serve-peer" => o.serve_peer = true,
                "--mib" => o.bytes = number(&a, value(&a)?)? << 20,
                "--reps" => o.reps = number(&a, value(&a)?)? as usize,
                "--rtt" => o.rtt = number(&a, value(&a)?)? as usize,
                "--tunnels" => o.tunnels = number(&a, value(&a)?)? as usize,
                "--list-calls" => o.list_calls = number(&a, value(&a)?)? as usize,
                "--idle" => o.idle = number(&a, value(&a)?)? as usize,
                "--slow-mib" => o.slow_bytes = number(&a, value(&a)?)? << 20,
                "--slow-rate" => o.slow_rate = number(&a, value(&a)?)?,
                "--slow-reps" => o.slow_reps = number(&a, value(&a)?)? as usize,
                "--time-limit" => o.time_limit = Duration::from_secs(number(&a, value(&a)?)?),
                "--cipher" => {
                    let v = value(&a)?;
                    o.cipher = (v != "any").then_some(v);
                }
                "--sshd-log-level" => o.sshd_log_level = value(&a)?,
                "--skip" | "--only" => {
                    let v = value(&a)?;
                    if !GROUPS.contains(&v.as_str()) {
                        bail!("{a} {v:?}: groups are {GROUPS:?}");
                    }
                    if a == "--skip" {
                        o.skip.push(v);
                    } else {
                        o.only.push(v);
                    }
                }
                "--tunneld-arg" => o.tunneld_args.push(value(&a)?),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        if o.reps == 0 || o.rtt == 0 || o.bytes == 0 {
            bail!("--reps, --rtt and --mib must be at least 1");
        }
        if o.slow_bytes == 0 || o.slow_rate == 0 || o.slow_reps == 0 {
            bail!("--slow-mib, --slow-rate and --slow-reps must be at least 1");
        }
        Ok(o)
    }

    fn full() -> Options {
        Options {
            smoke: false,
            bytes: 1 << 30,
            reps: 5,
            rtt: 500,
            tunnels: 1000,
            list_calls: 200,
            idle: 10_000,
            slow_bytes: 256 << 20,
            slow_rate: 8,
            slow_reps: 1,
            cipher: Some(DEFAULT_CIPHER.to_owned()),
            sshd_log_level: "DEBUG1".to_owned(),
            skip: Vec::new(),
            only: Vec::new(),
            tunneld_args: Vec::new(),
            time_limit: Duration::from_secs(3600),
            serve_peer: false,
        }
    }

    /// True unless `--skip group` was given, or `--only` named other
    /// groups.
    pub fn runs(&self, group: &str) -> bool {
        !self.skip.iter().any(|g| g == group)
            && (self.only.is_empty() || self.only.iter().any(|g| g == group))
    }

    /// The command line that reproduces this run, for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} MiB per transfer, {} repetition(s), {} connections per setup sample, \
             {} tunnels, {} List calls, {} idle connections, slow pull {} MiB at {} MB/s × {} \
             repetition(s), cipher {}, tunneld args {:?}{}{}",
            self.bytes >> 20,
            self.reps,
            self.rtt,
            self.tunnels,
            self.list_calls,
            self.idle,
            self.slow_bytes >> 20,
            self.slow_rate,
            self.slow_reps,
            self.cipher.as_deref().unwrap_or("(not constrained)"),
            self.tunneld_args,
            if self.only.is_empty() {
                String::new()
            } else {
                format!(", only {:?}", self.only)
            },
            if self.skip.is_empty() {
                String::new()
            } else {
                format!(", skipping {:?}", self.skip)
            },
        )
    }
}
