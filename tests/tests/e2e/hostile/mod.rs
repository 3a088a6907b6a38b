//! Hostile clients and odd values (issue 16): each finding reproduced as a
//! local attacker would, against the real daemon and sshd, and what must
//! hold under it — the other tunnels work, memory and the log stay
//! bounded, every answer is a precise status.
//!
//! - [`idle_connections`]: 400 silent API connections under `ulimit -n 256`.
//! - [`watch_streams`]: 2,000 Watch streams never read, over 1,000 tunnels.
//! - [`caps`]: `--max-tunnels`, `--max-watchers`, `--max-execs`.
//! - [`durations`]: boundary durations through tunnelctl, flags, the
//!   config file and the API.
//! - [`log_lines`]: forged newlines and escapes, 1 MiB fields, 2,000
//!   refused calls, spans over repeated reconnects.
//! - [`abandoned_opens`]: OpenRemoteForward cancelled while sshd answers.
//! - [`random_requests`]: random and boundary values in every field of
//!   every RPC.
//!
//! SIGHUP with and without a token file is in `security::token`.

mod abandoned_opens;
mod caps;
mod durations;
mod idle_connections;
mod log_lines;
mod random_requests;
mod watch_streams;

use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time (user + system) of `pid` so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13
    // after the name and state.
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // USER_HZ is 100 on every Linux architecture tests run on.
    Ok(Duration::from_millis(ticks * 10))
}

/// Lines of `log` (the daemon's stderr) and the longest one's length.
pub fn line_stats(log: &str) -> (usize, usize) {
    (
        log.lines().count(),
        log.lines().map(str::len).max().unwrap_or(0),
    )
}
