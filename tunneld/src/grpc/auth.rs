//! The auth layer: a tower layer in front of every service that decides who
//! may call, before any handler runs.
//!
//! - On the unix socket, the peer's uid (SO_PEERCRED) must be tunneld's own
//!   or root's, as OpenSSH's mux socket demands. The socket's mode (0600)
//!   already keeps others out; this holds even if that mode is changed.
//! - With `--token-file`, every call but `grpc.health.v1.Health` must carry
//!   `authorization: Bearer <token>` naming one of the tokens.
//! - A client certificate (mTLS) is checked by the TLS handshake itself;
//!   here its subject only names the caller.
//!
//! The caller found is put into the request's extensions as a [`Caller`]
//! for the audit log; a refused call is audited here.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use tonic::{
    Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo},
};
use tower::{Layer, Service};

use super::{
    audit,
    caller::{Caller, Identity},
};
use crate::grpc::tokens::TokenStore;

/// Path prefix of the health service, which needs no token so that probes
/// and load balancers can ask.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Who may call.
#[derive(Debug)]
pub struct AuthPolicy {
    /// Tokens, if calls need one (reloadable).
    pub tokens: Option<TokenStore>,
    /// The uid allowed on the unix socket besides root: tunneld's own.
    pub owner_uid: u32,
}

/// The tower layer enforcing an [`AuthPolicy`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    policy: Arc<AuthPolicy>,
}

impl AuthLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: AuthPolicy) -> Self {
        AuthLayer {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    policy: Arc<AuthPolicy>,
}

impl<S, B> Service<http::Request<B>> for Auth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, std::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.policy.admit(&req) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Either::Left(self.inner.call(req))
            }
            Err(status) => Either::Right(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl AuthPolicy {
    /// The caller of `req`, or the status refusing it (audited).
    fn admit<B>(&self, req: &http::Request<B>) -> Result<Caller, Status> {
        let path = req.uri().path();
        let ext = req.extensions();
        let mut caller = Caller::unknown();
        let refuse = |caller: &Caller, status: Status| {
            audit::refused(path, caller, status.code(), status.message());
            Err(status)
        };

        if let Some(uds) = ext.get::<UdsConnectInfo>() {
            let Some(cred) = uds.peer_cred else {
                return refuse(
                    &caller,
                    Status::permission_denied(
                        "tunneld cannot tell which user is calling on its socket, so it refuses the call",
                    ),
                );
            };
            let uid = cred.uid();
            caller.peer = match cred.pid() {
                Some(pid) => format!("unix uid={uid} pid={pid}"),
                None => format!("unix uid={uid}"),
            };
            caller.identity = Identity::UnixUser(uid);
            if uid != self.owner_uid && uid != 0 {
                return refuse(
                    &caller,
                    Status::permission_denied(format!(
                        "uid {uid} may not use this tunneld: only uid {} (the user tunneld runs as) and root may connect to its socket",
                        self.owner_uid
                    )),
                );
            }
        } else if let Some(addr) = ext.get::<TcpConnectInfo>().and_then(|t| t.remote_addr()) {
            caller.peer = addr.to_string();
            caller.identity = Identity::Peer(addr.to_string());
        }
        if let Some(subject) = ext
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|tls| tls.peer_certs())
            .and_then(|certs| certs.first().and_then(|c| subject_of(c.as_ref())))
        {
            caller.identity = Identity::Certificate(subject);
        }

        if let Some(tokens) = &self.tokens
            && !path.starts_with(HEALTH_PREFIX)
        {
            match bearer(req) {
                Bearer::Missing => {
                    return refuse(
                        &caller,
                        Status::unauthenticated(
                            "this tunneld requires a token: send the header \"authorization: Bearer <token>\" \
                             (tunnelctl: set TUNNELD_TOKEN or --token-file)",
                        ),
                    );
                }
                Bearer::Malformed => {
                    return refuse(
                        &caller,
                        Status::unauthenticated(
                            "the authorization header must be \"Bearer <token>\"",
                        ),
                    );
                }
                Bearer::Token(token) => match tokens.current().verify(token) {
                    Some(name) => caller.identity = Identity::Token(name.to_string()),
                    None => {
                        return refuse(
                            &caller,
                            Status::unauthenticated(
                                "the token was not accepted: use a token listed in tunneld's --token-file \
                                 (tunnelctl: TUNNELD_TOKEN or --token-file)",
                            ),
                        );
                    }
                },
            }
        }
        Ok(caller)
    }
}

/// What the authorization header holds.
enum Bearer<'a> {
    Missing,
    Malformed,
    Token(&'a str),
}

fn bearer<B>(req: &http::Request<B>) -> Bearer<'_> {
    let Some(value) = req.headers().get(http::header::AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let Ok(text) = value.to_str() else {
        return Bearer::Malformed;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1).
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Bearer::Token(token.trim())
        }
        _ => Bearer::Malformed,
    }
}

/// The subject of a DER certificate, as `CN=alice, O=example`.
fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}
