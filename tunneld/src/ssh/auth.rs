//! What a connection authenticates with, and the authentication itself.
//! A key file today; an agent or a certificate adds a variant here, and
//! neither dialling nor the handshake changes.

use std::{path::PathBuf, sync::Arc};

use russh::{
    client::Handle,
    keys::{PrivateKey, PrivateKeyWithHashAlg},
};

use super::{
    HostConfig,
    handler::{ClientHandler, describe_russh_error},
    identity,
};
use crate::error::{Error, Result};

/// The credentials one connection offers the server.
pub enum Credentials {
    /// A private key read from a file (`--identity`, `identity`).
    KeyFile {
        /// The decoded key.
        key: PrivateKey,
        /// Where it was read from, for messages.
        path: PathBuf,
    },
}

impl Credentials {
    /// The credentials `host`'s settings name, read (and decrypted) now, so
    /// a missing or unreadable key fails before any network traffic.
    pub fn load(host: &HostConfig) -> Result<Self> {
        Ok(Credentials::KeyFile {
            key: identity::load(host)?,
            path: host.settings.identity.clone(),
        })
    }

    /// Authenticates `handle` as `host`'s user; an `Error::AuthRefused`
    /// naming what was offered when the server says no.
    pub(super) async fn authenticate(
        self,
        handle: &mut Handle<ClientHandler>,
        host: &HostConfig,
    ) -> Result<()> {
        let failed = |reason: String| host.connection_failed(reason);
        let (accepted, offered) = match self {
            Credentials::KeyFile { key, path } => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| failed(describe_russh_error(&e)))?
                    .flatten();
                let auth = handle
                    .authenticate_publickey(
                        host.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(|e| failed(describe_russh_error(&e)))?;
                (auth.success(), path)
            }
        };
        if accepted {
            Ok(())
        } else {
            Err(Error::AuthRefused {
                host: host.name.clone(),
                addr: host.addr(),
                user: host.user.clone(),
                identity: offered,
            })
        }
    }
}
