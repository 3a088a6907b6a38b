//! Parsing of the values users type: OpenSSH `-L`/`-R` forward specs, ports,
//! durations, counts and `NAME=VALUE` pairs.
//!
//! These run as clap value parsers, so a bad value is rejected before any call
//! to tunneld, and clap's message names the flag it came with.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The bind address that means "every interface", as OpenSSH spells it.
pub const WILDCARD: &str = "*";

/// A forward as written for `ssh -L` or `ssh -R`:
/// `[bind_address:]listen_port:target_host:target_port`.
///
/// For `-L` the listening side is tunneld's machine and the target is reached
/// from the SSH server; for `-R` it is the other way round. The syntax is the
/// same, so is the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Address to listen on; `None` when the spec has no bind field, `"*"`
    /// when it asks for every interface (`*:` or an empty field).
    pub bind: Option<String>,
    /// Port to listen on; 0 asks for any free port.
    pub listen_port: u16,
    /// Host each connection is carried to, without IPv6 brackets.
    pub target_host: String,
    /// Port each connection is carried to, 1..65535.
    pub target_port: u16,
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

const SPEC_FORM: &str = "expected [BIND:]PORT:HOST:HOSTPORT, with IPv6 addresses in brackets";

impl FromStr for ForwardSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = split_fields(s)?;
        let (bind, listen, host, target) = match fields.as_slice() {
            [listen, host, target] => (None, listen, host, target),
            [bind, listen, host, target] => (Some(bind), listen, host, target),
            _ => {
                return Err(SpecError(format!("{} fields; {SPEC_FORM}", fields.len())));
            }
        };
        // OpenSSH reads an empty bind field (`:8080:host:80`) like `*`.
        let bind = bind.map(|b| {
            if b.is_empty() {
                WILDCARD.to_string()
            } else {
                b.clone()
            }
        });
        let listen_port = port_field(listen, "listening port", true)?;
        if host.is_empty() {
            return Err(SpecError(format!("the target host is empty; {SPEC_FORM}")));
        }
        let target_port = port_field(target, "target port", false)?;
        Ok(ForwardSpec {
            bind,
            listen_port,
            target_host: host.clone(),
            target_port,
        })
    }
}

/// Splits a spec on `:`, treating a field in `[...]` as one field (an IPv6
/// address) and dropping its brackets.
fn split_fields(s: &str) -> Result<Vec<String>, SpecError> {
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
                return Err(SpecError(format!(
                    "unexpected '{junk}' after ']'; {SPEC_FORM}"
                )));
            }
            (addr, after)
        } else {
            let end = rest.find(':').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.contains('[') || field.contains(']') {
                return Err(SpecError(format!(
                    "misplaced bracket in '{field}'; {SPEC_FORM}"
                )));
            }
            (field, &rest[end..])
        };
        fields.push(field.to_string());
        match after.strip_prefix(':') {
            Some(next) => rest = next,
            None => return Ok(fields),
        }
    }
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

/// Parses a port that must be 1..65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) => Err("port must be 1..65535".into()),
        Ok(port) => Ok(port),
        Err(_) => Err("not a port number (1..65535)".into()),
    }
}

/// Parses a port where 0 means "pick a free one".
pub fn parse_port_or_pick(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| "not a port number (1..65535, or 0 to pick a free one)".into())
}

/// Parses a positive humantime duration such as `10s`, `1m30s` or `500ms`,
/// up to 365 days (the range tunneld's API accepts).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    tunnel_proto::duration::BoundedDuration::parse_positive(s).map(Into::into)
}

/// Parses a count that must be 1..=4294967295, such as a connection limit.
pub fn parse_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be more than zero".into()),
        Ok(n) => Ok(n),
        Err(_) if s.starts_with('-') => Err("must be more than zero".into()),
        Err(_) => Err(format!("not a whole number (1..{})", u32::MAX)),
    }
}

/// Parses `NAME=VALUE` with a shell-safe name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{name}' is not a valid variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Rejects an empty host or address value.
pub fn parse_nonempty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> ForwardSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match s.parse::<ForwardSpec>() {
            Ok(spec) => panic!("{s} parsed as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn three_fields() {
        assert_eq!(
            spec("5432:db.internal:5432"),
            ForwardSpec {
                bind: None,
                listen_port: 5432,
                target_host: "db.internal".into(),
                target_port: 5432,
            }
        );
    }

    #[test]
    fn bind_address() {
        let s = spec("0.0.0.0:8080:localhost:80");
        assert_eq!(s.bind.as_deref(), Some("0.0.0.0"));
        assert_eq!((s.listen_port, s.target_port), (8080, 80));
        assert_eq!(s.target_host, "localhost");
    }

    #[test]
    fn wildcard_bind() {
        assert_eq!(spec("*:8080:localhost:80").bind.as_deref(), Some("*"));
        assert_eq!(spec(":8080:localhost:80").bind.as_deref(), Some("*"));
    }

    #[test]
    fn ipv6_in_brackets() {
        let s = spec("[::1]:7777:[fd00::5]:22");
        assert_eq!(s.bind.as_deref(), Some("::1"));
        assert_eq!(s.listen_port, 7777);
        assert_eq!(s.target_host, "fd00::5");
        assert_eq!(s.target_port, 22);
        assert_eq!(spec("7777:[::1]:80").target_host, "::1");
    }

    #[test]
    fn listen_port_zero_picks() {
        assert_eq!(spec("0:localhost:5432").listen_port, 0);
    }

    #[test]
    fn wrong_field_counts() {
        assert!(err("8080").contains("1 fields"));
        assert!(err("8080:80").contains("2 fields"));
        // An unbracketed IPv6 address splits into too many fields.
        assert!(err("::1:8080:localhost:80").contains("IPv6 addresses in brackets"));
        assert!(err("a:b:1:host:2").contains("5 fields"));
    }

    #[test]
    fn bad_ports() {
        assert!(err("http:localhost:80").contains("listening port 'http'"));
        assert!(err("70000:localhost:80").contains("is not a port number"));
        assert!(err("8080:localhost:0").contains("target port must be 1..65535"));
        assert!(err("8080:localhost:").contains("target port ''"));
        assert!(err("-1:localhost:80").contains("not a port number"));
    }

    #[test]
    fn bad_hosts_and_brackets() {
        assert!(err("8080::80").contains("target host is empty"));
        assert!(err("[::1:8080:localhost:80").contains("unclosed '['"));
        assert!(err("[]:8080:localhost:80").contains("not an address"));
        assert!(err("[::1]x:8080:localhost:80").contains("unexpected 'x'"));
        assert!(err("8080:local]host:80").contains("misplaced bracket"));
        assert!(err("").contains("1 fields"));
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("22"), Ok(22));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("x").is_err());
        assert_eq!(parse_port_or_pick("0"), Ok(0));
        assert_eq!(parse_port_or_pick("65535"), Ok(65535));
        assert!(parse_port_or_pick("65536").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("1"), Ok(1));
        assert_eq!(parse_count("4294967295"), Ok(u32::MAX));
        assert!(parse_count("0").unwrap_err().contains("more than zero"));
        assert!(parse_count("-1").unwrap_err().contains("more than zero"));
        assert!(parse_count("abc").unwrap_err().contains("whole number"));
        assert!(
            parse_count("4294967296")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(parse_count("").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        assert_eq!(parse_env("_=").map(|p| p.1), Ok(String::new()));
        assert!(parse_env("1A=x").is_err());
        assert!(parse_env("A-B=x").is_err());
        assert!(parse_env("=x").is_err());
        assert!(parse_env("NOVALUE").is_err());
    }
}
