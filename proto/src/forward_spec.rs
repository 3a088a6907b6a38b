//! Forward specs as `ssh -L`, `-R` and `-D` read them: OpenSSH's
//! `parse_forward` (readconf.c), field for field. tunnelctl's `-L`/`-R`/`-D`
//! and the `local`/`remote`/`dynamic` keys of tunneld's config file both
//! read them here, so one spelling means the same forward at both ends.
//!
//! A spec is split on `:`; a field in `[...]` is one field taken literally
//! (an IPv6 address), and `\` takes the next character literally. A field
//! containing `/` is a unix socket path. The number of fields and where the
//! paths are decide the form:
//!
//! | fields | form                                    | listens on | connects to        |
//! |--------|-----------------------------------------|------------|--------------------|
//! | 1      | `PORT` or `/PATH`                       | it         | SOCKS (dynamic)    |
//! | 2      | `/LPATH:/RPATH`                         | LPATH      | RPATH              |
//! | 2      | `PORT:/PATH`                            | PORT       | PATH               |
//! | 2      | `BIND:PORT`                             | BIND:PORT  | SOCKS (dynamic)    |
//! | 3      | `/LPATH:HOST:PORT`                      | LPATH      | HOST:PORT          |
//! | 3      | `BIND:PORT:/PATH`                       | BIND:PORT  | PATH               |
//! | 3      | `PORT:HOST:PORT`                        | PORT       | HOST:PORT          |
//! | 4      | `BIND:PORT:HOST:PORT`                   | BIND:PORT  | HOST:PORT          |
//!
//! `-R` takes them all, `-L` all but the dynamic ones, `-D` only
//! `[BIND:]PORT`. Where this parser is stricter than ssh, it is about
//! values ssh would accept and then fail on: a path must be absolute
//! (tunneld's API takes no relative ones), and a host or bind address holds
//! no `/`. It is looser in one place: a listening port of 0 asks for a free
//! one.
//!
//! The `parse_*_forward` functions word their refusals for tunnelctl's
//! flags (`-L`, `open-dynamic -D`); [`parse_config_forward`] words them for
//! the config file's keys.

use std::fmt;
use std::str::FromStr;

/// The bind address that means "every interface", as OpenSSH spells it.
pub const WILDCARD: &str = "*";

/// Longest unix socket path: `sun_path` holds 108 bytes, NUL included.
/// OpenSSH refuses longer ones when it parses the spec, and so do we.
const MAX_SOCKET_PATH: usize = 107;

/// Longest host name or address, as OpenSSH checks it (`NI_MAXHOST` less
/// its NUL).
const MAX_HOST: usize = 1024;

/// A forward as written for `ssh -L`, `-R` or `-D`: where it listens and
/// where each connection goes.
///
/// For `-L` the listening side is tunneld's machine and the target is reached
/// from the SSH server; for `-R` it is the other way round. The syntax is the
/// same, so is the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Where connections are accepted.
    pub listen: Listen,
    /// Where each accepted connection is carried.
    pub target: Target,
}

/// The listening side of a forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP port, on a bind address or the default one.
    Tcp(TcpListen),
    /// A unix socket at this absolute path.
    Path(String),
}

/// A TCP listening side: `[BIND:]PORT`. This is all `-D` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListen {
    /// Address to listen on; `None` when the spec has no bind field, `"*"`
    /// when it asks for every interface (`*` or an empty field).
    pub bind: Option<String>,
    /// Port to listen on; 0 asks for any free port.
    pub port: u16,
}

/// Where a forward carries each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host (without IPv6 brackets) and a port, 1..65535.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port, never 0.
        port: u16,
    },
    /// A unix socket at this absolute path.
    Path(String),
    /// Wherever the connection asks, speaking SOCKS (a dynamic forward).
    Dynamic,
}

impl ForwardSpec {
    /// Whether this is a SOCKS proxy (`-D`, or `-R` without a target).
    pub fn is_dynamic(&self) -> bool {
        self.target == Target::Dynamic
    }
}

