//! The bytes tunneld answers a request with, in the version the client
//! spoke.
//!
//! SOCKS4: `VN=0 CD DSTPORT DSTIP` (8 bytes). SOCKS5 (RFC 1928 section 6):
//! `VER=5 REP RSV=0 ATYP BND.ADDR BND.PORT`, with an IPv4 or IPv6 address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{Request, Version};

/// SOCKS4 CD: request granted.
const SOCKS4_GRANTED: u8 = 0x5A;
/// SOCKS4 CD: request rejected or failed; SOCKS4 has no finer code that
/// fits (0x5C and 0x5D are about identd).
pub(super) const SOCKS4_REJECTED: u8 = 0x5B;

/// SOCKS5 REP codes (RFC 1928 section 6).
pub(super) mod rep {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0x00;
    /// General SOCKS server failure.
    pub const GENERAL_FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 0x02;
    /// Network unreachable.
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 0x04;
    /// Connection refused.
    pub const CONNECTION_REFUSED: u8 = 0x05;
    /// TTL expired.
    pub const TTL_EXPIRED: u8 = 0x06;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// Why a CONNECT is refused once the request is read; each version has its
/// own code for it (SOCKS4 has one for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Policy forbids the target (SOCKS5 0x02).
    NotAllowed,
    /// No route to the target's network (SOCKS5 0x03).
    NetworkUnreachable,
    /// The target host cannot be reached or its name resolved (SOCKS5 0x04).
    HostUnreachable,
    /// The target refused the connection (SOCKS5 0x05).
    ConnectionRefused,
    /// The connect timed out (SOCKS5 0x06).
    TtlExpired,
    /// Anything else (SOCKS5 0x01).
    GeneralFailure,
}

impl Refusal {
    /// The SOCKS5 REP code.
    fn socks5_code(self) -> u8 {
        match self {
            Refusal::NotAllowed => rep::NOT_ALLOWED,
            Refusal::NetworkUnreachable => rep::NETWORK_UNREACHABLE,
            Refusal::HostUnreachable => rep::HOST_UNREACHABLE,
            Refusal::ConnectionRefused => rep::CONNECTION_REFUSED,
            Refusal::TtlExpired => rep::TTL_EXPIRED,
            Refusal::GeneralFailure => rep::GENERAL_FAILURE,
        }
    }
}

impl Request {
    /// Bytes of the success reply. `bound` is the address reported as BND
    /// (SOCKS5) / DSTIP+DSTPORT (SOCKS4, zeros unless it is IPv4); `None`
    /// reports 0.0.0.0:0, for a caller that has none (an SSH channel has no
    /// local address).
    pub fn success(&self, bound: Option<SocketAddr>) -> Vec<u8> {
        match self.version {
            Version::Socks4 | Version::Socks4a => socks4(SOCKS4_GRANTED, bound),
            Version::Socks5 => socks5(rep::SUCCEEDED, bound),
        }
    }

    /// Bytes of the failure reply for `refusal`, in this request's version.
    pub fn failure(&self, refusal: Refusal) -> Vec<u8> {
        match self.version {
            Version::Socks4 | Version::Socks4a => socks4(SOCKS4_REJECTED, None),
            Version::Socks5 => socks5(refusal.socks5_code(), None),
        }
    }
}

/// A SOCKS4 reply with code `cd`.
pub(super) fn socks4(cd: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let (ip, port) = match bound {
        Some(SocketAddr::V4(addr)) => (*addr.ip(), addr.port()),
        _ => (Ipv4Addr::UNSPECIFIED, 0),
    };
    let mut reply = vec![0, cd];
    reply.extend_from_slice(&port.to_be_bytes());
    reply.extend_from_slice(&ip.octets());
    reply
}

/// A SOCKS5 reply with code `rep`.
pub(super) fn socks5(rep: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let mut reply = vec![5, rep, 0];
    match bound.ip() {
        IpAddr::V4(ip) => {
            reply.push(1);
            reply.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            reply.push(4);
            reply.extend_from_slice(&ip.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    reply
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    fn request(version: Version) -> Request {
        Request {
            version,
            target: Target::Domain {
                name: "db".into(),
                port: 5432,
            },
        }
    }

    #[test]
    fn success_bytes() {
        let v4: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let cases: [(Version, Option<SocketAddr>, Vec<u8>); 8] = [
            (Version::Socks4, None, vec![0, 0x5A, 0, 0, 0, 0, 0, 0]),
            (
                Version::Socks4,
                Some(v4),
                vec![0, 0x5A, 0x1F, 0x90, 10, 1, 2, 3],
            ),
            (Version::Socks4, Some(v6), vec![0, 0x5A, 0, 0, 0, 0, 0, 0]),
            (
                Version::Socks4a,
                Some(v4),
                vec![0, 0x5A, 0x1F, 0x90, 10, 1, 2, 3],
            ),
            (Version::Socks5, None, vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
            (
                Version::Socks5,
                Some(v4),
                vec![5, 0, 0, 1, 10, 1, 2, 3, 0x1F, 0x90],
            ),
            (
                Version::Socks5,
                Some(v6),
                vec![
                    5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01,
                    0xBB,
                ],
            ),
            (
                Version::Socks5,
                Some("0.0.0.0:0".parse().unwrap()),
                vec![5, 0, 0, 1, 0, 0, 0, 0, 0, 0],
            ),
        ];
        for (version, bound, bytes) in cases {
            assert_eq!(
                request(version).success(bound),
                bytes,
                "{version:?} {bound:?}"
            );
        }
    }

    #[test]
    fn failure_bytes() {
        let cases = [
            (Refusal::GeneralFailure, 0x01),
            (Refusal::NotAllowed, 0x02),
            (Refusal::NetworkUnreachable, 0x03),
            (Refusal::HostUnreachable, 0x04),
            (Refusal::ConnectionRefused, 0x05),
            (Refusal::TtlExpired, 0x06),
        ];
        for (refusal, code) in cases {
            assert_eq!(
                request(Version::Socks5).failure(refusal),
                [5, code, 0, 1, 0, 0, 0, 0, 0, 0],
                "{refusal:?}"
            );
            for version in [Version::Socks4, Version::Socks4a] {
                assert_eq!(
                    request(version).failure(refusal),
                    [0, 0x5B, 0, 0, 0, 0, 0, 0],
                    "{version:?} {refusal:?}"
                );
            }
        }
    }
}
