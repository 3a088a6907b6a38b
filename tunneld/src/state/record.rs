//! A persisted tunnel as the store keeps it: our own versioned JSON record,
//! so neither a change of redb's encoding nor of the API's messages can
//! change what an older run wrote. What a record holds is what the open
//! call needs to give the same tunnel again: the host, both ends with the
//! ports actually bound, the limits, the name and the id.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    policy::RemoteOpenPolicy,
    tunnel::{ConnectionLimits, Endpoint, ForwardSpec, LocalForwardSpec, RemoteForwardSpec},
};

/// The record format this tunneld writes and reads. A record of another
/// version is reported and kept, never rewritten or dropped.
pub(super) const RECORD_VERSION: u32 = 1;

/// One persisted tunnel.
#[derive(Debug, Clone)]
pub struct TunnelRecord {
    /// Its sequence number: the id is `t-SEQ`.
    pub seq: u64,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The host it runs over.
    pub host: String,
    /// The forward, with the ports actually bound.
    pub spec: ForwardSpec,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: u32,
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    host: String,
    forward: WireForward,
}

/// Only the version, read first, so a newer record is named as such rather
/// than failing on a field this tunneld does not know.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "direction", rename_all = "snake_case", deny_unknown_fields)]
enum WireForward {
    Local {
        listen: WireEndpoint,
        target: WireEndpoint,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_connections: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_timeout_ms: Option<u64>,
    },
    Remote {
        listen: WireEndpoint,
        target: WireEndpoint,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        permit_remote_open: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_connections: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_timeout_ms: Option<u64>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WireEndpoint {
    Tcp { host: String, port: u16 },
    Unix { path: String },
    Socks,
}

impl From<&Endpoint> for WireEndpoint {
    fn from(e: &Endpoint) -> Self {
        match e {
            Endpoint::Tcp { host, port } => WireEndpoint::Tcp {
                host: host.clone(),
                port: *port,
            },
            Endpoint::Unix { path } => WireEndpoint::Unix {
                path: path.to_string_lossy().into_owned(),
            },
            Endpoint::Socks => WireEndpoint::Socks,
        }
    }
}

impl From<WireEndpoint> for Endpoint {
    fn from(e: WireEndpoint) -> Self {
        match e {
            WireEndpoint::Tcp { host, port } => Endpoint::Tcp { host, port },
            WireEndpoint::Unix { path } => Endpoint::Unix {
                path: PathBuf::from(path),
            },
            WireEndpoint::Socks => Endpoint::Socks,
        }
    }
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl TunnelRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let forward = match &self.spec {
            ForwardSpec::Local(l) => WireForward::Local {
                listen: (&l.listen).into(),
                target: (&l.target).into(),
                max_connections: l.limits.max_connections,
                idle_timeout_ms: millis(l.limits.idle_timeout),
            },
            ForwardSpec::Remote(r) => WireForward::Remote {
                listen: (&r.listen).into(),
                target: (&r.target).into(),
                permit_remote_open: r.permit_remote_open.entries(),
                max_connections: r.limits.max_connections,
                idle_timeout_ms: millis(r.limits.idle_timeout),
            },
        };
        let wire = Wire {
            version: RECORD_VERSION,
            seq: self.seq,
            name: self.name.clone(),
            host: self.host.clone(),
            forward,
        };
        // Serialising plain strings and numbers to a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// A record from its bytes; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<TunnelRecord, String> {
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a tunnel record of any version: {e}"))?;
        if version.version != RECORD_VERSION {
            return Err(format!(
                "record format v{} (this tunneld reads v{RECORD_VERSION}); \
                 it was written by another version of tunneld",
                version.version
            ));
        }
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|e| format!("record format v{RECORD_VERSION} but unreadable: {e}"))?;
        let limits = |max_connections, idle_timeout_ms: Option<u64>| ConnectionLimits {
            max_connections,
            idle_timeout: idle_timeout_ms.map(Duration::from_millis),
        };
        let spec = match wire.forward {
            WireForward::Local {
                listen,
                target,
                max_connections,
                idle_timeout_ms,
            } => ForwardSpec::Local(LocalForwardSpec {
                listen: listen.into(),
                target: target.into(),
                limits: limits(max_connections, idle_timeout_ms),
            }),
            WireForward::Remote {
                listen,
                target,
                permit_remote_open,
                max_connections,
                idle_timeout_ms,
            } => ForwardSpec::Remote(RemoteForwardSpec {
                listen: listen.into(),
                target: target.into(),
                permit_remote_open: RemoteOpenPolicy::parse(&permit_remote_open)
                    .map_err(|e| format!("permit_remote_open: {e}"))?,
                limits: limits(max_connections, idle_timeout_ms),
            }),
        };
        if let Some(name) = &wire.name {
            tunnel_proto::name::check_tunnel_name(name)?;
        }
        Ok(TunnelRecord {
            seq: wire.seq,
            name: wire.name,
            host: wire.host,
            spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Endpoint {
        Endpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let records = [
            TunnelRecord {
                seq: 7,
                name: Some("db".into()),
                host: "bastion".into(),
                spec: ForwardSpec::Local(LocalForwardSpec {
                    listen: tcp("127.0.0.1", 15432),
                    target: tcp("db.internal", 5432),
                    limits: ConnectionLimits {
                        max_connections: Some(3),
                        idle_timeout: Some(Duration::from_millis(1500)),
                    },
                }),
            },
            TunnelRecord {
                seq: 9,
                name: None,
                host: "default".into(),
                spec: ForwardSpec::Remote(RemoteForwardSpec {
                    listen: Endpoint::Unix {
                        path: "/run/x.sock".into(),
                    },
                    target: Endpoint::Socks,
                    permit_remote_open: RemoteOpenPolicy::parse(&["localhost:80".into()])
                        .expect("rule"),
                    limits: ConnectionLimits::default(),
                }),
            },
        ];
        for r in records {
            let bytes = r.encode();
            let back = TunnelRecord::decode(&bytes).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
    }

    #[test]
    fn another_version_or_garbage_is_named() {
        let newer = br#"{"version":2,"seq":1,"host":"h","forward":{},"colour":"red"}"#;
        let e = TunnelRecord::decode(newer).unwrap_err();
        assert!(e.contains("format v2"), "{e}");
        let e = TunnelRecord::decode(b"\x00garbage").unwrap_err();
        assert!(e.contains("not a tunnel record"), "{e}");
        let bad_name = br#"{"version":1,"seq":1,"name":"T-1","host":"h","forward":{"direction":"local","listen":{"type":"socks"},"target":{"type":"socks"}}}"#;
        assert!(TunnelRecord::decode(bad_name).is_err());
    }
}
