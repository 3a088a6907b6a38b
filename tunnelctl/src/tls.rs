//! TLS to tunneld: the CA, client certificate and server name from
//! `--tls-*`, read and checked before any connection, and TLS failures
//! explained — which side refused what, and which flag fixes it.
//!
//! tonic does the TLS (rustls with ring). Without `--tls-ca` the system's
//! roots are trusted; with it, only that CA.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, CertificateError};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// What `--tls-*` asked for, read and checked.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// The CA bundle (PEM) trusted for tunneld's certificate; `None`: the
    /// system's roots.
    ca: Option<Certificate>,
    /// The client certificate and key (PEM) shown to a tunneld started with
    /// `--tls-client-ca`.
    identity: Option<Identity>,
    /// The name tunneld's certificate is checked against, when not the
    /// address's host.
    server_name: Option<String>,
}

impl fmt::Debug for TlsSettings {
    // By hand: `Identity` would print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsSettings {
    /// Reads the files named by `--tls-ca` and `--tls-cert`/`--tls-key`
    /// (clap makes sure the last two come together) and checks what they
    /// hold, so a wrong file is named now rather than as a failed handshake.
    pub fn load(
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
        server_name: Option<&str>,
    ) -> anyhow::Result<TlsSettings> {
        let ca = ca
            .map(|path| read_certificates(path, "--tls-ca").map(Certificate::from_pem))
            .transpose()?;
        let identity = client
            .map(|(cert, key)| {
                let cert = read_certificates(cert, "--tls-cert")?;
                let key = read_key(key)?;
                Ok::<_, anyhow::Error>(Identity::from_pem(cert, key))
            })
            .transpose()?;
        if let Some(name) = server_name
            && ServerName::try_from(name).is_err()
        {
            bail!(
                "--tls-server-name {name:?} is neither a DNS name nor an IP address; use a name \
                 tunneld's certificate lists"
            );
        }
        Ok(TlsSettings {
            ca,
            identity,
            server_name: server_name.map(str::to_string),
        })
    }

    /// Whether a client certificate is configured.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether `--tls-ca` is given (else the system's roots are used).
    pub fn has_ca(&self) -> bool {
        self.ca.is_some()
    }

    /// The configuration tonic connects with.
    pub fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(ca.clone()),
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        config
    }
}

