//! Rendering results: human lines and tables, proto3 JSON, or ids only.
//!
//! Every function here returns a `String` and prints nothing, so the
//! formatting is tested without a daemon; the commands do the printing.
//!
//! - [`json`]: the proto3 JSON mapping, as grpcurl prints it.
//! - [`tunnels`]: one tunnel, and the `list` table.
//! - [`hosts`]: the `hosts` table.
//! - [`status`]: what `status` found out.
//! - [`events`]: the lines `--attach` prints as connections come and go.
//! - [`watch`]: the lines `watch` prints, one per event.
//!
//! This module holds what they share: the [`Mode`], tables, and units.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Row, Table, presets};
use tunnel_proto::pbjson_types::Timestamp;
use tunnel_proto::v1::{Endpoint, SshConnectionState, SshHost, TunnelKind, TunnelState};

use crate::cli::OutputFormat;

pub mod events;
pub mod hosts;
pub mod json;
pub mod status;
pub mod tunnels;
pub mod watch;

/// How results are printed, from `--output` and `--quiet` (which wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Human-readable lines and tables.
    Table,
    /// proto3 JSON, as grpcurl prints it.
    Json,
    /// Ids (or names) only, one per line, for scripts.
    Quiet,
}

impl Mode {
    /// Picks the mode from the global flags.
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        match (quiet, format) {
            (true, _) => Mode::Quiet,
            (false, OutputFormat::Table) => Mode::Table,
            (false, OutputFormat::Json) => Mode::Json,
        }
    }
}

/// A borderless table in the kubectl style: columns separated by spaces,
/// never wrapped (scripts cut columns out of it).
fn new_table(header: impl Into<Row>) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table
}

/// `host:port`, with IPv6 addresses in brackets; a unix socket's path; `-`
/// when unset or all empty.
pub fn endpoint(endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        Some(e) if !e.path.is_empty() => e.path.clone(),
        Some(e) if !e.host.is_empty() || e.port != 0 => {
            tunnel_proto::addr::join_host_port(&e.host, e.port)
        }
        _ => "-".into(),
    }
}

/// `local`, `remote`, `dynamic` (`ssh -D`) or `remote-dynamic` (`ssh -R`
/// without a target).
pub fn kind_name(kind: i32) -> &'static str {
    match TunnelKind::try_from(kind) {
        Ok(TunnelKind::Local) => "local",
        Ok(TunnelKind::Remote) => "remote",
        Ok(TunnelKind::Dynamic) => "dynamic",
        Ok(TunnelKind::RemoteDynamic) => "remote-dynamic",
        _ => "unknown",
    }
}

/// `open`, `reconnecting`, `failed` or `closed`.
pub fn tunnel_state_name(state: i32) -> &'static str {
    match TunnelState::try_from(state) {
        Ok(TunnelState::Open) => "open",
        Ok(TunnelState::Reconnecting) => "reconnecting",
        Ok(TunnelState::Failed) => "failed",
        Ok(TunnelState::Closed) => "closed",
        _ => "unknown",
    }
}

/// `idle`, `connecting`, `connected`, `reconnecting`, `failed` or
/// `removed`.
pub fn host_state_name(state: i32) -> &'static str {
    match SshConnectionState::try_from(state) {
        Ok(SshConnectionState::Idle) => "idle",
        Ok(SshConnectionState::Connecting) => "connecting",
        Ok(SshConnectionState::Connected) => "connected",
        Ok(SshConnectionState::Reconnecting) => "reconnecting",
        Ok(SshConnectionState::Failed) => "failed",
        Ok(SshConnectionState::Removed) => "removed",
        _ => "unknown",
    }
}

/// What a reconnecting host is doing, as of `now`: `attempt 2, next in
/// 1.5s`, or `attempt 2 under way` when no next attempt is scheduled or it
/// is due. `None` unless the host is reconnecting.
pub fn reconnect_progress(host: &SshHost, now: SystemTime) -> Option<String> {
    if host.state != SshConnectionState::Reconnecting as i32 {
        return None;
    }
    let attempt = host.reconnect_attempt;
    let wait = host
        .next_attempt_at
        .as_ref()
        .map(|next| until(next, now))
        .filter(|wait| !wait.is_zero());
    Some(match wait {
        Some(wait) => format!("attempt {attempt}, next in {}", short_duration(wait)),
        None => format!("attempt {attempt} under way"),
    })
}

/// Time from `now` to `at`, to the millisecond; zero when `at` has passed.
pub fn until(at: &Timestamp, now: SystemTime) -> Duration {
    let left = system_time(at)
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    Duration::from_millis(left.as_millis() as u64)
}

/// A timestamp as a `SystemTime`; before 1970 counts as 1970, and one past
/// what the clock can hold as 1970 too (never a panic).
pub fn system_time(at: &Timestamp) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::new(
            at.seconds.max(0) as u64,
            at.nanos.clamp(0, 999_999_999) as u32,
        ))
        .unwrap_or(UNIX_EPOCH)
}

