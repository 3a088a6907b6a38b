//! How a gRPC client proves who it is to tunneld: an `authorization` header
//! (a bearer token from `--token-file`) and/or TLS with a client certificate
//! (`--tls-client-ca`).
//!
//! [`Credentials`] describes one way of calling; [`Auth`] is the tonic
//! interceptor that adds its header to every call. Tests build wrong
//! credentials on purpose (no token, a wrong one, a header that is not
//! `Bearer`, a certificate from another CA) and connect with
//! [`crate::daemon::connect_lazy`] to see what tunneld answers.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;

use crate::data::{hex, random_bytes};
use crate::pki::{CertFiles, write_file};

/// The name a client gives when it checks tunneld's certificate: the fixture
/// server certificates ([`crate::pki::Pki::server`]) are valid for it.
pub const TLS_SERVER_NAME: &str = "localhost";

/// A fresh random token: 48 hex characters (tunneld wants ≥ 16 printable).
pub fn new_token() -> String {
    hex(&random_bytes(24))
}

/// Writes a `--token-file`: one `NAME:TOKEN` line per entry, mode 0600.
pub fn write_token_file(path: &Path, tokens: &[(String, String)]) -> Result<()> {
    let mut text = String::from("# tunneld tokens (tests)\n");
    for (name, token) in tokens {
        text.push_str(&format!("{name}:{token}\n"));
    }
    write_file(path, text.as_bytes(), 0o600)
}

/// TLS as a client sees it: whom to trust, what to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA certificate (PEM) tunneld's certificate must chain to.
    pub ca: PathBuf,
    /// The client certificate and key to present, if any.
    pub identity: Option<CertFiles>,
    /// The name tunneld's certificate must be valid for.
    pub server_name: String,
}

impl ClientTls {
    /// Trusts `ca`, presents no certificate, checks the name `localhost`.
    pub fn trusting(ca: impl Into<PathBuf>) -> Self {
        ClientTls {
            ca: ca.into(),
            identity: None,
            server_name: TLS_SERVER_NAME.to_owned(),
        }
    }

    /// The same, presenting this client certificate.
    pub fn with_identity(mut self, identity: CertFiles) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The tonic TLS config for it (reads the PEM files).
    pub fn config(&self) -> Result<tonic::transport::ClientTlsConfig> {
        let ca = std::fs::read(&self.ca)
            .with_context(|| format!("reading CA certificate {}", self.ca.display()))?;
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name(self.server_name.clone());
        if let Some(id) = &self.identity {
            let cert = std::fs::read(&id.cert)
                .with_context(|| format!("reading {}", id.cert.display()))?;
            let key =
                std::fs::read(&id.key).with_context(|| format!("reading {}", id.key.display()))?;
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        Ok(config)
    }
}

/// What a client sends to prove who it is. The default is nothing: plain
/// TCP, no header. Its `Debug` hides the header's value, so a failing test
/// does not print a token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The whole `authorization` header value, e.g. `Bearer TOKEN`; tests
    /// may put anything here.
    pub authorization: Option<String>,
    /// TLS settings; `None` is plaintext.
    pub tls: Option<ClientTls>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self
            .authorization
            .as_deref()
            .map(|v| format!("{} <hidden>", v.split(' ').next().unwrap_or_default()));
        f.debug_struct("Credentials")
            .field("authorization", &scheme)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Credentials {
    /// No header, no TLS.
    pub fn none() -> Self {
        Credentials::default()
    }

    /// `authorization: Bearer TOKEN`.
    pub fn bearer(token: impl AsRef<str>) -> Self {
        Credentials::none().with_bearer(token)
    }

    /// The same with `authorization: Bearer TOKEN`.
    pub fn with_bearer(self, token: impl AsRef<str>) -> Self {
        self.with_authorization(format!("Bearer {}", token.as_ref()))
    }

    /// The same with this exact `authorization` header value.
    pub fn with_authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    /// The same without an `authorization` header.
    pub fn without_authorization(mut self) -> Self {
        self.authorization = None;
        self
    }

    /// The same over TLS.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The interceptor that sends these credentials' header.
    pub fn interceptor(&self) -> Result<Auth> {
        Auth::new(self.authorization.as_deref())
    }
}

/// A tonic interceptor that adds an `authorization` header to every call
/// (or nothing, when it has none).
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("header", &self.header.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Auth {
    /// Sends `authorization: VALUE` when `value` is given.
    pub fn new(value: Option<&str>) -> Result<Auth> {
        let header = match value {
            Some(v) => {
                ensure!(
                    v.bytes().all(|b| (0x20..0x7f).contains(&b)),
                    "an authorization header value must be printable ASCII"
                );
                Some(v.parse().context("authorization header value")?)
            }
            None => None,
        };
        Ok(Auth { header })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}
