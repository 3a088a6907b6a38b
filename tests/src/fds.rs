//! Open file descriptors: counting a process's through `/proc/PID/fd`, and
//! raising this process's `RLIMIT_NOFILE` so a test can hold hundreds of
//! sockets at once (the client ends and the peers' ends both live here).
//!
//! A daemon that leaks one descriptor per connection shows it here long
//! before it runs out: count before, during and after a burst of
//! connections, and compare.

use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::wait::poll_until;

/// How many file descriptors the process `pid` has open now (entries of
/// `/proc/PID/fd`). Needs the right to read that directory: the same user,
/// or root.
pub fn count(pid: u32) -> Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))?;
    Ok(entries.filter(|e| e.is_ok()).count())
}

/// This process's `RLIMIT_NOFILE` as (soft, hard).
pub fn nofile_limit() -> Result<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit and
/// returns the new soft limit. Child processes started afterwards (sshd,
/// tunneld) inherit it. Idempotent, and safe to call from parallel tests:
/// the limit only ever goes up to the same hard value.
pub fn raise_nofile_limit() -> Result<u64> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).with_context(|| {
            format!("setrlimit(RLIMIT_NOFILE, {hard}, {hard}) from soft {soft}")
        })?;
    }
    Ok(hard)
}

/// Polls until `pid` has at most `limit` descriptors open, and returns the
/// count then; fails after `timeout` with the last count seen.
pub async fn wait_at_most(pid: u32, limit: usize, timeout: Duration) -> Result<usize> {
    poll_until(
        &format!("process {pid} to have at most {limit} open file descriptors"),
        timeout,
        || async move {
            let n = count(pid)?;
            if n <= limit {
                Ok(Some(n))
            } else {
                anyhow::bail!("{n} open")
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_process_and_fails_for_a_missing_one() -> Result<()> {
        let file = std::fs::File::open("/proc/self/stat")?;
        // Other tests of this binary open and close files in parallel, so
        // only "at least this one" holds.
        assert!(count(std::process::id())? >= 1);
        drop(file);
        // Pids are below /proc/sys/kernel/pid_max (at most 2^22).
        assert!(count(u32::MAX).is_err());
        Ok(())
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() -> Result<()> {
        let soft = raise_nofile_limit()?;
        let (now_soft, hard) = nofile_limit()?;
        assert_eq!((soft, now_soft), (hard, hard));
        Ok(())
    }
}