/// Why a forward spec was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// The kind of forward a spec is read for (the flag or the config key it
/// came with): each accepts its own subset of the forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// `local`, as `ssh -L`: every form with a target.
    Local,
    /// `remote`, as `ssh -R`: every form; no target is a reverse SOCKS proxy.
    Remote,
    /// `dynamic`, as `ssh -D`: `[BIND:]PORT`.
    Dynamic,
}

/// Who the refusals of a spec of the wrong kind speak to: tunnelctl's
/// flags or the config file's keys, so the fix named is one the reader
/// can make where they wrote the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wording {
    Flags,
    Keys,
}

impl ForwardKind {
    /// What the flag takes, for the end of an error message.
    fn forms(self) -> &'static str {
        match self {
            ForwardKind::Local => {
                "expected [BIND:]PORT:HOST:HOSTPORT, /PATH:HOST:HOSTPORT, [BIND:]PORT:/PATH or \
                 /PATH:/PATH, with IPv6 addresses in brackets"
            }
            ForwardKind::Remote => {
                "expected [BIND:]PORT:HOST:HOSTPORT, /PATH:HOST:HOSTPORT, [BIND:]PORT:/PATH or \
                 /PATH:/PATH, or [BIND:]PORT or /PATH alone for a SOCKS proxy, with IPv6 \
                 addresses in brackets"
            }
            ForwardKind::Dynamic => "expected [BIND:]PORT, with IPv6 addresses in brackets",
        }
    }
}

/// Parses any form, as `ssh -R` does; see [`parse_remote_forward`].
impl FromStr for ForwardSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, ForwardKind::Remote, Wording::Flags)
    }
}

/// Parses a `-L` spec: every form with a target, no SOCKS proxy.
pub fn parse_local_forward(s: &str) -> Result<ForwardSpec, SpecError> {
    parse(s, ForwardKind::Local, Wording::Flags)
}

/// Parses a `-R` spec: every form, `[BIND:]PORT` or `/PATH` alone being a
/// reverse SOCKS proxy.
pub fn parse_remote_forward(s: &str) -> Result<ForwardSpec, SpecError> {
    parse(s, ForwardKind::Remote, Wording::Flags)
}

/// Parses the value of a config file's `local`, `remote` or `dynamic` key:
/// the forms `-L`, `-R` or `-D` take, with refusals that name the keys
/// rather than tunnelctl's flags. A `dynamic` spec comes back with
/// [`Target::Dynamic`].
pub fn parse_config_forward(s: &str, kind: ForwardKind) -> Result<ForwardSpec, SpecError> {
    parse(s, kind, Wording::Keys)
}

/// Parses a `-D` spec: `[BIND:]PORT`.
pub fn parse_dynamic_forward(s: &str) -> Result<TcpListen, SpecError> {
    match parse(s, ForwardKind::Dynamic, Wording::Flags)? {
        ForwardSpec {
            listen: Listen::Tcp(tcp),
            target: Target::Dynamic,
        } => Ok(tcp),
        // `parse` refuses the rest for `-D` already.
        _ => Err(SpecError(ForwardKind::Dynamic.forms().to_string())),
    }
}

/// One field of a spec, unescaped.
struct Field {
    text: String,
    /// It contains a `/` (not escaped), so OpenSSH reads it as a path where
    /// a path may go.
    path: bool,
}

