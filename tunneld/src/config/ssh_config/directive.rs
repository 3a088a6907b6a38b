//! One line → a typed directive, for the keywords tunneld honours. Values
//! are checked on every line, applied or not, as `ssh` checks them; other
//! keywords are ignored (OpenSSH knows hundreds tunneld has no use for).

use super::{ciphers, error::SshConfigError, host::StrictHostKeyChecking, jump, parse::Line};

/// Most `IdentityFile` or `CertificateFile` lines (OpenSSH's limit).
pub(super) const MAX_IDENTITY_FILES: usize = 100;
/// Most files on one `UserKnownHostsFile` line (OpenSSH's limit).
pub(super) const MAX_KNOWN_HOSTS_FILES: usize = 32;

/// A directive tunneld acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Directive {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    CertificateFile(String),
    IdentitiesOnly(bool),
    IdentityAgent(String),
    /// As `ssh -G` prints it; `none` kept.
    ProxyJump(String),
    ProxyCommand(String),
    UserKnownHostsFile(Vec<String>),
    StrictHostKeyChecking(StrictHostKeyChecking),
    /// Seconds; `None` for `none`, which does not count as a first value.
    ServerAliveInterval(Option<u32>),
    ServerAliveCountMax(u32),
    /// Seconds; `None` for `none`, which does not count as a first value.
    ConnectTimeout(Option<u32>),
    /// The assembled list, comma-joined.
    Ciphers(String),
    HostKeyAlias(String),
    /// Whether it asks for canonicalization (anything but `no`).
    CanonicalizeHostname(bool),
}

/// The directive of `line`, `None` for keywords tunneld ignores (and for
/// `Host`/`Match`, which the resolver reads itself).
pub(super) fn parse(line: &Line) -> Result<Option<Directive>, SshConfigError> {
    let err = |m: String| SshConfigError::line(&line.at, m);
    let kw = line.keyword.as_str();
    // Keywords of one argument: more is an error, as in `ssh`.
    let one = || -> Result<&str, SshConfigError> {
        match line.args.as_slice() {
            [a] => Ok(a.as_str()),
            _ => Err(err(format!(
                "{kw} takes one argument, got {}; quote a value that has spaces",
                line.args.len()
            ))),
        }
    };
    let d = match kw {
        "hostname" => Directive::HostName(one()?.to_string()),
        "user" => Directive::User(one()?.to_string()),
        "port" => {
            let v = one()?;
            let port = v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                err(format!("bad port {v:?}: give a number from 1 to 65535 (service names are not looked up)"))
            })?;
            Directive::Port(port)
        }
        "identityfile" => Directive::IdentityFile(one()?.to_string()),
        "certificatefile" => Directive::CertificateFile(one()?.to_string()),
        "identitiesonly" => Directive::IdentitiesOnly(flag(one()?).map_err(err)?),
        "identityagent" => {
            let v = one()?;
            if v != "SSH_AUTH_SOCK"
                && v != "none"
                && v.strip_prefix('$').is_some_and(|n| {
                    n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                })
            {
                return Err(err(format!(
                    "invalid environment variable in IdentityAgent {v:?}"
                )));
            }
            Directive::IdentityAgent(v.to_string())
        }
        "proxyjump" => Directive::ProxyJump(
            jump::normalize(one()?).map_err(|m| err(format!("invalid ProxyJump: {m}")))?,
        ),
        "proxycommand" => Directive::ProxyCommand(line.args.join(" ")),
        "userknownhostsfile" => {
            if line.args.len() > MAX_KNOWN_HOSTS_FILES {
                return Err(err(format!(
                    "more than {MAX_KNOWN_HOSTS_FILES} files on one UserKnownHostsFile line"
                )));
            }
            if line.args.iter().any(String::is_empty) {
                return Err(err("empty UserKnownHostsFile path".into()));
            }
            Directive::UserKnownHostsFile(line.args.clone())
        }
        "stricthostkeychecking" => {
            let v = one()?;
            Directive::StrictHostKeyChecking(match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => StrictHostKeyChecking::Yes,
                "ask" => StrictHostKeyChecking::Ask,
                "accept-new" => StrictHostKeyChecking::AcceptNew,
                "no" | "off" | "false" => StrictHostKeyChecking::No,
                _ => {
                    return Err(err(format!(
                        "StrictHostKeyChecking {v:?}: use yes, ask, accept-new or no"
                    )));
                }
            })
        }
        "serveraliveinterval" => Directive::ServerAliveInterval(time(one()?).map_err(err)?),
        "connecttimeout" => Directive::ConnectTimeout(time(one()?).map_err(err)?),
        "serveralivecountmax" => {
            let v = one()?;
            let n = v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| err(format!("ServerAliveCountMax {v:?}: give a whole number")))?;
            Directive::ServerAliveCountMax(n)
        }
        "ciphers" => Directive::Ciphers(ciphers::assemble(one()?).map_err(err)?),
        "hostkeyalias" => Directive::HostKeyAlias(one()?.to_string()),
        "canonicalizehostname" => {
            let v = one()?;
            Directive::CanonicalizeHostname(match v.to_ascii_lowercase().as_str() {
                "no" | "false" => false,
                "yes" | "true" | "always" => true,
                _ => {
                    return Err(err(format!(
                        "CanonicalizeHostname {v:?}: use yes, no or always"
                    )));
                }
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(d))
}

/// A yes/no flag (`yes`, `no`, `true`, `false`, any case).
fn flag(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(format!("{v:?} is not yes or no")),
    }
}

