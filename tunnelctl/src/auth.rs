//! The bearer token tunnelctl presents to a tunneld started with
//! `--token-file`: where it comes from (`--token-file`, `TUNNELD_TOKEN`,
//! `TUNNELD_TOKEN_FILE`), how a token file is read, and the interceptor that
//! puts `authorization: Bearer <token>` on every call.
//!
//! Architecture Invariant: the token's text leaves this module only as the
//! header value, which is marked sensitive. [`Token`]'s `Debug` and every
//! error here name where the token came from, never what it is.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;

/// Environment variable holding the token itself. There is no flag for the
/// value: a command line shows in `ps` to every user of the machine.
pub const TOKEN_ENV: &str = "TUNNELD_TOKEN";

/// Environment variable naming a token file, used when neither
/// `--token-file` nor [`TOKEN_ENV`] is given.
pub const TOKEN_FILE_ENV: &str = "TUNNELD_TOKEN_FILE";

/// The gRPC metadata key the token goes in.
const AUTHORIZATION: &str = "authorization";

/// Where the token was found, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `TUNNELD_TOKEN`.
    Env,
    /// A token file, named by `--token-file` or `TUNNELD_TOKEN_FILE`.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env => write!(f, "{TOKEN_ENV}"),
            TokenSource::File(path) => write!(f, "the token file {}", path.display()),
        }
    }
}

/// A token ready to send. Its `Debug` shows where it came from, not the
/// token.
#[derive(Clone)]
pub struct Token {
    /// `Bearer <token>`, marked sensitive so the header's own `Debug` hides
    /// it too.
    header: AsciiMetadataValue,
    /// Where it was found.
    source: TokenSource,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Checks a token's text and builds its header. The error names
    /// `source`, never the text.
    fn new(text: &str, source: TokenSource) -> anyhow::Result<Token> {
        if text.is_empty() {
            bail!("{source} is empty: it must hold the token tunneld's --token-file lists");
        }
        // What tunneld accepts: printable ASCII, no spaces.
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "{source} holds a token with a space or a character that is not printable \
                 ASCII; tunneld's tokens are printable ASCII without spaces"
            );
        }
        let mut header: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {text}"))
            .map_err(|_| anyhow!("{source} holds a token that cannot be sent as a header"))?;
        header.set_sensitive(true);
        Ok(Token { header, source })
    }

    /// Where the token was found.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }
}

/// Finds the token to send, if any: `--token-file` (`flag`) first, then
/// `TUNNELD_TOKEN`, then `TUNNELD_TOKEN_FILE`; an empty variable counts as
/// unset. `env` looks variables up (the process environment, or a map in
/// tests).
pub fn resolve(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> anyhow::Result<Option<Token>> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(path) = flag {
        return read_token_file(path).map(Some);
    }
    if let Some(value) = set(TOKEN_ENV) {
        let text = value
            .into_string()
            .map_err(|_| anyhow!("{TOKEN_ENV} is not valid UTF-8"))?;
        return Token::new(text.trim(), TokenSource::Env).map(Some);
    }
    if let Some(path) = set(TOKEN_FILE_ENV) {
        return read_token_file(Path::new(&path)).map(Some);
    }
    Ok(None)
}

/// Reads the token from a file; see [`token_in`] for the format.
fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    let source = TokenSource::File(path.to_path_buf());
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {source}"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{source} is not UTF-8 text"))?;
    let token = token_in(&text).ok_or_else(|| {
        anyhow!("{source} holds no token: put the token on its first line (lines starting with # are skipped)")
    })?;
    Token::new(token, source)
}

/// The token in a token file's text: its first line that is neither blank
/// nor a `#` comment, trimmed. A line `NAME:TOKEN`, as in tunneld's own
/// `--token-file`, gives `TOKEN` when `NAME` is made of
/// `A-Z a-z 0-9 . _ @ -`; any other line is the token as a whole. So a
/// client can be handed its line of the daemon's file as is.
pub fn token_in(text: &str) -> Option<&str> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    match line.split_once(':') {
        Some((name, token)) if is_token_name(name) => Some(token),
        _ => Some(line),
    }
}

/// Whether `name` is a token name as tunneld's `--token-file` allows:
/// `[A-Za-z0-9._@-]+`.
fn is_token_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Adds `authorization: Bearer <token>` to every request on a channel, when
/// there is a token. Interceptors see every call, unary and streaming alike.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<Token>);

