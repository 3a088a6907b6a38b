//! The daemon's tunnels and hosts as metric series, read at each scrape
//! from the same snapshots `List` answers with: a closed tunnel or removed
//! host is simply not there any more, and nothing is counted twice.

use std::{fmt::Write as _, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
        LabelSetEncoder, LabelValueEncoder,
    },
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::{
    daemon::Daemon,
    ssh::{ConnectionState, ExecOutcome},
    tunnel::{TunnelKind, TunnelSnapshot, TunnelState},
};

/// Reads the daemon's tunnels and hosts when scraped.
#[derive(Clone)]
pub struct DaemonCollector(pub Arc<Daemon>);

impl std::fmt::Debug for DaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonCollector")
    }
}

/// A label value escaped as the text format requires (`\`, `"`, newline):
/// prometheus-client 0.24 writes label values as given, and tunnel and
/// host names come from users.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

const KINDS: [TunnelKind; 4] = [
    TunnelKind::Local,
    TunnelKind::Remote,
    TunnelKind::Dynamic,
    TunnelKind::RemoteDynamic,
];

/// The states a listed tunnel can be in (a closed one is not listed).
const STATES: [TunnelState; 3] = [
    TunnelState::Open,
    TunnelState::Reconnecting,
    TunnelState::Failed,
];

fn kind_name(kind: TunnelKind) -> &'static str {
    match kind {
        TunnelKind::Local => "local",
        TunnelKind::Remote => "remote",
        TunnelKind::Dynamic => "dynamic",
        TunnelKind::RemoteDynamic => "remote_dynamic",
    }
}

fn state_name(state: TunnelState) -> &'static str {
    match state {
        TunnelState::Open => "open",
        TunnelState::Reconnecting => "reconnecting",
        TunnelState::Failed => "failed",
        TunnelState::Closed => "closed",
    }
}

const HOST_STATES: [&str; 5] = ["idle", "connecting", "connected", "reconnecting", "failed"];

fn host_state_name(state: &ConnectionState) -> &'static str {
    match state {
        ConnectionState::Idle => "idle",
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::Reconnecting { .. } => "reconnecting",
        ConnectionState::Failed { .. } => "failed",
    }
}

/// The `tunnel` label: the name when it has one, else the id.
fn tunnel_label(t: &TunnelSnapshot) -> &str {
    t.name.as_deref().unwrap_or(&t.id)
}

