//! Who is calling: the identity the audit log names, found by the auth layer
//! and handed to the service in the request's extensions.

use std::fmt;

/// The strongest identity a request proved, and where it came from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who: `token:NAME`, `cert:SUBJECT`, `uid:N` or `peer:ADDR`.
    pub identity: Identity,
    /// The transport's view: `127.0.0.1:5555` or `unix uid=N pid=N`.
    pub peer: String,
}

/// How a caller was identified, strongest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A token from `--token-file`, by its name.
    Token(String),
    /// A client certificate signed by `--tls-client-ca`, by its subject.
    Certificate(String),
    /// A local user on the unix socket, by uid.
    UnixUser(u32),
    /// Nothing but the network address.
    Peer(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Token(name) => write!(f, "token:{name}"),
            Identity::Certificate(subject) => write!(f, "cert:{subject}"),
            Identity::UnixUser(uid) => write!(f, "uid:{uid}"),
            Identity::Peer(addr) => write!(f, "peer:{addr}"),
        }
    }
}

impl Caller {
    /// The caller of a request that went past no auth layer (embedders).
    pub fn unknown() -> Caller {
        Caller {
            identity: Identity::Peer("unknown".into()),
            peer: "unknown".into(),
        }
    }
}
