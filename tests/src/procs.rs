//! Process-tree helpers over `/proc` (Linux only, like the rest of the
//! fixtures).
//!
//! OpenSSH's sshd forks one process per connection (and that one forks the
//! session's shell); killing those children is how a test makes an SSH
//! connection die without stopping the listener.

use std::collections::VecDeque;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The parent pid of `pid`, read from `/proc/PID/stat`; `None` if the
/// process is gone.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (comm) STATE PPID ..." — comm may contain spaces and parens, so
    // split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The direct children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}

/// All descendants of `pid` (children, grandchildren, …), parents first.
pub fn descendants_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = VecDeque::from([pid]);
    while let Some(p) = queue.pop_front() {
        for child in children_of(p) {
            found.push(child);
            queue.push_back(child);
        }
    }
    found
}

/// Sends SIGKILL to every descendant of `pid` (not `pid` itself) and returns
/// how many were signalled.
pub fn kill_descendants(pid: u32) -> usize {
    let victims = descendants_of(pid);
    for &p in &victims {
        // A process may already be gone; that is what we want anyway.
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
    victims.len()
}

/// Pids of processes whose environment has `key` set to a value for which
/// `matches` is true. Processes whose environment cannot be read (gone, or
/// another user's when not root) are skipped.
pub fn with_env(key: &str, matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let prefix = format!("{key}=");
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                return false;
            };
            environ
                .split(|&b| b == 0)
                .filter_map(|var| std::str::from_utf8(var).ok())
                .filter_map(|var| var.strip_prefix(&prefix))
                .any(&matches)
        })
        .collect()
}

/// Sends SIGKILL to each pid (ignoring ones already gone).
pub fn kill_all(pids: &[u32]) {
    for &p in pids {
        let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
    }
}

/// True while a process with this pid exists and is not a zombie (a killed
/// child stays a zombie until its parent reaps it).
pub fn is_alive(pid: u32) -> bool {
    !matches!(state(pid), Some('Z' | 'X') | None)
}

/// Those of `pids` that are alive (see [`is_alive`]).
pub fn alive(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    pids.into_iter().filter(|&p| is_alive(p)).collect()
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `T`, `Z`, …); `None` when
/// the process is gone.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`);
/// `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process held stopped (SIGSTOP) as a busy or swapped-out one would be:
/// the kernel still completes TCP handshakes on its listeners, but nothing
/// is accepted or answered. It runs again (SIGCONT) when this is dropped,
/// whatever the test did meanwhile.
pub struct Paused(u32);

impl Paused {
    /// Stops `pid` and returns once `/proc` shows it stopped (at most 5 s).
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP)
            .map_err(|e| anyhow::anyhow!("sending SIGSTOP to {pid}: {e}"))?;
        let paused = Paused(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !matches!(state(pid), Some('T' | 't')) {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "process {pid} not stopped 5 s after SIGSTOP (state {:?})",
                state(pid)
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}
