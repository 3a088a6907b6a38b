//! API tokens (`--token-file`): named bearer tokens, one per client, so the
//! audit log can say who called.
//!
//! The file holds `NAME:TOKEN` lines (a bare `TOKEN` is named `token1`,
//! `token2`… in order); `#` starts a comment line. It must be private to its
//! owner, like a private key. Only SHA-256 digests of the tokens are kept,
//! and a presented token is compared with every one of them in constant
//! time, so neither timing nor a memory dump gives a token away.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sys::secret_file::read_private;

/// Fewest characters a token may have.
pub const MIN_TOKEN_LEN: usize = 16;

/// The tokens tunneld accepts.
pub struct TokenSet {
    /// Name and SHA-256 of each token.
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TokenSet").field("names", &names).finish()
    }
}

impl TokenSet {
    /// Reads a token file; refuses one others may read, and any malformed
    /// line (by number, never echoing it).
    pub fn load(path: &Path) -> Result<TokenSet, String> {
        let text = read_private(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
        TokenSet::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// Parses the text of a token file.
    pub fn parse(text: &str) -> Result<TokenSet, String> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        let mut unnamed = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (name, token) = match line.split_once(':') {
                Some((name, token)) => {
                    if name.is_empty()
                        || !name.chars().all(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')
                        })
                    {
                        return Err(format!(
                            "line {n}: the name before ':' may hold only letters, digits, '.', '_', '@' and '-'"
                        ));
                    }
                    (name.to_string(), token)
                }
                None => {
                    unnamed += 1;
                    (format!("token{unnamed}"), line)
                }
            };
            if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!(
                    "line {n}: a token must be at least {MIN_TOKEN_LEN} printable characters without spaces \
                     (make one with `openssl rand -hex 32`)"
                ));
            }
            if entries.iter().any(|(other, _)| *other == name) {
                return Err(format!("line {n}: the name {name:?} is used twice"));
            }
            entries.push((name, digest(token)));
        }
        if entries.is_empty() {
            return Err(
                "no token in it: add a line NAME:TOKEN (make a token with `openssl rand -hex 32`)"
                    .into(),
            );
        }
        Ok(TokenSet { entries })
    }

    /// The name of the token `presented`, if it is one of ours.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        // Every entry is compared, so the time taken says nothing about
        // which entry (if any) matched.
        let mut found = None;
        for (name, want) in &self.entries {
            if bool::from(want.ct_eq(&d)) {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The token file's current tokens, shared by the auth layer and the
/// SIGHUP handler that reloads them: tokens can be added or revoked
/// without restarting tunneld (which would end every tunnel).
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
    current: Arc<RwLock<Arc<TokenSet>>>,
}

impl TokenStore {
    /// Loads `path`.
    pub fn load(path: &Path) -> Result<TokenStore, String> {
        Ok(TokenStore {
            path: path.to_path_buf(),
            current: Arc::new(RwLock::new(Arc::new(TokenSet::load(path)?))),
        })
    }

    /// Reads the file again; on any error the tokens in use stay as they
    /// were. Returns how many tokens are now accepted.
    pub fn reload(&self) -> Result<usize, String> {
        let fresh = TokenSet::load(&self.path)?;
        let n = fresh.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(n)
    }

    /// The tokens in use now.
    pub fn current(&self) -> Arc<TokenSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The file they come from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123";
    const B: &str = "fedcba9876543210fedc";

    #[test]
    fn named_and_bare_tokens_verify_to_their_names() {
        let set = TokenSet::parse(&format!("# clients\nci:{A}\n\n{B}\n")).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.verify(A), Some("ci"));
        assert_eq!(set.verify(B), Some("token1"));
        assert_eq!(set.verify("0123456789abcdef012"), None);
        assert_eq!(set.verify(""), None);
        assert!(!format!("{set:?}").contains(A));
    }

    #[test]
    fn bad_files_name_the_line_and_never_the_token() {
        let e = TokenSet::parse("ci:short\n").err().unwrap();
        assert!(e.contains("line 1") && e.contains("at least 16"), "{e}");
        assert!(!e.contains("short"), "{e}");
        let e = TokenSet::parse(&format!("bad name:{A}\n")).err().unwrap();
        assert!(e.contains("line 1") && !e.contains(A), "{e}");
        let e = TokenSet::parse(&format!("a:{A}\na:{B}\n")).err().unwrap();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        assert!(TokenSet::parse("# nothing\n").is_err());
    }

    #[test]
    fn a_reload_replaces_the_tokens_and_a_bad_file_keeps_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tunneld-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&format!("ci:{A}\n"), 0o600);
        let store = TokenStore::load(&path).unwrap();
        assert_eq!(store.current().verify(A), Some("ci"));

        write(&format!("deploy:{B}\n"), 0o600);
        assert_eq!(store.reload(), Ok(1));
        assert_eq!(store.current().verify(A), None);
        assert_eq!(store.current().verify(B), Some("deploy"));

        write(&format!("ci:{A}\n"), 0o644);
        assert!(store.reload().unwrap_err().contains("chmod 600"));
        assert_eq!(store.current().verify(B), Some("deploy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