fn parse(s: &str, flag: ForwardKind, wording: Wording) -> Result<ForwardSpec, SpecError> {
    let forms = flag.forms();
    if s.is_empty() {
        return Err(SpecError(format!("the forward is empty; {forms}")));
    }
    let fields = split_fields(s, forms)?;
    let count = fields.len();
    if !(1..=4).contains(&count) {
        return Err(SpecError(format!("{count} fields; {forms}")));
    }
    // Which form it is shows before any value is read, so a spec of the
    // wrong kind is named as such rather than by its first bad port.
    let dynamic = count == 1 || (count == 2 && !fields[1].path);
    let wrong = match flag {
        ForwardKind::Local if dynamic => Some(Wrong::SocksForLocal),
        ForwardKind::Dynamic if !dynamic => Some(Wrong::TargetForDynamic),
        ForwardKind::Dynamic if fields[0].path => Some(Wrong::PathForDynamic),
        _ => None,
    };
    if let Some(wrong) = wrong {
        return Err(SpecError(wrong.message(wording).into()));
    }
    let (listen, target) = match fields.as_slice() {
        [a] if a.path => (listen_path(a)?, Target::Dynamic),
        [a] => (listen_tcp(None, a, forms)?, Target::Dynamic),
        [a, b] if a.path && b.path => (listen_path(a)?, target_path(b)?),
        [a, b] if b.path => (listen_tcp(None, a, forms)?, target_path(b)?),
        [a, b] => (listen_tcp(Some(a), b, forms)?, Target::Dynamic),
        [a, b, c] if a.path => (listen_path(a)?, target_tcp(b, c, forms)?),
        [a, b, c] if c.path => (listen_tcp(Some(a), b, forms)?, target_path(c)?),
        [a, b, c] => (listen_tcp(None, a, forms)?, target_tcp(b, c, forms)?),
        [a, b, c, d] => (listen_tcp(Some(a), b, forms)?, target_tcp(c, d, forms)?),
        _ => return Err(SpecError(format!("{count} fields; {forms}"))),
    };
    Ok(ForwardSpec { listen, target })
}

/// A spec whose form the flag or key does not take.
#[derive(Debug, Clone, Copy)]
enum Wrong {
    SocksForLocal,
    TargetForDynamic,
    PathForDynamic,
}

impl Wrong {
    fn message(self, wording: Wording) -> &'static str {
        match (self, wording) {
            (Wrong::SocksForLocal, Wording::Flags) => {
                "-L needs a target: [BIND:]PORT:HOST:HOSTPORT, or a unix socket path; \
                 for a SOCKS proxy use open-dynamic -D"
            }
            (Wrong::SocksForLocal, Wording::Keys) => {
                "local needs a target: [BIND:]PORT:HOST:HOSTPORT, or a unix socket path; \
                 for a SOCKS proxy use dynamic = \"[BIND:]PORT\""
            }
            (Wrong::TargetForDynamic, Wording::Flags) => {
                "-D takes [BIND:]PORT only: a SOCKS proxy connects where each client asks; \
                 for a fixed target use open-local -L"
            }
            (Wrong::TargetForDynamic, Wording::Keys) => {
                "dynamic takes [BIND:]PORT only: a SOCKS proxy connects where each client asks; \
                 for a fixed target use local = \"...\""
            }
            (Wrong::PathForDynamic, Wording::Flags) => {
                "-D takes [BIND:]PORT: tunneld's SOCKS proxy listens on a TCP port, not a \
                 unix socket path"
            }
            (Wrong::PathForDynamic, Wording::Keys) => {
                "dynamic takes [BIND:]PORT: tunneld's SOCKS proxy listens on a TCP port, not a \
                 unix socket path"
            }
        }
    }
}

fn listen_tcp(bind: Option<&Field>, port: &Field, forms: &str) -> Result<Listen, SpecError> {
    // OpenSSH reads an empty bind field (`:8080:host:80`) like `*`.
    let bind = match bind {
        None => None,
        Some(b) if b.text.is_empty() => Some(WILDCARD.to_string()),
        Some(b) => Some(host_field(&b.text, "bind address", forms)?),
    };
    let port = port_field(&port.text, "listening port", true)?;
    Ok(Listen::Tcp(TcpListen { bind, port }))
}

fn target_tcp(host: &Field, port: &Field, forms: &str) -> Result<Target, SpecError> {
    if host.text.is_empty() {
        return Err(SpecError(format!("the target host is empty; {forms}")));
    }
    let host = host_field(&host.text, "target host", forms)?;
    let port = port_field(&port.text, "target port", false)?;
    Ok(Target::Tcp { host, port })
}

fn listen_path(field: &Field) -> Result<Listen, SpecError> {
    path_field(&field.text).map(Listen::Path)
}

fn target_path(field: &Field) -> Result<Target, SpecError> {
    path_field(&field.text).map(Target::Path)
}

