//! A certificate authority of the test's own, made with rcgen: a CA, server
//! certificates for 127.0.0.1/localhost and client certificates by common
//! name, all as PEM files in a temp dir (keys mode 0600).
//!
//! Every [`Pki`] is a fresh CA with a fresh key, so a certificate from one is
//! a stranger to every other: that is how a test makes "a certificate signed
//! by another CA". Nothing here is ever written outside the temp dir, and no
//! key is checked in.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// The names every [`Pki::server`] certificate is valid for.
pub const SERVER_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// A certificate and its private key as PEM files, and the CA that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM, mode 0600).
    pub key: PathBuf,
    /// The certificate of the CA that signed it (PEM): what a peer must
    /// trust to accept it.
    pub ca: PathBuf,
}

/// A test certificate authority whose files live in a temp dir, removed when
/// dropped.
pub struct Pki {
    /// Signs the server and client certificates.
    issuer: Issuer<'static, KeyPair>,
    /// The CA's common name, for messages.
    name: String,
    ca_cert: PathBuf,
    /// Makes file names unique when a CN is asked for twice.
    issued: AtomicUsize,
    dir: TempDir,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("name", &self.name)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// A new CA named `tunneld test CA` in a new temp dir.
    pub fn new() -> Result<Pki> {
        Self::named("tunneld test CA")
    }

    /// A new CA with this common name in a new temp dir.
    pub fn named(name: &str) -> Result<Pki> {
        let dir = tempfile::Builder::new()
            .prefix("tunneld-pki-")
            .tempdir()
            .context("creating the PKI temp dir")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params.self_signed(&key).context("self-signing the CA")?;
        let ca_cert = dir.path().join("ca.crt");
        write_file(&ca_cert, cert.pem().as_bytes(), 0o644)?;
        write_file(
            &dir.path().join("ca.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        Ok(Pki {
            issuer: Issuer::new(params, key),
            name: name.to_owned(),
            ca_cert,
            issued: AtomicUsize::new(0),
            dir,
        })
    }

    /// The CA certificate (PEM): what `--tls-client-ca` and a client's
    /// `--tls-ca` name.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The temp dir holding every file of this CA.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate valid for [`SERVER_NAMES`] (CN `localhost`).
    pub fn server(&self) -> Result<CertFiles> {
        self.server_for(SERVER_NAMES)
    }

    /// A server certificate valid for these DNS names and IP addresses.
    pub fn server_for(&self, names: &[&str]) -> Result<CertFiles> {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)
            .with_context(|| format!("server certificate names {names:?}"))?;
        params.distinguished_name = dn(names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue("server", params)
    }

    /// A client certificate whose subject is `CN=cn` (tunneld names its
    /// caller `cert:CN=cn`).
    pub fn client(&self, cn: &str) -> Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&format!("client-{cn}"), params)
    }

    /// Signs `params` with a fresh key and writes `STEM-N.crt` and `STEM-N.key`.
    fn issue(&self, stem: &str, mut params: CertificateParams) -> Result<CertFiles> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().context("generating a certificate key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing {stem} with {}", self.name))?;
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let safe: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{safe}-{n}.crt")),
            key: self.dir.path().join(format!("{safe}-{n}.key")),
            ca: self.ca_cert.clone(),
        };
        write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(files)
    }
}

/// A subject with only a common name.
fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Creates `path` with `mode` (never wider, whatever the umask) and writes
/// `data`.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    //! The certificates checked by a real TLS stack (tonic's rustls), with a
    //! health service as the server: what tunneld's `--tls-*` flags will get.

    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::{Identity, Server, ServerTlsConfig};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;
    use crate::auth::{ClientTls, Credentials};
    use crate::daemon::{ApiAddr, channel_lazy};

    async fn serve_mtls(pki: &Pki) -> Result<std::net::SocketAddr> {
        let server = pki.server()?;
        let identity =
            Identity::from_pem(std::fs::read(&server.cert)?, std::fs::read(&server.key)?);
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(pki.ca_cert())?);
        let tls = ServerTlsConfig::new().identity(identity).client_ca_root(ca);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        let router = Server::builder().tls_config(tls)?.add_service(health);
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        Ok(addr)
    }

    async fn check(addr: std::net::SocketAddr, tls: ClientTls) -> Result<(), tonic::Status> {
        let creds = Credentials::none().with_tls(tls);
        let channel = channel_lazy(&ApiAddr::Tcp(addr), &creds).expect("channel");
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn client_certificates_of_the_ca_are_accepted_and_others_refused() -> Result<()> {
        let pki = Pki::new()?;
        let other = Pki::named("another CA")?;
        let addr = serve_mtls(&pki).await?;

        let good = ClientTls::trusting(pki.ca_cert()).with_identity(pki.client("alice")?);
        check(addr, good).await?;

        let stranger = ClientTls::trusting(pki.ca_cert()).with_identity(other.client("mallory")?);
        assert!(check(addr, stranger).await.is_err(), "a stranger's cert");
        assert!(
            check(addr, ClientTls::trusting(pki.ca_cert()))
                .await
                .is_err(),
            "no client cert"
        );
        let wrong_ca = ClientTls::trusting(other.ca_cert()).with_identity(pki.client("bob")?);
        assert!(check(addr, wrong_ca).await.is_err(), "server not trusted");
        Ok(())
    }

    #[test]
    fn keys_are_private_and_certificates_readable() -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let pki = Pki::new()?;
        let files = pki.client("alice")?;
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&files.key)?, 0o600);
        assert_eq!(mode(&files.cert)?, 0o644);
        assert_eq!(files.ca, pki.ca_cert());
        Ok(())
    }
}
