//! What a connection authenticates with, and the authentication itself, in
//! OpenSSH's order: the host's identity files first (signed by the agent
//! when it holds the key, else from the file), each with its certificates
//! ahead of the bare key, then the agent's other keys and certificates
//! unless `IdentitiesOnly`. Neither dialling nor the handshake knows which
//! of them is used.

use std::sync::Arc;

use russh::{
    MethodKind,
    client::{AuthResult, Handle},
    keys::{
        HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, agent::AgentIdentity,
        ssh_key::Certificate,
    },
};

use super::{
    HostConfig,
    agent::Agent,
    handler::{ClientHandler, describe_russh_error},
    identity::{self, Loaded, Unusable},
};
use crate::error::{Error, Result};

/// Who signs for an offered key.
enum Signer {
    /// The decrypted key, read from a file.
    File(Arc<PrivateKey>),
    /// The agent, which holds the key.
    Agent,
}

/// One key or certificate offered to the server.
struct Offer {
    /// The bare key, or the certificate that carries it.
    shown: Shown,
    signer: Signer,
    /// Where it came from, for messages (a path, or the agent's comment).
    label: String,
}

/// What the server sees of an offer.
enum Shown {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

impl Offer {
    fn public_key(&self) -> PublicKey {
        match &self.shown {
            Shown::Key(k) => k.clone(),
            Shown::Certificate(c) => PublicKey::from(c.public_key().clone()),
        }
    }

    fn describe(&self) -> String {
        let key = self.public_key();
        let kind = match &self.shown {
            Shown::Key(_) => key.algorithm().to_string(),
            Shown::Certificate(_) => format!("{} certificate", key.algorithm()),
        };
        format!(
            "{} ({kind} {})",
            self.label,
            key.fingerprint(HashAlg::Sha256)
        )
    }
}

/// The credentials one connection offers the server.
pub struct Credentials {
    offers: Vec<Offer>,
    agent: Option<Agent>,
    /// What could not be offered and why, for the error when nothing works.
    skipped: Vec<String>,
}

impl Credentials {
    /// The credentials `host`'s settings name, read (and decrypted) now, so
    /// that nothing usable fails before any network traffic.
    pub async fn load(host: &HostConfig) -> Result<Self> {
        let settings = &host.settings;
        let mut skipped = Vec::new();
        let mut agent = match Agent::socket_of(&settings.agent) {
            None => None,
            Some(socket) => match Agent::connect(&socket).await {
                Ok(agent) => Some(agent),
                Err(reason) => {
                    tracing::info!(host = %host.name, "{reason}; using key files only");
                    skipped.push(reason);
                    None
                }
            },
        };
        let held = match agent.as_mut() {
            None => Vec::new(),
            Some(a) => match a.identities().await {
                Ok(list) => list,
                Err(reason) => {
                    tracing::info!(host = %host.name, "{reason}; using key files only");
                    skipped.push(reason);
                    agent = None;
                    Vec::new()
                }
            },
        };
        let in_agent = |key: &PublicKey| {
            held.iter()
                .any(|h| matches!(h, AgentIdentity::PublicKey { key: k, .. } if k.key_data() == key.key_data()))
        };

        let mut certificates = Vec::new();
        for path in &settings.certificates {
            match identity::load_certificate(path) {
                Ok(Some(cert)) => certificates.push((cert, path.display().to_string())),
                Ok(None) => skipped.push(format!("certificate {}: not found", path.display())),
                Err(reason) => skipped.push(reason),
            }
        }

        let mut offers: Vec<Offer> = Vec::new();
        for path in &settings.identities {
            let label = path.display().to_string();
            let (public, signer) = match identity::load(path, settings.passphrase.as_ref()) {
                Ok(Loaded::Key(key)) => {
                    let public = key.public_key().clone();
                    let signer = if in_agent(&public) {
                        Signer::Agent
                    } else {
                        Signer::File(Arc::new(*key))
                    };
                    (public, signer)
                }
                Ok(Loaded::Locked { public, why }) => {
                    if in_agent(&public) {
                        (public, Signer::Agent)
                    } else {
                        tracing::info!(host = %host.name, identity = %label,
                            "skipping a passphrase-protected key: {why}");
                        skipped.push(format!("identity file {label}: {why}"));
                        continue;
                    }
                }
                Err(Unusable::Missing) => {
                    // Only `KEY.pub` on disk: the agent holds the key.
                    if let Some(public) = identity::load_public(path).filter(|k| in_agent(k)) {
                        (public, Signer::Agent)
                    } else {
                        if !settings.default_identities {
                            tracing::info!(host = %host.name, identity = %label, "identity file not found; skipped");
                            skipped.push(format!("identity file {label}: not found"));
                        }
                        continue;
                    }
                }
                Err(Unusable::Broken(reason)) => {
                    tracing::warn!(host = %host.name, identity = %label, "identity file skipped: {reason}");
                    skipped.push(format!("identity file {label}: {reason}"));
                    continue;
                }
            };
            // Its certificates first: `KEY-cert.pub`, then `CertificateFile`s
            // that certify this key.
            let own = match identity::load_certificate(&identity::certificate_path(path)) {
                Ok(c) => c.map(|c| (c, identity::certificate_path(path).display().to_string())),
                Err(reason) => {
                    skipped.push(reason);
                    None
                }
            };
            for (cert, cert_label) in own.into_iter().chain(
                certificates
                    .iter()
                    .filter(|(c, _)| c.public_key() == public.key_data())
                    .cloned(),
            ) {
                offers.push(Offer {
                    shown: Shown::Certificate(Box::new(cert)),
                    signer: signer.duplicate(),
                    label: cert_label,
                });
            }
            offers.push(Offer {
                shown: Shown::Key(public),
                signer,
                label,
            });
        }

        if !settings.identities_only {
            for id in &held {
                let (shown, comment) = match id {
                    AgentIdentity::PublicKey { key, comment } => (Shown::Key(key.clone()), comment),
                    AgentIdentity::Certificate {
                        certificate,
                        comment,
                    } => (Shown::Certificate(Box::new(certificate.clone())), comment),
                };
                let offer = Offer {
                    shown,
                    signer: Signer::Agent,
                    label: format!("agent key {comment:?}"),
                };
                let already = offers.iter().any(|o| {
                    o.public_key().key_data() == offer.public_key().key_data()
                        && matches!(
                            (&o.shown, &offer.shown),
                            (Shown::Key(_), Shown::Key(_))
                                | (Shown::Certificate(_), Shown::Certificate(_))
                        )
                });
                if !already {
                    offers.push(offer);
                }
            }
        }

        if offers.is_empty() {
            if agent.is_some() && held.is_empty() {
                skipped.push("the ssh-agent holds no key (ssh-add one)".into());
            }
            return Err(Error::NoCredentials {
                host: host.name.clone(),
                tried: nothing_to_offer(host, &skipped),
            });
        }
        Ok(Credentials {
            offers,
            agent,
            skipped,
        })
    }

