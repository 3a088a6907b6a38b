//! Loading the private key a host authenticates with.

use russh::keys::PrivateKey;

use super::{HostConfig, PassphraseSource};

use crate::{
    error::{Error, Result},
    sys::secret_file::{SecretFileError, read_private},
};

/// Reads and, if needed, decrypts the host's identity file.
pub fn load(host: &HostConfig) -> Result<PrivateKey> {
    let fail = |reason: String| Error::Identity {
        host: host.name.clone(),
        path: host.settings.identity.clone(),
        reason,
    };
    let passphrase = match &host.settings.passphrase {
        None => None,
        Some(PassphraseSource::File(p)) => {
            let text = read_private(p)
                .map_err(|e| fail(format!("passphrase file {}: {e}", p.display())))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        Some(PassphraseSource::Env(var)) => Some(std::env::var(var).map_err(|_| {
            fail(format!(
                "the passphrase variable {var} is not set in tunneld's environment"
            ))
        })?),
    };
    let text = read_private(&host.settings.identity).map_err(|e| match e {
        SecretFileError::NotFound => fail(
            "file not found; create a key with `ssh-keygen -t ed25519` or point --identity / identity at one".into(),
        ),
        // OpenSSH's words, so people find the fix they already know.
        too_open @ SecretFileError::TooOpen { .. } => {
            fail(format!("UNPROTECTED PRIVATE KEY FILE: {too_open}"))
        }
        other => fail(other.to_string()),
    })?;
    russh::keys::decode_secret_key(&text, passphrase.as_deref()).map_err(|e| match e {
        russh::keys::Error::KeyIsEncrypted => fail(
            "the key is passphrase-protected; give the passphrase with --passphrase-file, \
             TUNNELD_KEY_PASSPHRASE, or passphrase_file / passphrase_env in the config"
                .into(),
        ),
        other if passphrase.is_some() => fail(format!(
            "cannot decrypt or parse the key (wrong passphrase?): {other}"
        )),
        other => fail(format!(
            "cannot parse the key (expected an OpenSSH private key): {other}"
        )),
    })
}