/// A host or bind address: no `/` (that would be a path in the wrong
/// place) and no longer than a host name can be.
fn host_field(text: &str, what: &str, forms: &str) -> Result<String, SpecError> {
    if text.contains('/') {
        return Err(SpecError(format!(
            "{what} '{text}' has a '/', but a unix socket path cannot go there; {forms}"
        )));
    }
    if text.len() > MAX_HOST {
        return Err(SpecError(format!(
            "{what} is {} bytes long; at most {MAX_HOST}",
            text.len()
        )));
    }
    Ok(text.to_string())
}

/// A unix socket path: absolute, and short enough for a socket address.
fn path_field(text: &str) -> Result<String, SpecError> {
    if !text.starts_with('/') {
        return Err(SpecError(format!(
            "unix socket path '{text}' must be absolute (start with /)"
        )));
    }
    if text.len() > MAX_SOCKET_PATH {
        return Err(SpecError(format!(
            "unix socket path '{text}' is {} bytes long; a socket path has at most \
             {MAX_SOCKET_PATH}",
            text.len()
        )));
    }
    Ok(text.to_string())
}

fn port_field(field: &str, what: &str, zero_ok: bool) -> Result<u16, SpecError> {
    let port: u16 = field
        .parse()
        .map_err(|_| SpecError(format!("{what} '{field}' is not a port number")))?;
    if port == 0 && !zero_ok {
        return Err(SpecError(format!("{what} must be 1..65535, not 0")));
    }
    Ok(port)
}

/// Splits a spec on `:` as OpenSSH does: a field in `[...]` is one field
/// taken literally (brackets dropped), `\` takes the next character
/// literally, and a field with an unescaped `/` is marked as a path.
fn split_fields(s: &str, forms: &str) -> Result<Vec<Field>, SpecError> {
    let mut fields = Vec::new();
    let mut rest = s;
    loop {
        let (field, after) = if let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| SpecError("unclosed '[' (IPv6 addresses go in [...])".into()))?;
            let (addr, after) = (&inner[..end], &inner[end + 1..]);
            if addr.is_empty() || addr.contains('[') {
                return Err(SpecError(format!("'[{addr}]' is not an address")));
            }
            if !(after.is_empty() || after.starts_with(':')) {
                let junk = after.split(':').next().unwrap_or(after);
                return Err(SpecError(format!("unexpected '{junk}' after ']'; {forms}")));
            }
            let field = Field {
                text: addr.to_string(),
                path: addr.contains('/'),
            };
            (field, after)
        } else {
            plain_field(rest, forms)?
        };
        fields.push(field);
        match after.strip_prefix(':') {
            Some(next) => rest = next,
            None => return Ok(fields),
        }
    }
}

/// A field not in brackets, up to the first unescaped `:`; returns it and
/// the rest of the spec from that `:`.
fn plain_field<'a>(rest: &'a str, forms: &str) -> Result<(Field, &'a str), SpecError> {
    let mut text = String::new();
    let mut path = false;
    let mut chars = rest.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            ':' => return Ok((Field { text, path }, &rest[at..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => text.push(escaped),
                None => {
                    return Err(SpecError(format!(
                        "'\\' at the end escapes nothing; {forms}"
                    )));
                }
            },
            '[' | ']' => {
                let raw = rest.split(':').next().unwrap_or(rest);
                return Err(SpecError(format!("misplaced bracket in '{raw}'; {forms}")));
            }
            '/' => {
                path = true;
                text.push(c);
            }
            _ => text.push(c),
        }
    }
    Ok((Field { text, path }, ""))
}