/// A time as OpenSSH's `convtime` reads it (`90`, `1m30s`, `2h`, units
/// s m h d w in any case), or `None` for `none`.
fn time(v: &str) -> Result<Option<u32>, String> {
    if v == "none" {
        return Ok(None);
    }
    let bad = || format!("{v:?} is not a time (e.g. 30, 30s, 5m, 1h30m, or none)");
    if v.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let mult = match rest.chars().next() {
            None => 1,
            Some(unit) => {
                rest = &rest[unit.len_utf8()..];
                match unit.to_ascii_lowercase() {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86400,
                    'w' => 604_800,
                    _ => return Err(bad()),
                }
            }
        };
        total = n
            .checked_mul(mult)
            .and_then(|s| total.checked_add(s))
            .filter(|t| *t <= i32::MAX as u64)
            .ok_or_else(bad)?;
    }
    u32::try_from(total).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use super::{super::error::Origin, *};

    fn line(s: &str) -> Line {
        let (keyword, args) = super::super::parse::split_line(s)
            .expect("valid")
            .expect("a line");
        Line {
            keyword,
            args,
            at: Origin {
                file: Arc::new(PathBuf::from("/c")),
                line: 1,
            },
        }
    }

    fn d(s: &str) -> Result<Option<Directive>, SshConfigError> {
        parse(&line(s))
    }

    #[test]
    fn times() {
        assert_eq!(time("90"), Ok(Some(90)));
        assert_eq!(time("1m30s"), Ok(Some(90)));
        assert_eq!(time("2H"), Ok(Some(7200)));
        assert_eq!(time("none"), Ok(None));
        assert!(time("1x").is_err());
        assert!(time("m").is_err());
        assert!(time("99999999999999999999").is_err());
        assert!(time("4000w").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(d("Port 2222").ok().flatten(), Some(Directive::Port(2222)));
        assert!(d("Port 0").is_err());
        assert!(d("Port 7 8").is_err());
        assert!(d("Port ssh").is_err());
        assert_eq!(
            d("StrictHostKeyChecking off").ok().flatten(),
            Some(Directive::StrictHostKeyChecking(StrictHostKeyChecking::No))
        );
        assert!(d("StrictHostKeyChecking maybe").is_err());
        assert_eq!(
            d("IdentitiesOnly YES").ok().flatten(),
            Some(Directive::IdentitiesOnly(true))
        );
        assert_eq!(
            d("UserKnownHostsFile /a \"/b c\"").ok().flatten(),
            Some(Directive::UserKnownHostsFile(vec![
                "/a".into(),
                "/b c".into()
            ]))
        );
        assert!(d("Ciphers aes*").is_err());
        assert!(d("ProxyJump a, b").is_err());
        assert!(d("IdentityAgent $a-b").is_err());
        assert_eq!(d("Frobnicate 1").ok().flatten(), None);
        let e = d("Port 0").expect_err("bad").to_string();
        assert!(e.starts_with("/c line 1: bad port"), "{e}");
    }
}
