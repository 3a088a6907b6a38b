//! The proto3 JSON mapping, printed exactly as grpcurl prints it.
//!
//! A message is encoded with prost, decoded again as a [`DynamicMessage`]
//! against the API's own descriptors, and serialized by prost-reflect with
//! its default options: lowerCamelCase names, enums by name, 64-bit integers
//! as strings, default values left out, `Timestamp` as RFC 3339 in UTC with
//! `Z`, `Duration` as `"1.500s"`. The descriptors come from the same `.proto`
//! the types were generated from, so the two cannot disagree.

use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use prost::Name;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde::Serialize;
use tunnel_proto::v1::FILE_DESCRIPTOR_SET;

/// The API's descriptors (with the well-known types it imports), decoded
/// once.
fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow!("the built-in API descriptors are invalid: {e}"))
}

/// The message as a [`DynamicMessage`], which serializes to proto3 JSON.
pub fn dynamic<M: Name>(message: &M) -> anyhow::Result<DynamicMessage> {
    // Generated with the messages (prost-build's type names), so never
    // out of step with them.
    let name = M::full_name();
    let descriptor = pool()?
        .get_message_by_name(&name)
        .ok_or_else(|| anyhow!("no descriptor for {name}"))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("cannot render a {name} as JSON"))
}

/// A message as pretty proto3 JSON, for a single answer.
pub fn pretty<M: Name>(message: &M) -> anyhow::Result<String> {
    pretty_value(&dynamic(message)?)
}

/// A message as proto3 JSON on one line, for a stream of answers (NDJSON).
pub fn compact<M: Name>(message: &M) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&dynamic(message)?)?)
}

/// Messages as a pretty JSON array.
pub fn pretty_array<M: Name>(messages: &[M]) -> anyhow::Result<String> {
    let messages = messages
        .iter()
        .map(dynamic)
        .collect::<anyhow::Result<Vec<_>>>()?;
    pretty_value(&messages)
}

/// Anything holding [`DynamicMessage`]s (which serialize as proto3 JSON) as
/// pretty JSON, indented by two spaces as grpcurl does.
pub fn pretty_value<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnel_proto::pbjson_types::{Duration, Timestamp};
    use tunnel_proto::v1::open_attached_response::Event;
    use tunnel_proto::v1::{
        ConnectionClosed, Endpoint, GetInfoResponse, ListResponse, OpenAttachedResponse, SshHost,
        Tunnel, TunnelCounters, TunnelKind, TunnelState, WatchResponse,
    };

    #[test]
    fn descriptors_include_the_well_known_types() {
        let pool = pool().unwrap();
        assert!(
            pool.get_message_by_name("google.protobuf.Timestamp")
                .is_some()
        );
        assert!(
            pool.get_message_by_name("google.protobuf.Duration")
                .is_some()
        );
        for name in [
            Tunnel::full_name(),
            SshHost::full_name(),
            ListResponse::full_name(),
            GetInfoResponse::full_name(),
            OpenAttachedResponse::full_name(),
            WatchResponse::full_name(),
        ] {
            assert!(pool.get_message_by_name(&name).is_some(), "{name}");
        }
    }

    #[test]
    fn timestamps_end_in_z_and_64_bit_ints_are_strings() {
        let tunnel = Tunnel {
            id: "t-1".into(),
            kind: TunnelKind::Local as i32,
            local: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 7777,
                ..Default::default()
            }),
            state: TunnelState::Open as i32,
            created_at: Some(Timestamp {
                seconds: 1_795_514_400, // 2026-11-24T10:00:00Z
                nanos: 123_000_000,
            }),
            counters: Some(TunnelCounters {
                total_connections: 3,
                bytes_to_target: 1229,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = pretty(&tunnel).unwrap();
        assert!(
            text.contains(r#""createdAt": "2026-11-24T10:00:00.123Z""#),
            "{text}"
        );
        assert!(text.contains(r#""bytesToTarget": "1229""#), "{text}");
        assert!(text.contains(r#""totalConnections": "3""#), "{text}");
        assert!(text.contains(r#""kind": "TUNNEL_KIND_LOCAL""#), "{text}");
        assert!(text.contains(r#""port": 7777"#), "{text}");
        // Defaults are left out: no host, no remote, no attached: false.
        assert!(!text.contains("host\": \"\""), "{text}");
        assert!(!text.contains("attached"), "{text}");
        assert!(!text.contains("activeConnections"), "{text}");
        // Pretty, two-space indent, fields in .proto order.
        assert!(
            text.starts_with("{\n  \"id\": \"t-1\",\n  \"kind\""),
            "{text}"
        );
    }

    #[test]
    fn whole_second_timestamps_have_no_fraction() {
        let info = GetInfoResponse {
            version: "0.1.0".into(),
            started_at: Some(Timestamp {
                seconds: 1_795_514_400,
                nanos: 0,
            }),
            pid: 42,
        };
        let value: serde_json::Value = serde_json::from_str(&pretty(&info).unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "version": "0.1.0",
                "startedAt": "2026-11-24T10:00:00Z",
                "pid": 42
            })
        );
    }

    #[test]
    fn stream_events_are_one_compact_line_with_durations_in_seconds() {
        let event = OpenAttachedResponse {
            event: Some(Event::ConnectionClosed(ConnectionClosed {
                connection_id: 1,
                peer: "127.0.0.1:50312".into(),
                bytes_to_target: 1229,
                bytes_from_target: 340,
                error: String::new(),
                duration: Some(Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                tunnel_id: "t-3".into(),
            })),
        };
        assert_eq!(
            compact(&event).unwrap(),
            r#"{"connectionClosed":{"connectionId":"1","peer":"127.0.0.1:50312","bytesToTarget":"1229","bytesFromTarget":"340","duration":"1.500s","tunnelId":"t-3"}}"#
        );
    }

    #[test]
    fn arrays_and_empty_messages() {
        assert_eq!(pretty_array::<Tunnel>(&[]).unwrap(), "[]");
        assert_eq!(pretty(&ListResponse::default()).unwrap(), "{}");
        let hosts_only = ListResponse {
            tunnels: vec![],
            hosts: vec![SshHost {
                name: "default".into(),
                ..Default::default()
            }],
        };
        let value: serde_json::Value = serde_json::from_str(&pretty(&hosts_only).unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({"hosts": [{"name": "default"}]}));
    }
}
