//! A persisted host (`tunnelctl host add --persist`) as the store keeps it:
//! what was asked (the destination, the key and known_hosts files named,
//! the jump hosts), never what it resolved to, so ssh_config and tunneld's
//! flags apply afresh at every start; and never a secret: keys stay in
//! their files. Our own versioned JSON, as tunnels' records.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The host record format this tunneld writes and reads; another version
/// is reported and kept, never rewritten or dropped.
const HOST_RECORD_VERSION: u32 = 1;

/// One persisted host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// Its name.
    pub name: String,
    /// `[user@]host[:port]` or an ssh_config alias.
    pub ssh: String,
    /// The private key file named, if any.
    pub identity: Option<PathBuf>,
    /// The known_hosts file named, if any.
    pub known_hosts: Option<PathBuf>,
    /// Jump hosts as `ssh -J` takes them, if given.
    pub jump: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    version: u32,
    name: String,
    ssh: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    known_hosts: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jump: Option<String>,
}

/// Only the version, read first (see `record.rs`).
#[derive(Deserialize)]
struct Version {
    version: u32,
}

impl HostRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            version: HOST_RECORD_VERSION,
            name: self.name.clone(),
            ssh: self.ssh.clone(),
            identity: self.identity.clone(),
            known_hosts: self.known_hosts.clone(),
            jump: self.jump.clone(),
        };
        // Plain strings to a Vec: cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// A record from its bytes; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<HostRecord, String> {
        let version: Version = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a host record of any version: {e}"))?;
        if version.version != HOST_RECORD_VERSION {
            return Err(format!(
                "host record format v{} (this tunneld reads v{HOST_RECORD_VERSION}); \
                 it was written by another version of tunneld",
                version.version
            ));
        }
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| {
            format!("host record format v{HOST_RECORD_VERSION} but unreadable: {e}")
        })?;
        tunnel_proto::name::check_host_name(&w.name)?;
        Ok(HostRecord {
            name: w.name,
            ssh: w.ssh,
            identity: w.identity,
            known_hosts: w.known_hosts,
            jump: w.jump,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written_and_others_are_named() {
        for r in [
            HostRecord {
                name: "db.internal".into(),
                ssh: "deploy@[::1]:2222".into(),
                identity: Some("/keys/id".into()),
                known_hosts: Some("/keys/kh".into()),
                jump: Some("bastion,u@mid".into()),
            },
            HostRecord {
                name: "plain".into(),
                ssh: "alias".into(),
                identity: None,
                known_hosts: None,
                jump: None,
            },
        ] {
            assert_eq!(HostRecord::decode(&r.encode()), Ok(r));
        }
        let e = HostRecord::decode(br#"{"version":2,"name":"x","ssh":"y","more":1}"#).unwrap_err();
        assert!(e.contains("format v2"), "{e}");
        assert!(
            HostRecord::decode(b"junk")
                .unwrap_err()
                .contains("not a host record")
        );
        assert!(HostRecord::decode(br#"{"version":1,"name":"-x","ssh":"y"}"#).is_err());
    }
}
