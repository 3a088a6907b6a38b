//! TLS for the API (`--tls-cert`, `--tls-key`, `--tls-client-ca`), with
//! rustls through tonic. With a client CA, a client must present a
//! certificate it signed or the handshake fails; its subject then names
//! the caller in the audit log.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::sys::secret_file::read_private;

/// Where the server's certificate, key and (for mTLS) client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server; must be private to its owner.
    pub key: PathBuf,
    /// PEM CA bundle client certificates must chain to; `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into a server TLS configuration.
    pub fn load(&self) -> Result<ServerTlsConfig, String> {
        let cert = read_pem(&self.cert, "--tls-cert", "CERTIFICATE")?;
        let key = read_private(&self.key)
            .map_err(|e| format!("--tls-key {}: {e}", self.key.display()))?;
        if !key.contains("PRIVATE KEY-----") {
            return Err(format!(
                "--tls-key {}: no PEM private key in it",
                self.key.display()
            ));
        }
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read_pem(ca, "--tls-client-ca", "CERTIFICATE")?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(config)
    }
}

fn read_pem(path: &Path, flag: &str, label: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if !text.contains(&format!("-----BEGIN {label}-----")) {
        return Err(format!("{flag} {}: no PEM {label} in it", path.display()));
    }
    Ok(text)
}