/// An API duration as a std one; negative counts as zero.
pub fn std_duration(d: &tunnel_proto::pbjson_types::Duration) -> Duration {
    Duration::new(
        d.seconds.max(0) as u64,
        d.nanos.clamp(0, 999_999_999) as u32,
    )
}

/// A short span for events: tenths of a second under a minute (`0.3s`,
/// `1.0s`, `59.9s`), then two units (`2m 5s`).
pub fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        two_units(d)
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.2 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the rounded value would print as 1024.0 or more.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Time from `since` to `now`; zero when `since` is in the future (a clock
/// ahead of ours).
pub fn elapsed(since: &Timestamp, now: SystemTime) -> Duration {
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    Duration::from_secs(now.saturating_sub(since.seconds).max(0) as u64)
}

/// Time since `since`, in the largest whole unit: `5s`, `3m`, `2h`, `4d`;
/// `-` when unset.
pub fn age(since: Option<&Timestamp>, now: SystemTime) -> String {
    match since {
        Some(since) => human_duration(elapsed(since, now)),
        None => "-".into(),
    }
}

/// A duration in its largest whole unit: `5s`, `3m`, `2h`, `4d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A duration in its two largest units: `45s`, `5m 3s`, `2h 3m`, `4d 1h`.
pub fn two_units(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `-` for an empty string.
fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Keeps a table cell on one line; `-` when empty.
fn one_line(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1229), "1.2 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn ages_in_largest_unit() {
        let ts = Timestamp {
            seconds: 1_000,
            nanos: 0,
        };
        assert_eq!(age(Some(&ts), at(1_005)), "5s");
        assert_eq!(age(Some(&ts), at(1_000 + 59)), "59s");
        assert_eq!(age(Some(&ts), at(1_000 + 180)), "3m");
        assert_eq!(age(Some(&ts), at(1_000 + 2 * 3600 + 59 * 60)), "2h");
        assert_eq!(age(Some(&ts), at(1_000 + 3 * 86400)), "3d");
        // A daemon clock ahead of ours is not a negative age.
        assert_eq!(age(Some(&ts), at(900)), "0s");
        assert_eq!(age(None, at(900)), "-");
    }

    #[test]
    fn durations_in_two_units() {
        assert_eq!(two_units(Duration::from_secs(45)), "45s");
        assert_eq!(two_units(Duration::from_secs(5 * 60 + 3)), "5m 3s");
        assert_eq!(
            two_units(Duration::from_secs(2 * 3600 + 3 * 60 + 59)),
            "2h 3m"
        );
        assert_eq!(two_units(Duration::from_secs(4 * 86400 + 3600)), "4d 1h");
    }

    #[test]
    fn reconnect_progress_counts_down_to_the_next_attempt() {
        let mut host = SshHost {
            name: "default".into(),
            state: SshConnectionState::Reconnecting as i32,
            reconnect_attempt: 2,
            next_attempt_at: Some(Timestamp {
                seconds: 1_001,
                nanos: 500_000_000,
            }),
            ..Default::default()
        };
        assert_eq!(
            reconnect_progress(&host, at(1_000)).as_deref(),
            Some("attempt 2, next in 1.5s")
        );
        assert_eq!(
            reconnect_progress(&host, at(1_002)).as_deref(),
            Some("attempt 2 under way")
        );
        host.next_attempt_at = None;
        assert_eq!(
            reconnect_progress(&host, at(1_000)).as_deref(),
            Some("attempt 2 under way")
        );
        host.state = SshConnectionState::Connected as i32;
        assert_eq!(reconnect_progress(&host, at(1_000)), None);
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(Duration::from_millis(0)), "0.0s");
        assert_eq!(short_duration(Duration::from_millis(300)), "0.3s");
        assert_eq!(short_duration(Duration::from_millis(59_940)), "59.9s");
        assert_eq!(short_duration(Duration::from_secs(125)), "2m 5s");
    }

    #[test]
    fn endpoints() {
        let ep = Endpoint {
            host: "fd00::1".into(),
            port: 22,
            ..Default::default()
        };
        assert_eq!(endpoint(Some(&ep)), "[fd00::1]:22");
        assert_eq!(endpoint(None), "-");
        let path = Endpoint {
            path: "/run/pg.sock".into(),
            ..Default::default()
        };
        assert_eq!(endpoint(Some(&path)), "/run/pg.sock");
        assert_eq!(endpoint(Some(&Endpoint::default())), "-");
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(kind_name(TunnelKind::Local as i32), "local");
        assert_eq!(kind_name(TunnelKind::Remote as i32), "remote");
        assert_eq!(kind_name(TunnelKind::Dynamic as i32), "dynamic");
        assert_eq!(
            kind_name(TunnelKind::RemoteDynamic as i32),
            "remote-dynamic"
        );
        assert_eq!(kind_name(TunnelKind::Unspecified as i32), "unknown");
        assert_eq!(kind_name(99), "unknown");
    }
}
