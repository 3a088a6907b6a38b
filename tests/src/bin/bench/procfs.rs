//! What the bench reads from `/proc` and the system: CPU time and memory of
//! a process, the machine it runs on, and the ciphers sshd logged.

use std::process::Command;

use anyhow::{Context, Result};
use tunneld_tests::procs;

/// Clock ticks per second of `/proc/PID/stat` times: USER_HZ, which Linux
/// fixes at 100 on every architecture this runs on (sysconf(_SC_CLK_TCK)).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds the process has used so far
/// (`/proc/PID/stat` fields 14 and 15, utime and stime).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // "PID (comm) STATE PPID …": comm may hold spaces, so count from ')'.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')', index 0 is field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) as f64 / USER_HZ)
}

/// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, …), if it exists.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// CPU seconds of every descendant of `root` alive now (sshd's
/// per-connection processes under the listener).
pub fn tree_cpu_seconds(root: u32) -> f64 {
    procs::descendants_of(root)
        .into_iter()
        .filter_map(|p| cpu_seconds(p).ok())
        .sum()
}

/// Memory of a process in bytes, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss: u64,
    /// Peak resident set size (`VmHWM`).
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kb: u64 = line[name.len()..]
            .split_whitespace()
            .next()
            .context("empty field")?
            .parse()?;
        Ok(kb * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// The machine, as printed above the table.
pub fn machine_info() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let aes = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "aes"));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "?".into())
    };
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .map(|l| l.trim_start_matches("MemTotal:").trim().to_owned())
        .unwrap_or_default();
    let ssh_version = Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_else(|e| format!("? ({e})"));
    vec![
        ("CPU".into(), first("model name")),
        ("cores (usable by this process)".into(), cpus.to_string()),
        (
            "AES-NI".into(),
            if aes { "yes (aes flag)" } else { "no" }.into(),
        ),
        ("memory".into(), mem),
        ("kernel".into(), read("/proc/sys/kernel/osrelease")),
        ("OpenSSH (client)".into(), ssh_version),
        ("load average at start".into(), read("/proc/loadavg")),
    ]
}

/// What one SSH client negotiated, from sshd's log at LogLevel DEBUG1:
/// `(client software, client->server cipher, server->client cipher)`.
pub type Negotiated = (String, String, String);

/// Every distinct [`Negotiated`] triple in sshd's log. Handshakes of this
/// bench never overlap, so the lines of one connection come together.
pub fn negotiated_ciphers(log: &str) -> Vec<Negotiated> {
    let mut out: Vec<Negotiated> = Vec::new();
    let mut software = String::from("?");
    let mut c2s = String::new();
    for line in log.lines() {
        if let Some((_, v)) = line.split_once("remote software version ") {
            software = v.trim().to_owned();
        } else if let Some((_, v)) = line.split_once("kex: client->server cipher: ") {
            c2s = v.split_whitespace().next().unwrap_or("?").to_owned();
        } else if let Some((_, v)) = line.split_once("kex: server->client cipher: ") {
            let s2c = v.split_whitespace().next().unwrap_or("?").to_owned();
            let t = (software.clone(), c2s.clone(), s2c);
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status_of_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        let m = memory(me).unwrap();
        assert!(m.rss > 0 && m.hwm >= m.rss);
    }

    #[test]
    fn pairs_software_with_its_ciphers() {
        let log = "debug1: Remote protocol version 2.0, remote software version russh_0.65.1\n\
                   debug1: kex: client->server cipher: aes256-gcm@openssh.com MAC: <implicit> compression: none\n\
                   debug1: kex: server->client cipher: aes256-gcm@openssh.com MAC: <implicit> compression: none\n";
        assert_eq!(
            negotiated_ciphers(log),
            vec![(
                "russh_0.65.1".into(),
                "aes256-gcm@openssh.com".into(),
                "aes256-gcm@openssh.com".into()
            )]
        );
    }
}