/// Reads a PEM file that must hold at least one certificate.
fn read_certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    let mut certificates = CertificateDer::pem_slice_iter(&pem);
    match certificates.next() {
        Some(Ok(_)) => Ok(pem),
        Some(Err(err)) => Err(anyhow!(
            "{flag} {} is not valid PEM ({err}); it must hold \
             -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )),
        None => Err(anyhow!(
            "{flag} {} holds no certificate; it must hold -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )),
    }
}

/// Reads the client's private key (PEM: PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --tls-key {}", path.display()))?;
    // The error would quote nothing secret, but a key file deserves a
    // message that quotes nothing at all.
    if PrivateKeyDer::from_pem_slice(&pem).is_err() {
        bail!(
            "--tls-key {} holds no private key; it must hold a -----BEGIN PRIVATE KEY----- \
             block (or RSA/EC PRIVATE KEY)",
            path.display()
        );
    }
    Ok(pem)
}

/// What went wrong, when a TLS failure is under `err`: one clause saying
/// why and one saying what to do. `None` when `err` has nothing to do with
/// TLS, or `tls` is `None` (no TLS in use).
pub fn explain(
    err: &(dyn StdError + 'static),
    shown: &str,
    tls: Option<&TlsSettings>,
) -> Option<String> {
    let tls = tls?;
    let failure = match find::<rustls::Error>(err) {
        Some(failure) => failure.clone(),
        // An alert that arrives after the handshake reaches us through h2,
        // which keeps only its text.
        None => rustls::Error::AlertReceived(alert_in(err)?),
    };
    let hint = hint(&failure, tls);
    Some(format!(
        "TLS handshake with {shown} failed: {failure}; {hint}"
    ))
}

/// What to say when tunneld closed a TLS connection before answering any
/// call without saying why: with TLS 1.3 a refused client certificate often
/// looks like that, the alert lost as the connection is torn down.
pub fn unanswered_hint(tls: &TlsSettings) -> &'static str {
    if tls.has_client_certificate() {
        "tunneld may not accept this client certificate: --tls-cert must be signed by the CA in \
         its --tls-client-ca"
    } else {
        "tunneld may require a client certificate (--tls-cert/--tls-key) signed by its \
         --tls-client-ca"
    }
}

/// What to do about one TLS failure.
fn hint(failure: &rustls::Error, tls: &TlsSettings) -> String {
    use rustls::Error::*;
    let trust = if tls.has_ca() {
        "--tls-ca must name the CA that signed tunneld's certificate (its --tls-cert)"
    } else {
        "tunneld's certificate is not signed by a CA this system trusts: pass --tls-ca FILE \
         naming the CA that signed it"
    };
    match failure {
        InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            trust.into()
        }
        InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "tunneld's certificate does not name the host in --addr: pass --tls-server-name \
              with a name it lists"
            .into(),
        InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "tunneld's certificate is outside its validity period: renew it, or check this \
              machine's clock"
            .into(),
        AlertReceived(alert) if refuses_client(*alert) => {
            if tls.has_client_certificate() {
                "tunneld refused this client certificate: --tls-cert must be signed by the CA \
                 in tunneld's --tls-client-ca"
                    .into()
            } else {
                "tunneld requires a client certificate: pass --tls-cert and --tls-key with one \
                 signed by the CA in its --tls-client-ca"
                    .into()
            }
        }
        InvalidMessage(_) | InappropriateMessage { .. } | InappropriateHandshakeMessage { .. } => {
            "tunneld does not seem to serve TLS there: drop https:// and the --tls-* flags (and \
             TUNNELD_TLS_*), or check the port"
                .into()
        }
        _ => format!(
            "tunneld may require a client certificate (--tls-cert/--tls-key) signed by its \
             --tls-client-ca, and {}",
            if tls.has_ca() {
                "--tls-ca must name the CA that signed tunneld's certificate"
            } else {
                "--tls-ca FILE must name the CA that signed tunneld's certificate unless a \
                 public CA did"
            }
        ),
    }
}

/// The alerts by which tunneld says it did not accept (or did not get) the
/// client's certificate.
const CLIENT_REFUSALS: &[AlertDescription] = &[
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::CertificateRevoked,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateUnknown,
    AlertDescription::UnknownCA,
    AlertDescription::AccessDenied,
    AlertDescription::HandshakeFailure,
    AlertDescription::DecryptError,
];

/// Whether an alert from tunneld says it did not accept (or did not get)
/// the client's certificate.
fn refuses_client(alert: AlertDescription) -> bool {
    CLIENT_REFUSALS.contains(&alert)
}

/// One of [`CLIENT_REFUSALS`] named in the text of an error in `err`'s
/// chain, as rustls words it.
fn alert_in(err: &(dyn StdError + 'static)) -> Option<AlertDescription> {
    let texts = chain(err).map(|e| e.to_string()).collect::<Vec<_>>();
    CLIENT_REFUSALS.iter().copied().find(|alert| {
        let said = rustls::Error::AlertReceived(*alert).to_string();
        texts.iter().any(|t| t.contains(&said))
    })
}

/// `err` and its sources, with the errors `io::Error`s wrap (which their
/// `source` skips).
fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut stack = vec![err];
    std::iter::from_fn(move || {
        let e = stack.pop()?;
        if let Some(next) = e.source() {
            stack.push(next);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            stack.push(inner);
        }
        Some(e)
    })
}

/// The first error of type `E` in `err`'s [`chain`].
fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    chain(err).find_map(|e| e.downcast_ref::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ca: bool, client: bool) -> TlsSettings {
        TlsSettings {
            ca: ca.then(|| Certificate::from_pem("x")),
            identity: client.then(|| Identity::from_pem("x", "KEY-MATERIAL")),
            server_name: None,
        }
    }

    /// A TLS failure wrapped as tokio-rustls and tonic wrap it.
    fn wrapped(failure: rustls::Error) -> anyhow::Error {
        anyhow::Error::new(io::Error::new(io::ErrorKind::InvalidData, failure))
            .context("transport error")
    }

    fn explained(failure: rustls::Error, tls: &TlsSettings) -> String {
        explain(wrapped(failure).as_ref(), "127.0.0.1:4522", Some(tls)).unwrap()
    }

    #[test]
    fn missing_client_certificate_says_which_flags() {
        let m = explained(
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            &settings(true, false),
        );
        assert!(
            m.starts_with("TLS handshake with 127.0.0.1:4522 failed: received fatal alert"),
            "{m}"
        );
        assert!(m.contains("requires a client certificate: pass --tls-cert and --tls-key"));
        let m = explained(
            rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            &settings(true, true),
        );
        assert!(m.contains("refused this client certificate"), "{m}");
    }

    #[test]
    fn an_alert_known_only_by_its_text_is_explained() {
        // What h2 hands on: an io::Error made from the rustls error's text.
        let text = rustls::Error::AlertReceived(AlertDescription::UnknownCA).to_string();
        let err = anyhow::Error::new(io::Error::new(io::ErrorKind::InvalidData, text))
            .context("connection error");
        let m = explain(err.as_ref(), "127.0.0.1:4522", Some(&settings(true, true))).unwrap();
        assert!(m.contains("refused this client certificate"), "{m}");
        assert!(explain(err.as_ref(), "127.0.0.1:4522", None).is_none());
    }

    #[test]
    fn unknown_server_ca_points_at_tls_ca() {
        let failure = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let m = explained(failure(), &settings(true, false));
        assert!(m.contains("--tls-ca must name the CA"), "{m}");
        let m = explained(failure(), &settings(false, false));
        assert!(m.contains("not signed by a CA this system trusts"), "{m}");
        let m = explained(
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            &settings(true, false),
        );
        assert!(m.contains("--tls-server-name"), "{m}");
    }

    #[test]
    fn tls_to_a_plaintext_server_says_to_drop_tls() {
        let m = explained(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            &settings(true, false),
        );
        assert!(m.contains("does not seem to serve TLS"), "{m}");
    }

    #[test]
    fn other_errors_are_not_tls() {
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(explain(err.as_ref(), "x:1", Some(&settings(true, false))).is_none());
        // A rustls error is only blamed on TLS when TLS is in use.
        let err = wrapped(rustls::Error::DecryptError);
        assert!(explain(err.as_ref(), "x:1", None).is_none());
    }

    #[test]
    fn files_are_checked_when_loaded() {
        let dir = std::env::temp_dir().join(format!("tunnelctl-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = format!(
            "{:#}",
            TlsSettings::load(Some(&junk), None, None).unwrap_err()
        );
        assert!(
            err.contains("--tls-ca") && err.contains("holds no certificate"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            TlsSettings::load(None, Some((&junk, &junk)), None).unwrap_err()
        );
        assert!(err.contains("--tls-cert"), "{err}");
        let missing = dir.join("missing.pem");
        let err = format!(
            "{:#}",
            TlsSettings::load(Some(&missing), None, None).unwrap_err()
        );
        assert!(err.starts_with("cannot read --tls-ca "), "{err}");
        let err = format!(
            "{:#}",
            TlsSettings::load(None, None, Some("not a name!")).unwrap_err()
        );
        assert!(err.contains("--tls-server-name"), "{err}");
        assert!(TlsSettings::load(None, None, Some("localhost")).is_ok());
        assert!(TlsSettings::load(None, None, Some("127.0.0.1")).is_ok());
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", settings(true, true));
        assert!(shown.contains("client_certificate: true"), "{shown}");
        assert!(!shown.contains("KEY-MATERIAL"), "{shown}");
    }
}
