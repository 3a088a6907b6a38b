//! known_hosts with OpenSSH's semantics: host names looked up as `host` on
//! port 22 and `[host]:port` elsewhere; comma-separated patterns with `*`,
//! `?` and `!` negation; hashed names (`|1|salt|hash`, HMAC-SHA1); several
//! lines or key types per host, any matching line accepting; `@revoked` lines
//! refusing a key outright. `@cert-authority` lines are read but not used:
//! tunneld verifies plain host keys only.
//!
//! russh's own checker does not handle `@revoked` or negated patterns, so
//! this module replaces it.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

use crate::error::HostKeyProblem;

/// A line's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One parsed known_hosts line.
#[derive(Debug)]
struct Entry {
    line: usize,
    marker: Marker,
    patterns: String,
    key_type: String,
    key_blob: Vec<u8>,
}

/// The name known_hosts stores for a host and port.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// SHA256 fingerprint of a key, as OpenSSH prints it (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks `key` for `host:port` against the known_hosts text. `Ok(())` when a
/// line accepts the key.
pub fn check(text: &str, host: &str, port: u16, key: &PublicKey) -> Result<(), HostKeyProblem> {
    let name = lookup_name(host, port);
    let blob = key.to_bytes().unwrap_or_default();
    let key_type = key.algorithm().to_string();
    let entries: Vec<Entry> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .collect();

    // A revoked key is refused whichever host its line names.
    if let Some(e) = entries
        .iter()
        .find(|e| e.marker == Marker::Revoked && e.key_blob == blob)
    {
        return Err(HostKeyProblem::Revoked { line: e.line });
    }
    let mut changed = Vec::new();
    let mut accepted = false;
    for e in entries
        .iter()
        .filter(|e| e.marker == Marker::None && host_matches(&e.patterns, &name))
    {
        if e.key_blob == blob {
            accepted = true;
        } else if e.key_type == key_type {
            changed.push(e.line);
        }
    }
    if accepted {
        Ok(())
    } else if !changed.is_empty() {
        Err(HostKeyProblem::Changed { lines: changed })
    } else {
        Err(HostKeyProblem::Unknown)
    }
}

/// Whether any line (of any key type) names this host: accept-new only adds
/// keys for hosts that are not known at all, as OpenSSH does.
pub fn host_is_known(text: &str, host: &str, port: u16) -> bool {
    let name = lookup_name(host, port);
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .any(|e| e.marker == Marker::None && host_matches(&e.patterns, &name))
}

/// The host key algorithms to offer, `defaults` reordered so that those of
/// key types known_hosts already lists for this host come first — as
/// OpenSSH's client does, so a server with several host keys presents one we
/// can verify.
pub fn preferred_host_key_order(
    text: &str,
    host: &str,
    port: u16,
    defaults: &[Algorithm],
) -> Vec<Algorithm> {
    let name = lookup_name(host, port);
    let known: Vec<String> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .filter(|e| e.marker == Marker::None && host_matches(&e.patterns, &name))
        .map(|e| e.key_type)
        .collect();
    let key_type = |a: &Algorithm| match a {
        Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
        other => other.to_string(),
    };
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = defaults
        .iter()
        .cloned()
        .partition(|a| known.contains(&key_type(a)));
    first.extend(rest);
    first
}

/// Appends `[host]:port type base64` for `key` to the file, creating it (and
/// its directory) with owner-only permissions if needed.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    let line = key
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    // to_openssh() ends with the key's comment, if any; keep type and blob.
    let mut parts = line.split_whitespace();
    let (t, b) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    writeln!(f, "{} {t} {b}", lookup_name(host, port))
}

fn parse_line(line: usize, raw: &str) -> Option<Entry> {
    let l = raw.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let mut fields = l.split_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None, // unknown marker: ignore the line, as OpenSSH
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let key_type = fields.next()?.to_string();
    let key_blob = B64.decode(fields.next()?).ok()?;
    Some(Entry {
        line,
        marker,
        patterns: first.to_string(),
        key_type,
        key_blob,
    })
}