/// Writes a field so that [`split_fields`] reads it back: as is when it
/// holds nothing special, in brackets when it holds a `:` (an IPv6
/// address, a path) and no bracket, else with `\` before each special
/// character. A `/` is never escaped: it is what marks a path.
fn write_field(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let special = |c: char| matches!(c, ':' | '\\' | '[' | ']');
    if !text.contains(special) {
        f.write_str(text)
    } else if !text.contains(['[', ']']) {
        write!(f, "[{text}]")
    } else {
        for c in text.chars() {
            if special(c) {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// `[BIND:]PORT`, as `-D` takes it.
impl fmt::Display for TcpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(bind) = &self.bind {
            write_field(f, bind)?;
            f.write_str(":")?;
        }
        write!(f, "{}", self.port)
    }
}

/// The spec as a user would write it for `-R`; it parses back to itself.
impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.listen {
            Listen::Tcp(tcp) => write!(f, "{tcp}")?,
            Listen::Path(path) => write_field(f, path)?,
        }
        match &self.target {
            Target::Tcp { host, port } => {
                f.write_str(":")?;
                write_field(f, host)?;
                write!(f, ":{port}")
            }
            Target::Path(path) => {
                f.write_str(":")?;
                write_field(f, path)
            }
            Target::Dynamic => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(bind: Option<&str>, port: u16) -> Listen {
        Listen::Tcp(TcpListen {
            bind: bind.map(str::to_string),
            port,
        })
    }

    fn to(host: &str, port: u16) -> Target {
        Target::Tcp {
            host: host.into(),
            port,
        }
    }

    fn lpath(p: &str) -> Listen {
        Listen::Path(p.into())
    }

    fn tpath(p: &str) -> Target {
        Target::Path(p.into())
    }

    fn spec(s: &str) -> ForwardSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match s.parse::<ForwardSpec>() {
            Ok(spec) => panic!("{s} parsed as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn local_err(s: &str) -> String {
        match parse_local_forward(s) {
            Ok(spec) => panic!("-L {s} parsed as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn dynamic_err(s: &str) -> String {
        match parse_dynamic_forward(s) {
            Ok(spec) => panic!("-D {s} parsed as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every form of the module's table, and what each flag makes of it.
    #[test]
    fn every_form_for_every_flag() {
        // (spec, the flags that take it, listen, target); -R takes all.
        #[rustfmt::skip]
        let table = [
            ("1080", "RD", tcp(None, 1080), Target::Dynamic),
            ("/tmp/s.sock", "R", lpath("/tmp/s.sock"), Target::Dynamic),
            ("/a.sock:/b.sock", "RL", lpath("/a.sock"), tpath("/b.sock")),
            ("5432:/run/pg.sock", "RL", tcp(None, 5432), tpath("/run/pg.sock")),
            ("127.0.0.1:1080", "RD", tcp(Some("127.0.0.1"), 1080), Target::Dynamic),
            ("[::1]:1080", "RD", tcp(Some("::1"), 1080), Target::Dynamic),
            (":1080", "RD", tcp(Some("*"), 1080), Target::Dynamic),
            ("*:1080", "RD", tcp(Some("*"), 1080), Target::Dynamic),
            ("/tmp/pg.sock:db:5432", "RL", lpath("/tmp/pg.sock"), to("db", 5432)),
            ("0.0.0.0:80:/run/w.sock", "RL", tcp(Some("0.0.0.0"), 80), tpath("/run/w.sock")),
            (":80:/run/w.sock", "RL", tcp(Some("*"), 80), tpath("/run/w.sock")),
            ("5432:db.internal:5432", "RL", tcp(None, 5432), to("db.internal", 5432)),
            ("0:localhost:5432", "RL", tcp(None, 0), to("localhost", 5432)),
            ("7777:[fd00::5]:22", "RL", tcp(None, 7777), to("fd00::5", 22)),
            ("0.0.0.0:8080:localhost:80", "RL", tcp(Some("0.0.0.0"), 8080), to("localhost", 80)),
            ("[::1]:7777:[fd00::5]:22", "RL", tcp(Some("::1"), 7777), to("fd00::5", 22)),
            (":8080:web:80", "RL", tcp(Some("*"), 8080), to("web", 80)),
        ];
        for (s, flags, listen, target) in table {
            let (local_ok, dynamic_ok) = (flags.contains('L'), flags.contains('D'));
            let expected = ForwardSpec { listen, target };
            assert_eq!(parse_remote_forward(s), Ok(expected.clone()), "-R {s}");
            assert_eq!(s.parse::<ForwardSpec>(), Ok(expected.clone()), "{s}");
            match parse_local_forward(s) {
                Ok(got) => assert!(local_ok && got == expected, "-L {s}: {got:?}"),
                Err(e) => assert!(!local_ok, "-L {s}: {e}"),
            }
            match parse_dynamic_forward(s) {
                Ok(got) => {
                    assert!(dynamic_ok, "-D {s}: {got:?}");
                    assert_eq!(expected.listen, Listen::Tcp(got), "-D {s}");
                }
                Err(e) => assert!(!dynamic_ok, "-D {s}: {e}"),
            }
            // Written back, it reads the same.
            assert_eq!(expected.to_string().parse(), Ok(expected.clone()), "{s}");
        }
    }

    #[test]
    fn local_refuses_a_socks_proxy_and_points_to_open_dynamic() {
        for s in ["1080", "/tmp/s.sock", "localhost:1080", "8080:db"] {
            let e = local_err(s);
            assert_eq!(
                e,
                "-L needs a target: [BIND:]PORT:HOST:HOSTPORT, or a unix socket path; \
                 for a SOCKS proxy use open-dynamic -D",
                "{s}"
            );
        }
    }

    /// The config file's keys take the same forms as the flags, and a spec
    /// of the wrong kind is refused naming the keys, not tunnelctl's flags.
    #[test]
    fn config_keys_take_the_flags_forms_in_their_own_words() {
        for (s, kind) in [
            ("15432:db:5432", ForwardKind::Local),
            ("/a.sock:/b.sock", ForwardKind::Local),
            ("8080", ForwardKind::Remote),
            ("[::1]:1080", ForwardKind::Dynamic),
        ] {
            let spec = parse_config_forward(s, kind).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(Ok(spec), parse_remote_forward(s), "{s}");
        }
        let e = |s, kind| parse_config_forward(s, kind).unwrap_err().to_string();
        let local = e("1080", ForwardKind::Local);
        assert!(
            local.starts_with("local needs a target") && local.contains("dynamic = "),
            "{local}"
        );
        let dynamic = e("1080:db:5432", ForwardKind::Dynamic);
        assert!(
            dynamic.starts_with("dynamic takes [BIND:]PORT only") && dynamic.contains("local = "),
            "{dynamic}"
        );
        assert!(e("/tmp/s.sock", ForwardKind::Dynamic).starts_with("dynamic takes [BIND:]PORT:"));
        assert!(!local.contains("-L") && !dynamic.contains("-D"));
    }

    #[test]
    fn dynamic_takes_only_bind_and_port() {
        assert_eq!(
            parse_dynamic_forward("1080"),
            Ok(TcpListen {
                bind: None,
                port: 1080
            })
        );
        for s in ["1080:localhost:80", "/a:/b", "1080:/run/x.sock", "a:1:b:2"] {
            assert!(
                dynamic_err(s).starts_with("-D takes [BIND:]PORT only"),
                "{s}"
            );
        }
        assert!(dynamic_err("/tmp/socks.sock").contains("not a unix socket path"));
        assert!(dynamic_err("1080x").contains("listening port '1080x'"));
        assert!(dynamic_err("a:b:c:d:e").contains("5 fields; expected [BIND:]PORT"));
        assert!(dynamic_err("").contains("empty; expected [BIND:]PORT"));
    }

    #[test]
    fn wrong_field_counts() {
        assert!(err("a:b:1:host:2").contains("5 fields"));
        // An unbracketed IPv6 address splits into too many fields.
        assert!(err("::1:8080:localhost:80").contains("IPv6 addresses in brackets"));
        assert!(err("").contains("the forward is empty"));
        assert!(local_err("").contains("the forward is empty"));
        // A trailing ':' is an empty last field, not a dropped one.
        assert!(err("8080:localhost:").contains("target port ''"));
    }

    #[test]
    fn bad_ports() {
        assert!(err("http:localhost:80").contains("listening port 'http'"));
        assert!(err("70000:localhost:80").contains("is not a port number"));
        assert!(err("8080:localhost:0").contains("target port must be 1..65535"));
        assert!(err("-1:localhost:80").contains("not a port number"));
        assert!(err("70000").contains("listening port '70000'"));
        assert!(err("host:http").contains("listening port 'http'"));
        assert!(err("x:/run/a.sock").contains("listening port 'x'"));
        assert!(err("/tmp/a.sock:db:0").contains("target port must be"));
    }

    #[test]
    fn bad_hosts_and_brackets() {
        assert!(err("8080::80").contains("target host is empty"));
        assert!(err("[::1:8080:localhost:80").contains("unclosed '['"));
        assert!(err("[]:8080:localhost:80").contains("not an address"));
        assert!(err("[::1]x:8080:localhost:80").contains("unexpected 'x'"));
        assert!(err("8080:local]host:80").contains("misplaced bracket"));
        assert!(err("8080:host\\").contains("escapes nothing"));
        let long = "h".repeat(MAX_HOST + 1);
        assert!(err(&format!("80:{long}:80")).contains("at most 1024"));
    }

    /// A field with a `/` is a path, as in ssh; where a path may go, a
    /// relative one is refused (ssh would pass it on), and where a host or
    /// bind address goes it is refused too (ssh would fail to resolve it).
    #[test]
    fn relative_paths_and_paths_out_of_place() {
        assert_eq!(
            err("8080:tmp/pg.sock"),
            "unix socket path 'tmp/pg.sock' must be absolute (start with /)"
        );
        assert!(err("run/pg.sock:db:5432").contains("'run/pg.sock' must be absolute"));
        assert!(err("sock/a").contains("'sock/a' must be absolute"));
        // The middle field of three is never a path: it is a host.
        assert!(err("8080:tmp/x:80").starts_with("target host 'tmp/x' has a '/'"));
        assert!(err("a:1:/x:2").starts_with("target host '/x' has a '/'"));
        // A path then a port is BIND:PORT, with a path for a bind address.
        assert!(err("/tmp/a.sock:80").starts_with("bind address '/tmp/a.sock' has a '/'"));
        assert!(dynamic_err("/tmp/a.sock:80").contains("not a unix socket path"));
        // A path first makes three fields /PATH:HOST:PORT.
        assert!(err("/tmp/a.sock:80:/b").contains("target port '/b'"));
        let long = format!("/{}", "p".repeat(MAX_SOCKET_PATH));
        assert!(err(&format!("80:{long}")).contains("at most 107"));
        assert!(spec(&format!("80:{}", &long[..MAX_SOCKET_PATH])).target != Target::Dynamic);
    }

    /// What ssh's field splitting allows beyond the plain forms: a `:` in a
    /// path in brackets or after `\`, and an escaped `/` that is no path.
    #[test]
    fn brackets_and_escapes_as_ssh_reads_them() {
        assert_eq!(spec("80:[/run/a:b.sock]").target, tpath("/run/a:b.sock"));
        assert_eq!(spec("80:/run/a\\:b.sock").target, tpath("/run/a:b.sock"));
        assert_eq!(spec("\\*:1080").listen, tcp(Some("*"), 1080));
        // Escaped, a '/' does not make a path (nor a valid host).
        assert!(err("80:a\\/b:80").starts_with("target host 'a/b' has a '/'"));
        // ... so `PORT:a\/b` is BIND:PORT, and `a/b` no port.
        assert!(err("1080:a\\/b").contains("listening port 'a/b'"));
    }

    #[test]
    fn written_back_parses_to_itself() {
        let odd = [
            ForwardSpec {
                listen: lpath("/run/a:b]"),
                target: tpath("/x\\y"),
            },
            ForwardSpec {
                listen: tcp(Some("fe80::1%eth0"), 0),
                target: to("a[b", 1),
            },
            ForwardSpec {
                listen: tcp(Some("*"), 9),
                target: Target::Dynamic,
            },
        ];
        for spec in odd {
            let text = spec.to_string();
            assert_eq!(text.parse(), Ok(spec), "{text}");
        }
        let tcp = TcpListen {
            bind: Some("::1".into()),
            port: 1080,
        };
        assert_eq!(tcp.to_string(), "[::1]:1080");
        assert_eq!(parse_dynamic_forward(&tcp.to_string()), Ok(tcp));
    }
}