    /// Authenticates `handle` as `host`'s user, offering each credential in
    /// turn; an `Error::AuthRefused` naming what was offered when the server
    /// accepts none.
    pub(super) async fn authenticate(
        mut self,
        handle: &mut Handle<ClientHandler>,
        host: &HostConfig,
    ) -> Result<()> {
        let failed = |reason: String| host.connection_failed(reason);
        let mut rsa_hash: Option<Option<HashAlg>> = None;
        let mut offered = Vec::new();
        for offer in std::mem::take(&mut self.offers) {
            let public = offer.public_key();
            let hash = if public.algorithm().is_rsa() {
                if rsa_hash.is_none() {
                    rsa_hash = Some(
                        handle
                            .best_supported_rsa_hash()
                            .await
                            .map_err(|e| failed(describe_russh_error(&e)))?
                            .flatten(),
                    );
                }
                rsa_hash.flatten()
            } else {
                None
            };
            let description = offer.describe();
            let result = match (offer.shown, offer.signer) {
                (Shown::Key(_), Signer::File(key)) => handle
                    .authenticate_publickey(
                        host.user.clone(),
                        PrivateKeyWithHashAlg::new(key, hash),
                    )
                    .await
                    .map_err(|e| failed(describe_russh_error(&e)))?,
                (Shown::Certificate(cert), Signer::File(key)) => handle
                    .authenticate_openssh_cert(host.user.clone(), key, *cert)
                    .await
                    .map_err(|e| failed(describe_russh_error(&e)))?,
                (shown, Signer::Agent) => {
                    let Some(agent) = self.agent.as_mut() else {
                        continue;
                    };
                    let signed = match shown {
                        Shown::Key(key) => {
                            handle
                                .authenticate_publickey_with(
                                    host.user.clone(),
                                    key,
                                    hash,
                                    agent.client(),
                                )
                                .await
                        }
                        Shown::Certificate(cert) => {
                            handle
                                .authenticate_certificate_with(
                                    host.user.clone(),
                                    *cert,
                                    hash,
                                    agent.client(),
                                )
                                .await
                        }
                    };
                    match signed {
                        Ok(r) => r,
                        Err(e) if handle.is_closed() => {
                            return Err(failed(format!("during authentication: {e}")));
                        }
                        Err(e) => {
                            // The agent went away or declined: say so, and
                            // go on with the keys that need no agent.
                            let reason = agent.failed(format!("cannot sign: {e}"));
                            tracing::warn!(host = %host.name, "{reason}");
                            self.skipped.push(reason);
                            self.agent = None;
                            continue;
                        }
                    }
                }
            };
            offered.push(description);
            match result {
                AuthResult::Success => {
                    tracing::debug!(host = %host.name, "authenticated with {}", offered.last().map(String::as_str).unwrap_or_default());
                    return Ok(());
                }
                AuthResult::Failure {
                    remaining_methods, ..
                } if !remaining_methods.is_empty()
                    && !remaining_methods.contains(&MethodKind::PublicKey) =>
                {
                    break;
                }
                AuthResult::Failure { .. } => {}
            }
        }
        Err(Error::AuthRefused {
            host: host.name.clone(),
            addr: host.addr(),
            user: host.user.clone(),
            offered: offered.join(", "),
            skipped: if self.skipped.is_empty() {
                String::new()
            } else {
                format!(" (not offered: {})", self.skipped.join("; "))
            },
        })
    }
}

impl Signer {
    /// The same signer for another offer of the same key.
    fn duplicate(&self) -> Signer {
        match self {
            Signer::File(k) => Signer::File(k.clone()),
            Signer::Agent => Signer::Agent,
        }
    }
}

/// The message for a host with no key to offer: what was looked at and
/// why each gave nothing.
fn nothing_to_offer(host: &HostConfig, skipped: &[String]) -> String {
    let settings = &host.settings;
    let mut parts: Vec<String> = skipped.to_vec();
    if settings.default_identities {
        let names: Vec<String> = settings
            .identities
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        parts.push(format!("none of {} exists", names.join(", ")));
    }
    match Agent::socket_of(&settings.agent) {
        None if settings.agent == super::AgentSource::Env => {
            parts.push("no ssh-agent (SSH_AUTH_SOCK is not set)".into())
        }
        None => parts.push("no ssh-agent (IdentityAgent none)".into()),
        Some(_) if settings.identities_only => {
            parts.push("IdentitiesOnly keeps the agent's other keys out".into())
        }
        Some(_) => {}
    }
    parts.join("; ")
}
