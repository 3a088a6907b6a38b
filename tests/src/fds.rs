//! Open file descriptors: counting a process's through `/proc/PID/fd`,
//! finding the files it holds open in a directory (even nameless ones) with
//! the disk space each holds, and raising this process's `RLIMIT_NOFILE` so
//! a test can hold hundreds of sockets at once (the client ends and the
//! peers' ends both live here).
//!
//! A daemon that leaks one descriptor per connection shows it here long
//! before it runs out: count before, during and after a burst of
//! connections, and compare.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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

/// A file the process holds open, found through `/proc/PID/fd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    /// The descriptor's number in that process.
    pub fd: u32,
    /// Where `/proc/PID/fd/N` links: the file's path when it was opened,
    /// with ` (deleted)` appended once it has no name (an `O_TMPFILE` shows
    /// as `DIR/#INODE (deleted)`).
    pub link: PathBuf,
    /// Disk space the file holds now (`st_blocks` × 512), read through the
    /// link, so also for a file that has no name.
    pub allocated: u64,
}

/// The files `pid` holds open whose path (as `/proc/PID/fd` shows it) is
/// inside `dir`, with the disk space each holds. `dir` is compared as given:
/// pass it canonical (`std::fs::canonicalize`), as the kernel shows paths.
/// A descriptor closed while this reads is skipped.
pub fn open_under(pid: u32, dir: &Path) -> Result<Vec<OpenFile>> {
    let fds = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&fds).with_context(|| format!("reading {fds}"))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !link.starts_with(dir) || link == dir {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        found.push(OpenFile {
            fd,
            link,
            allocated: meta.blocks() * 512,
        });
    }
    found.sort_by_key(|f| f.fd);
    Ok(found)
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
    fn finds_an_open_file_without_a_name_and_its_disk_space() -> Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let dir_path = std::fs::canonicalize(dir.path())?;
        let me = std::process::id();
        // Other tests of this binary open files in parallel, elsewhere.
        assert!(open_under(me, &dir_path)?.is_empty());
        let mut file = tempfile::tempfile_in(&dir_path)?;
        file.write_all(&vec![7u8; 1 << 20])?;
        file.sync_all()?;
        let found = open_under(me, &dir_path)?;
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].link.starts_with(&dir_path), "{found:?}");
        assert!(found[0].allocated >= 1 << 20, "{found:?}");
        assert_eq!(
            std::fs::read_dir(&dir_path)?.count(),
            0,
            "the file has a name"
        );
        drop(file);
        assert!(open_under(me, &dir_path)?.is_empty());
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
