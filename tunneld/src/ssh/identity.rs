//! Loading the identity files a host names: the private key, or only its
//! public half when it is passphrase-protected and no passphrase was
//! given (the agent may hold it), and the certificates that go with it.

use std::path::{Path, PathBuf};

use russh::keys::{
    PrivateKey, PublicKey,
    ssh_key::{self, Certificate},
};

use super::PassphraseSource;
use crate::sys::secret_file::{SecretFileError, read_private};

/// What an identity file gave.
pub enum Loaded {
    /// The private key, decrypted.
    Key(Box<PrivateKey>),
    /// Only the public key: the file is passphrase-protected and no
    /// passphrase was given. `why` says how to give one.
    Locked {
        /// The key's public half.
        public: PublicKey,
        /// Why the private half is not usable, for messages.
        why: String,
    },
}

/// Why an identity file gave nothing.
pub enum Unusable {
    /// There is no such file.
    Missing,
    /// The file exists but cannot be used; the reason says how to fix it.
    Broken(String),
}

/// Reads `path` and decrypts it with `passphrase` if it needs one.
pub fn load(path: &Path, passphrase: Option<&PassphraseSource>) -> Result<Loaded, Unusable> {
    let text = read_private(path).map_err(|e| match e {
        SecretFileError::NotFound => Unusable::Missing,
        // OpenSSH's words, so people find the fix they already know.
        too_open @ SecretFileError::TooOpen { .. } => {
            Unusable::Broken(format!("UNPROTECTED PRIVATE KEY FILE: {too_open}"))
        }
        other => Unusable::Broken(other.to_string()),
    })?;
    let passphrase = read_passphrase(passphrase).map_err(Unusable::Broken)?;
    match russh::keys::decode_secret_key(&text, passphrase.as_deref()) {
        Ok(key) => Ok(Loaded::Key(Box::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            // An OpenSSH key keeps its public half in the clear.
            let public = PrivateKey::from_openssh(&text)
                .map(|k| k.public_key().clone())
                .map_err(|e| Unusable::Broken(format!("cannot parse the key: {e}")))?;
            Ok(Loaded::Locked {
                public,
                why: "the key is passphrase-protected; add it to the ssh-agent (ssh-add), \
                      or give the passphrase with --passphrase-file, TUNNELD_KEY_PASSPHRASE, \
                      or passphrase_file / passphrase_env in the config"
                    .into(),
            })
        }
        Err(other) if passphrase.is_some() => Err(Unusable::Broken(format!(
            "cannot decrypt or parse the key (wrong passphrase?): {other}"
        ))),
        Err(other) => Err(Unusable::Broken(format!(
            "cannot parse the key (expected an OpenSSH private key): {other}"
        ))),
    }
}

/// The passphrase `source` holds.
fn read_passphrase(source: Option<&PassphraseSource>) -> Result<Option<String>, String> {
    match source {
        None => Ok(None),
        Some(PassphraseSource::File(p)) => {
            let text =
                read_private(p).map_err(|e| format!("passphrase file {}: {e}", p.display()))?;
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
        Some(PassphraseSource::Env(var)) => std::env::var(var).map(Some).map_err(|_| {
            format!("the passphrase variable {var} is not set in tunneld's environment")
        }),
    }
}

/// The public key in `KEY.pub`, if that file exists and holds one: what
/// an identity whose private half lives only in the agent is known by.
pub fn load_public(identity: &Path) -> Option<PublicKey> {
    let mut name = identity.as_os_str().to_os_string();
    name.push(".pub");
    let text = std::fs::read_to_string(PathBuf::from(name)).ok()?;
    PublicKey::from_openssh(text.trim()).ok()
}

/// `KEY-cert.pub`, the certificate OpenSSH offers with identity `KEY`.
pub fn certificate_path(identity: &Path) -> PathBuf {
    let mut name = identity.as_os_str().to_os_string();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// Reads an OpenSSH certificate (`ssh-keygen -s` output); `Ok(None)` when
/// the file does not exist.
pub fn load_certificate(path: &Path) -> Result<Option<Certificate>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("certificate {}: {e}", path.display())),
    };
    Certificate::from_openssh(text.trim())
        .map(Some)
        .map_err(|e: ssh_key::Error| {
            format!(
                "certificate {}: not an OpenSSH certificate: {e}",
                path.display()
            )
        })
}
