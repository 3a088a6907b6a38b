//! The process's own metrics, read from `/proc/self` at each scrape (the
//! names and meanings of the Prometheus client libraries' process
//! collectors): CPU seconds, resident memory, open and maximum file
//! descriptors, start time. prometheus-client has no such collector.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

/// Reads `/proc/self` when scraped; a file it cannot read leaves its series
/// out rather than failing the scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self/stat` says, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    /// Since boot.
    starttime: u64,
}

/// Fields 14, 15 and 22 of `/proc/PID/stat`, counted after the command
/// name's closing parenthesis (the name itself may hold spaces and
/// parentheses).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// `VmRSS:    1234 kB` of `/proc/PID/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `btime N` of `/proc/stat`: when the system booted, in seconds since the
/// epoch.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(entries.count() as u64)
}

fn max_fds() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        if let Some(stat) = stat {
            let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let boot = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_btime(&t));
            if let Some(boot) = boot {
                let start = ConstGauge::new(boot as f64 + stat.starttime as f64 / ticks);
                start.encode(encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    None,
                    start.metric_type(),
                )?)?;
            }
        }
        let rss = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| parse_vm_rss(&t));
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                open_fds(),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max_fds(),
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Seconds since the epoch now, for tests and sanity checks.
#[cfg(test)]
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_after_the_name() {
        // A command name with spaces and a parenthesis of its own.
        let text = "4242 (tun (x) d) S 1 4242 4242 0 -1 4194560 1 2 3 4 \
                    17 5 0 0 20 0 9 0 123456 1000 200 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 17,
                stime: 5,
                starttime: 123456
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_and_boot_time() {
        assert_eq!(
            parse_vm_rss("Name:\ttunneld\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        let boot = parse_btime(&std::fs::read_to_string("/proc/stat").unwrap()).unwrap();
        let ticks = rustix::param::clock_ticks_per_second();
        let start = boot + stat.starttime / ticks;
        assert!(start <= now_secs() + 1, "{start}");
        assert!(open_fds().unwrap() >= 3);
        assert!(max_fds().unwrap() >= open_fds().unwrap());
    }
}