/// The labels of one sample: one or two pairs, values escaped.
#[derive(Debug, Clone, Copy)]
struct Labels<'a> {
    pairs: [(&'static str, &'a str); 2],
    len: usize,
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for &(key, value) in &self.pairs[..self.len] {
            (key, Escaped(value)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

fn one<'a>(key: &'static str, value: &'a str) -> Labels<'a> {
    Labels {
        pairs: [(key, value), ("", "")],
        len: 1,
    }
}

fn two<'a>(k1: &'static str, v1: &'a str, k2: &'static str, v2: &'a str) -> Labels<'a> {
    Labels {
        pairs: [(k1, v1), (k2, v2)],
        len: 2,
    }
}

/// Whether a family counts (a counter) or measures (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Writes one family: its descriptor, then each sample.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let metric_type = match kind {
        Kind::Counter => ConstCounter::new(0u64).metric_type(),
        Kind::Gauge => ConstGauge::new(0i64).metric_type(),
    };
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        let sample = metric.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(value).encode(sample)?,
            Kind::Gauge => {
                ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(sample)?
            }
        }
    }
    Ok(())
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (tunnels, hosts) = self.0.metrics_view();
        let e = &mut encoder;

        let by_kind_state = KINDS.iter().flat_map(|&k| {
            let tunnels = &tunnels;
            STATES.iter().map(move |&s| {
                let n = tunnels
                    .iter()
                    .filter(|t| t.kind == k && t.state == s)
                    .count();
                (two("kind", kind_name(k), "state", state_name(s)), n as u64)
            })
        });
        family(
            e,
            "tunneld_tunnels",
            "Tunnels listed, by kind and state.",
            Kind::Gauge,
            by_kind_state,
        )?;

        let per = |f: fn(&TunnelSnapshot) -> u64| {
            tunnels
                .iter()
                .map(move |t| (one("tunnel", tunnel_label(t)), f(t)))
        };
        family(
            e,
            "tunneld_tunnel_connections_active",
            "Connections a tunnel carries now.",
            Kind::Gauge,
            per(|t| t.counters.active),
        )?;
        family(
            e,
            "tunneld_tunnel_connections",
            "Connections a tunnel accepted.",
            Kind::Counter,
            per(|t| t.counters.total),
        )?;
        family(
            e,
            "tunneld_tunnel_refused_connections",
            "Connections refused at a cap (--max-connections, the tunnel's max_connections).",
            Kind::Counter,
            per(|t| t.counters.refused),
        )?;
        let failures = tunnels.iter().flat_map(|t| {
            let c = t.counters;
            let name = tunnel_label(t);
            [
                (
                    two("tunnel", name, "reason", "buffer_limit"),
                    c.limit_resets,
                ),
                (
                    two("tunnel", name, "reason", "other"),
                    c.failed.saturating_sub(c.limit_resets),
                ),
            ]
        });
        family(
            e,
            "tunneld_tunnel_connection_failures",
            "Connections that could not be carried (other) or were reset past the buffer and spill limits (buffer_limit).",
            Kind::Counter,
            failures,
        )?;
        let bytes = tunnels.iter().flat_map(|t| {
            let name = tunnel_label(t);
            [
                (
                    two("tunnel", name, "direction", "to_target"),
                    t.counters.bytes_to_target,
                ),
                (
                    two("tunnel", name, "direction", "from_target"),
                    t.counters.bytes_from_target,
                ),
            ]
        });
        family(
            e,
            "tunneld_tunnel_bytes",
            "Bytes carried, toward the target or back from it.",
            Kind::Counter,
            bytes,
        )?;

        let states = hosts.iter().flat_map(|(h, _)| {
            let now = host_state_name(&h.state);
            HOST_STATES
                .iter()
                .map(move |&s| (two("host", &h.name, "state", s), u64::from(s == now)))
        });
        family(
            e,
            "tunneld_ssh_connections",
            "1 for the state each host's shared SSH connection is in.",
            Kind::Gauge,
            states,
        )?;
        let reconnects = hosts
            .iter()
            .map(|(h, c)| (one("host", &h.name), c.reconnects));
        family(
            e,
            "tunneld_ssh_reconnects",
            "SSH connections lost while tunnels used them and restored.",
            Kind::Counter,
            reconnects,
        )?;
        let keepalives = hosts
            .iter()
            .map(|(h, c)| (one("host", &h.name), c.keepalive_failures));
        family(
            e,
            "tunneld_ssh_keepalive_failures",
            "SSH connections dropped because the server stopped answering keepalives.",
            Kind::Counter,
            keepalives,
        )?;
        let execs = hosts.iter().flat_map(|(h, c)| {
            ExecOutcome::ALL
                .iter()
                .zip(c.execs)
                .map(move |(o, n)| (two("host", &h.name, "outcome", o.as_str()), n))
        });
        family(
            e,
            "tunneld_exec_calls",
            "Exec commands by how they ended.",
            Kind::Counter,
            execs,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[derive(Debug)]
    struct One(&'static str);

    impl Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            family(
                &mut encoder,
                "t",
                "help",
                Kind::Counter,
                [(one("tunnel", self.0), 3)],
            )
        }
    }

    fn text(value: &'static str) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(One(value)));
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn label_values_are_escaped() {
        let out = text("a\"b\\c\nd");
        assert!(out.contains(r#"t_total{tunnel="a\"b\\c\nd"} 3"#), "{out}");
        // One label only: no empty pair.
        assert!(text("x").contains("t_total{tunnel=\"x\"} 3"));
    }
}
