//! Who may reach the API and how: tokens, TLS, the connection cap; built
//! from the API's flags.

use tonic::transport::ServerTlsConfig;

use super::{
    ApiFlags, TlsFiles, incoming,
    listen::{Exposure, ListenAddr},
};
use crate::{config::expand_home, grpc::AuthPolicy, grpc::tokens::TokenStore};

/// Who may reach the API and how: the auth policy, TLS if any, and how
/// many connections may be open at once.
#[derive(Debug)]
pub struct ApiAccess {
    /// Tokens and the unix socket's allowed uid.
    pub auth: AuthPolicy,
    /// TLS (and mTLS) for the listener.
    pub tls: Option<ServerTlsConfig>,
    /// API connections open at once (`--max-api-connections`); past it a
    /// new one is closed at once.
    pub max_connections: usize,
}

impl ApiAccess {
    /// No token, no TLS: for loopback and unix listeners (the unix socket's
    /// peer must still be tunneld's user or root).
    pub fn local() -> Self {
        ApiAccess {
            auth: AuthPolicy {
                tokens: None,
                owner_uid: rustix::process::geteuid().as_raw(),
            },
            tls: None,
            max_connections: incoming::default_max_api_connections(
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(soft, _)| soft)
                    .unwrap_or(1024),
            ),
        }
    }

    /// Who may call the API, from the flags; also says whether that protects
    /// a non-loopback listener.
    pub fn from_flags(flags: &ApiFlags) -> Result<(ApiAccess, Exposure), String> {
        let tokens = match &flags.token_file {
            Some(path) => Some(TokenStore::load(&expand_home(path))?),
            None => None,
        };
        let tls = match (&flags.tls_cert, &flags.tls_key) {
            (Some(cert), Some(key)) => {
                if matches!(flags.listen, ListenAddr::Unix(_)) {
                    return Err(
                        "--tls-cert is for TCP listeners; a unix socket is already private to its owner".into(),
                    );
                }
                Some(
                    TlsFiles {
                        cert: expand_home(cert),
                        key: expand_home(key),
                        client_ca: flags.tls_client_ca.as_deref().map(expand_home),
                    }
                    .load()?,
                )
            }
            _ => None,
        };
        let exposure = Exposure::from_flags(
            tls.is_some(),
            flags.tls_client_ca.is_some() || tokens.is_some(),
            flags.insecure_listen,
        );
        match (&tokens, &flags.listen) {
            (Some(tokens), _) => tracing::info!(
                tokens = tokens.current().len(),
                file = %tokens.path().display(),
                "API calls need a token (SIGHUP reloads the file)"
            ),
            (None, ListenAddr::Tcp(_)) if tls.is_none() || flags.tls_client_ca.is_none() => {
                tracing::info!(
                    "the API has no client authentication: any local user can call it; \
                     on a shared machine use --listen unix:/PATH or --token-file"
                )
            }
            _ => {}
        }
        let mut access = ApiAccess::local();
        access.auth.tokens = tokens;
        access.tls = tls;
        if let Some(n) = flags.max_api_connections {
            access.max_connections = n;
        }
        Ok((access, exposure))
    }
}