/// OpenSSH `match_hostname`: some positive pattern matches and no negated one.
fn host_matches(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    let mut positive = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if wildcard_match(&p.to_ascii_lowercase(), &name.to_ascii_lowercase()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

fn hashed_matches(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// Glob match with `*` (any run) and `?` (one character).
fn wildcard_match(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICnRE9ylNWZNfDRVa98RsqPhth2rYxLy3DGwog0u+4+J";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIP4u0d21JlZnBMHDiK+n7FuqtyXiA0a2pUga1tcPtr/M";

    fn key(b64: &str) -> PublicKey {
        PublicKey::from_openssh(&format!("ssh-ed25519 {b64}")).unwrap()
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt).unwrap();
        mac.update(name.as_bytes());
        format!(
            "|1|{}|{}",
            B64.encode(salt),
            B64.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn plain_and_bracketed_names() {
        let text =
            format!("example.com ssh-ed25519 {KEY_A}\n[example.com]:2222 ssh-ed25519 {KEY_B}\n");
        assert_eq!(check(&text, "example.com", 22, &key(KEY_A)), Ok(()));
        assert_eq!(check(&text, "example.com", 2222, &key(KEY_B)), Ok(()));
        assert_eq!(
            check(&text, "example.com", 2222, &key(KEY_A)),
            Err(HostKeyProblem::Changed { lines: vec![2] })
        );
        assert_eq!(
            check(&text, "other", 22, &key(KEY_A)),
            Err(HostKeyProblem::Unknown)
        );
    }

    #[test]
    fn any_matching_line_accepts() {
        let text =
            format!("# comment\n\nh ssh-ed25519 {KEY_B}\nh,h2 ssh-ed25519 {KEY_A} comment\n");
        assert_eq!(check(&text, "h", 22, &key(KEY_A)), Ok(()));
        assert_eq!(check(&text, "h2", 22, &key(KEY_A)), Ok(()));
    }

    #[test]
    fn hashed_names_match() {
        let text = format!("{} ssh-ed25519 {KEY_A}\n", hashed("[127.0.0.1]:2200"));
        assert_eq!(check(&text, "127.0.0.1", 2200, &key(KEY_A)), Ok(()));
        assert_eq!(
            check(&text, "127.0.0.1", 22, &key(KEY_A)),
            Err(HostKeyProblem::Unknown)
        );
    }

    #[test]
    fn patterns_and_negation() {
        let text = format!("*.corp,!evil.corp ssh-ed25519 {KEY_A}\n");
        assert_eq!(check(&text, "db.corp", 22, &key(KEY_A)), Ok(()));
        assert_eq!(
            check(&text, "evil.corp", 22, &key(KEY_A)),
            Err(HostKeyProblem::Unknown)
        );
        assert!(wildcard_match("db?.c*", "db1.corp"));
        assert!(!wildcard_match("db?.c*", "db12.corp"));
    }

    #[test]
    fn revoked_refuses_even_with_an_accepting_line() {
        let text = format!("h ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_A}\n");
        assert_eq!(
            check(&text, "h", 22, &key(KEY_A)),
            Err(HostKeyProblem::Revoked { line: 2 })
        );
    }

    #[test]
    fn known_key_types_are_offered_first() {
        let defaults = [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: russh::keys::EcdsaCurve::NistP256,
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
        ];
        let text = "[h]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==\n";
        let order = preferred_host_key_order(text, "h", 2222, &defaults);
        assert_eq!(order[0], defaults[1]);
        assert_eq!(order[1..], [defaults[0].clone(), defaults[2].clone()]);
        // Unknown host: the defaults as they were.
        assert_eq!(
            preferred_host_key_order(text, "other", 22, &defaults),
            defaults.to_vec()
        );
    }

    #[test]
    fn known_host_detection_for_accept_new() {
        let text = format!("h ssh-ed25519 {KEY_A}\n@revoked x ssh-ed25519 {KEY_B}\n");
        assert!(host_is_known(&text, "h", 22));
        assert!(!host_is_known(&text, "x", 22));
    }

    #[test]
    fn appended_lines_are_read_back() {
        let dir = std::env::temp_dir().join(format!("tunneld-kh-{}", std::process::id()));
        let path = dir.join("known_hosts");
        append(&path, "127.0.0.1", 2200, &key(KEY_A)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(check(&text, "127.0.0.1", 2200, &key(KEY_A)), Ok(()));
        fs::remove_dir_all(dir).unwrap();
    }
}