impl Bearer {
    /// An interceptor sending `token`, or nothing.
    pub fn new(token: Option<Token>) -> Bearer {
        Bearer(token)
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, token.header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const SECRET: &str = "s3cret-token-0123456789";

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn header(token: &Option<Token>) -> Option<&str> {
        token.as_ref().map(|t| t.header.to_str().unwrap())
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tunnelctl-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn token_file_format() {
        assert_eq!(token_in("abc\n"), Some("abc"));
        assert_eq!(token_in("\n  \n# a comment\n  abc  \ndef\n"), Some("abc"));
        assert_eq!(token_in("ci-bot:abc:def\n"), Some("abc:def"));
        assert_eq!(token_in("alice@example.com:tok\n"), Some("tok"));
        // Not a name before the ':': the whole line is the token.
        assert_eq!(token_in("a/b:tok\n"), Some("a/b:tok"));
        assert_eq!(token_in(":tok\n"), Some(":tok"));
        assert_eq!(token_in("\r\nabc\r\n"), Some("abc"));
        assert_eq!(token_in(""), None);
        assert_eq!(token_in("# only a comment\n\n"), None);
    }

    #[test]
    fn nothing_set_means_no_token() {
        assert!(resolve(None, env(&[])).unwrap().is_none());
        assert!(
            resolve(None, env(&[(TOKEN_ENV, ""), (TOKEN_FILE_ENV, "")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn env_token_is_trimmed_and_sent_as_bearer() {
        let token = resolve(None, env(&[(TOKEN_ENV, &format!(" {SECRET}\n"))])).unwrap();
        assert_eq!(header(&token), Some(format!("Bearer {SECRET}").as_str()));
        assert_eq!(token.unwrap().source(), &TokenSource::Env);
    }

    #[test]
    fn flag_wins_over_env_and_env_token_over_env_file() {
        let flag = temp_file("flag", "from-flag-0123456789\n");
        let env_file = temp_file("env", "name:from-env-file-0123456789\n");
        let env_file = env_file.to_str().unwrap();
        let both = env(&[(TOKEN_ENV, SECRET), (TOKEN_FILE_ENV, env_file)]);

        let token = resolve(Some(&flag), &both).unwrap();
        assert_eq!(header(&token), Some("Bearer from-flag-0123456789"));
        assert_eq!(token.unwrap().source(), &TokenSource::File(flag.clone()));

        let token = resolve(None, &both).unwrap();
        assert_eq!(header(&token), Some(format!("Bearer {SECRET}").as_str()));

        let token = resolve(None, env(&[(TOKEN_FILE_ENV, env_file)])).unwrap();
        assert_eq!(header(&token), Some("Bearer from-env-file-0123456789"));
    }

    #[test]
    fn bad_tokens_are_refused_without_showing_them() {
        let err = resolve(None, env(&[(TOKEN_ENV, "has space-0123456789")])).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains(TOKEN_ENV) && err.contains("printable"),
            "{err}"
        );
        assert!(!err.contains("0123456789"), "{err}");

        let tab = temp_file("tab", &format!("{SECRET}\tx\n"));
        let err = format!("{:#}", resolve(Some(&tab), env(&[])).unwrap_err());
        assert!(err.contains(&tab.display().to_string()), "{err}");
        assert!(!err.contains(SECRET), "{err}");

        let empty = temp_file("empty", "# nothing\n\n");
        let err = format!("{:#}", resolve(Some(&empty), env(&[])).unwrap_err());
        assert!(err.contains("holds no token"), "{err}");

        let missing = Path::new("/nonexistent/tunnelctl/token");
        let err = format!("{:#}", resolve(Some(missing), env(&[])).unwrap_err());
        assert!(
            err.starts_with("cannot read the token file /nonexistent/tunnelctl/token"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = resolve(None, env(&[(TOKEN_ENV, SECRET)])).unwrap();
        let bearer = Bearer::new(token.clone());
        for shown in [
            format!("{token:?}"),
            format!("{bearer:?}"),
            format!("{bearer:#?}"),
        ] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }

    #[test]
    fn interceptor_adds_the_header_only_with_a_token() {
        let token = resolve(None, env(&[(TOKEN_ENV, SECRET)])).unwrap();
        let request = Bearer::new(token).call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get(AUTHORIZATION).unwrap(),
            format!("Bearer {SECRET}").as_str()
        );
        let request = Bearer::new(None).call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().get(AUTHORIZATION).is_none());
    }
}
