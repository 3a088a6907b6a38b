//! known_hosts with OpenSSH's semantics: host names looked up as `host` on
//! port 22 and `[host]:port` elsewhere; comma-separated patterns with `*`,
//! `?` and `!` negation; hashed names (`|1|salt|hash`, HMAC-SHA1); several
//! lines or key types per host, any matching line accepting; `@revoked` lines
//! refusing a key outright. `@cert-authority` lines accept host certificates
//! (sshconnect.c's `check_host_key`): signed by a CA listed for the host, of
//! host type, within their validity, with the connected name among their
//! principals, no critical options, not signed with SHA-1 RSA, and neither
//! the certificate's key nor its CA `@revoked`. A certificate refused for any
//! other reason than revocation or a bad signature is checked again as its
//! plain key, as OpenSSH does.
//!
//! Where OpenSSH versions differ, the stricter rule is kept: a certificate
//! with no principals is refused (OpenSSH 10.3+; 9.2 accepted it for any
//! host), and principals are compared exactly, not as patterns (9.2; 10.3+
//! matches wildcards).
//!
//! russh's own checker does not handle `@revoked`, negated patterns or
//! certificates, so this module replaces it.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, Certificate, HashAlg, PublicKey, ssh_key::public::KeyData};
use sha1::Sha1;

use crate::error::{CertificateProblem, HostKeyProblem};

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

/// Checks the host certificate `cert` presented by `host:port` against the
/// `@cert-authority` and `@revoked` lines, at `now` (Unix seconds). `Ok(())`
/// when a CA line accepts it. On `Err`, see
/// [`HostKeyProblem::falls_back_to_plain_key`]: OpenSSH then checks the
/// certificate's key as a plain host key with [`check`].
pub fn check_certificate(
    text: &str,
    host: &str,
    port: u16,
    cert: &Certificate,
    now: u64,
) -> Result<(), HostKeyProblem> {
    let name = lookup_name(host, port);
    let key_blob = key_data_blob(cert.public_key());
    let ca_blob = key_data_blob(cert.signature_key());
    let ca_fingerprint = cert.signature_key().fingerprint(HashAlg::Sha256);
    let entries: Vec<Entry> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .collect();

    // As for plain keys, a revoked key or CA is refused whichever host its
    // line names; OpenSSH never falls back from a revoked certificate.
    for e in entries.iter().filter(|e| e.marker == Marker::Revoked) {
        if e.key_blob == key_blob {
            return Err(HostKeyProblem::Revoked { line: e.line });
        }
        if e.key_blob == ca_blob {
            return Err(HostKeyProblem::Certificate(CertificateProblem::CaRevoked {
                ca_fingerprint: ca_fingerprint.to_string(),
                line: e.line,
            }));
        }
    }
    let refuse = |p| Err(HostKeyProblem::Certificate(p));
    let ca_listed = entries.iter().any(|e| {
        e.marker == Marker::CertAuthority
            && e.key_blob == ca_blob
            && host_matches(&e.patterns, &name)
    });
    if !ca_listed {
        return refuse(CertificateProblem::UnknownCa {
            ca_fingerprint: ca_fingerprint.to_string(),
        });
    }
    // sshkey_cert_check_authority's order: type, validity, principals.
    if !cert.cert_type().is_host() {
        return refuse(CertificateProblem::NotHostCertificate);
    }
    if now < cert.valid_after() {
        return refuse(CertificateProblem::NotYetValid {
            valid_after: cert.valid_after(),
        });
    }
    if now >= cert.valid_before() {
        return refuse(CertificateProblem::Expired {
            valid_before: cert.valid_before(),
        });
    }
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return refuse(CertificateProblem::NoPrincipals);
    }
    let expected = principal_name(host);
    if !principals.contains(&expected) {
        return refuse(CertificateProblem::WrongPrincipal {
            principals: principals.to_vec(),
            expected,
        });
    }
    // Host certificates have no critical options defined: any is refused.
    if !cert.critical_options().is_empty() {
        return refuse(CertificateProblem::CriticalOptions {
            names: cert.critical_options().keys().cloned().collect(),
        });
    }
    // OpenSSH's default CASignatureAlgorithms: no ssh-rsa (SHA-1), no DSA.
    let signature_algorithm = cert.signature().algorithm();
    let allowed = match &signature_algorithm {
        Algorithm::Rsa { hash } => hash.is_some(),
        Algorithm::Ed25519
        | Algorithm::Ecdsa { .. }
        | Algorithm::SkEd25519
        | Algorithm::SkEcdsaSha2NistP256 => true,
        _ => false,
    };
    if !allowed {
        return refuse(CertificateProblem::WeakSignature {
            algorithm: signature_algorithm.to_string(),
        });
    }
    // The CA and the validity were checked above, so a failure here is the
    // signature's.
    if cert.validate_at(now, [&ca_fingerprint]).is_err() {
        return refuse(CertificateProblem::BadSignature {
            ca_fingerprint: ca_fingerprint.to_string(),
        });
    }
    Ok(())
}

/// The name a host certificate's principals must contain: the host name
/// tunneld connects to, without the port, lower-cased unless it is an
/// address (what ssh compares, HostName substituted).
pub fn principal_name(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        host.to_ascii_lowercase()
    }
}

/// Whether any `@cert-authority` line names this host: then tunneld offers
/// the certificate host key algorithms.
pub fn host_has_ca(text: &str, host: &str, port: u16) -> bool {
    let name = lookup_name(host, port);
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .any(|e| e.marker == Marker::CertAuthority && host_matches(&e.patterns, &name))
}

/// A key as known_hosts stores it: the SSH wire encoding of the plain key.
fn key_data_blob(key: &KeyData) -> Vec<u8> {
    PublicKey::from(key.clone()).to_bytes().unwrap_or_default()
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

/// The host key algorithms whose certificate variants to offer: none unless
/// an `@cert-authority` line names this host; then every algorithm of
/// `order` but `ssh-rsa` (SHA-1, which OpenSSH 9.2 no longer offers for
/// certificates), in `order`'s order. OpenSSH offers certificate algorithms
/// to every host and falls back to the plain key when no CA accepts the
/// certificate; offering them only where a CA could accept one ends in the
/// same verdicts and spares the fallback.
pub fn certificate_algorithms(
    text: &str,
    host: &str,
    port: u16,
    order: &[Algorithm],
) -> Vec<Algorithm> {
    if !host_has_ca(text, host, port) {
        return Vec::new();
    }
    order
        .iter()
        .filter(|a| **a != Algorithm::Rsa { hash: None })
        .cloned()
        .collect()
}

/// Held while a key is appended: two connections to a new host (its shared
/// connection and an Exec's own) may accept its key at the same moment.
static APPENDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Appends `[host]:port type base64` for `key` to the file, creating it (and
/// its directory) with owner-only permissions if needed. The line goes in
/// one write, on a line of its own (after a newline the file lacks), and
/// not again when another connection of tunneld just added it.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey) -> io::Result<()> {
    let _one = APPENDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let line = key
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    // to_openssh() ends with the key's comment, if any; keep type and blob.
    let mut parts = line.split_whitespace();
    let (t, b) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let entry = format!("{} {t} {b}", lookup_name(host, port));
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    if text.lines().any(|l| l.trim() == entry) {
        return Ok(());
    }
    let lead = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    let mut opts = fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?
        .write_all(format!("{lead}{entry}\n").as_bytes())
}

/// How OpenSSH certificate key types end.
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

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
    let mut key_blob = B64.decode(fields.next()?).ok()?;
    if marker == Marker::Revoked && key_type.ends_with(CERT_SUFFIX) {
        // A revoked certificate revokes the key it certifies (OpenSSH
        // compares public parts).
        key_blob = key_data_blob(Certificate::from_bytes(&key_blob).ok()?.public_key());
    }
    if key_blob.is_empty() {
        return None;
    }
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

    mod certificates {
        use russh::keys::{
            PrivateKey,
            ssh_key::{
                certificate::{Builder, CertType},
                private::Ed25519Keypair,
            },
        };

        use super::*;

        /// Some instant of 2027, in Unix seconds.
        const NOW: u64 = 1_800_000_000;
        const HOUR: u64 = 3600;

        fn keypair(seed: u8) -> PrivateKey {
            PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
        }

        /// `TYPE BASE64` of a key, as known_hosts holds it.
        fn public(k: &PrivateKey) -> String {
            let line = k.public_key().to_openssh().unwrap();
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        }

        /// What to put in a test certificate.
        struct Spec<'a> {
            principals: &'a [&'a str],
            valid: (u64, u64),
            cert_type: CertType,
            critical: &'a [(&'a str, &'a str)],
        }

        const VALID: Spec<'static> = Spec {
            principals: &["127.0.0.1"],
            valid: (NOW - HOUR, NOW + HOUR),
            cert_type: CertType::Host,
            critical: &[],
        };

        fn cert(ca: &PrivateKey, host_key: &PrivateKey, spec: Spec) -> Certificate {
            let mut b = Builder::new(
                [9u8; 16],
                host_key.public_key().key_data().clone(),
                spec.valid.0,
                spec.valid.1,
            )
            .unwrap();
            b.cert_type(spec.cert_type).unwrap();
            b.key_id("test").unwrap();
            if spec.principals.is_empty() {
                b.all_principals_valid().unwrap();
            }
            for p in spec.principals {
                b.valid_principal(*p).unwrap();
            }
            for (name, value) in spec.critical {
                b.critical_option(*name, *value).unwrap();
            }
            b.sign(ca).unwrap()
        }

        fn problem(p: CertificateProblem) -> Result<(), HostKeyProblem> {
            Err(HostKeyProblem::Certificate(p))
        }

        fn ca_fp(ca: &PrivateKey) -> String {
            fingerprint(ca.public_key())
        }

        #[test]
        fn a_listed_ca_accepts_its_host_certificate() {
            let (ca, host) = (keypair(1), keypair(2));
            let c = cert(&ca, &host, VALID);
            let text = format!("@cert-authority [127.0.0.1]:2222 {}\n", public(&ca));
            assert_eq!(check_certificate(&text, "127.0.0.1", 2222, &c, NOW), Ok(()));
            // Patterns and hashed names as for plain lines.
            let text = format!("@cert-authority *,!10.* {}\n", public(&ca));
            assert_eq!(check_certificate(&text, "127.0.0.1", 2222, &c, NOW), Ok(()));
            let text = format!(
                "@cert-authority {} {}\n",
                hashed("[127.0.0.1]:2222"),
                public(&ca)
            );
            assert_eq!(check_certificate(&text, "127.0.0.1", 2222, &c, NOW), Ok(()));
            // A plain line with the CA's key is not a CA line.
            let text = format!("[127.0.0.1]:2222 {}\n", public(&ca));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 2222, &c, NOW),
                problem(CertificateProblem::UnknownCa {
                    ca_fingerprint: ca_fp(&ca)
                })
            );
        }

        #[test]
        fn a_ca_for_other_hosts_or_another_ca_is_unknown() {
            let (ca, other_ca, host) = (keypair(1), keypair(3), keypair(2));
            let c = cert(&ca, &host, VALID);
            let unknown = problem(CertificateProblem::UnknownCa {
                ca_fingerprint: ca_fp(&ca),
            });
            let text = format!("@cert-authority [127.0.0.1]:2200 {}\n", public(&ca));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 2222, &c, NOW),
                unknown
            );
            let text = format!("@cert-authority *,![127.0.0.1]:2222 {}\n", public(&ca));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 2222, &c, NOW),
                unknown
            );
            let text = format!("@cert-authority * {}\n", public(&other_ca));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 2222, &c, NOW),
                unknown
            );
            assert!(unknown.unwrap_err().falls_back_to_plain_key());
        }

        #[test]
        fn validity_is_checked_as_openssh_does() {
            let (ca, host) = (keypair(1), keypair(2));
            let text = format!("@cert-authority * {}\n", public(&ca));
            let c = cert(
                &ca,
                &host,
                Spec {
                    valid: (NOW, NOW + HOUR),
                    ..VALID
                },
            );
            // valid_after <= now < valid_before.
            assert_eq!(check_certificate(&text, "127.0.0.1", 22, &c, NOW), Ok(()));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW - 1),
                problem(CertificateProblem::NotYetValid { valid_after: NOW })
            );
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW + HOUR),
                problem(CertificateProblem::Expired {
                    valid_before: NOW + HOUR
                })
            );
            // ssh-keygen's "forever".
            let c = cert(
                &ca,
                &host,
                Spec {
                    valid: (0, u64::MAX),
                    ..VALID
                },
            );
            assert_eq!(check_certificate(&text, "127.0.0.1", 22, &c, NOW), Ok(()));
        }

        #[test]
        fn the_connected_name_must_be_a_principal() {
            let (ca, host) = (keypair(1), keypair(2));
            let text = format!("@cert-authority * {}\n", public(&ca));
            let c = cert(
                &ca,
                &host,
                Spec {
                    principals: &["db.example.com", "db"],
                    ..VALID
                },
            );
            assert_eq!(check_certificate(&text, "db", 2222, &c, NOW), Ok(()));
            // ssh lower-cases names (not addresses) before comparing.
            assert_eq!(
                check_certificate(&text, "DB.Example.COM", 22, &c, NOW),
                Ok(())
            );
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                problem(CertificateProblem::WrongPrincipal {
                    principals: vec!["db.example.com".into(), "db".into()],
                    expected: "127.0.0.1".into(),
                })
            );
            // Principals are names, compared exactly: no patterns, no port.
            let c = cert(
                &ca,
                &host,
                Spec {
                    principals: &["*.example.com", "db:2222"],
                    ..VALID
                },
            );
            assert!(check_certificate(&text, "db.example.com", 22, &c, NOW).is_err());
            assert!(check_certificate(&text, "db", 2222, &c, NOW).is_err());
            // No principals at all: refused (OpenSSH 10.3+).
            let c = cert(
                &ca,
                &host,
                Spec {
                    principals: &[],
                    ..VALID
                },
            );
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                problem(CertificateProblem::NoPrincipals)
            );
        }

        #[test]
        fn user_certificates_and_critical_options_are_refused() {
            let (ca, host) = (keypair(1), keypair(2));
            let text = format!("@cert-authority * {}\n", public(&ca));
            let c = cert(
                &ca,
                &host,
                Spec {
                    cert_type: CertType::User,
                    ..VALID
                },
            );
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                problem(CertificateProblem::NotHostCertificate)
            );
            let c = cert(
                &ca,
                &host,
                Spec {
                    critical: &[("force-command", "true")],
                    ..VALID
                },
            );
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                problem(CertificateProblem::CriticalOptions {
                    names: vec!["force-command".into()]
                })
            );
        }

        #[test]
        fn a_revoked_ca_key_or_certificate_refuses_without_fallback() {
            let (ca, host) = (keypair(1), keypair(2));
            let c = cert(&ca, &host, VALID);
            let ca_line = format!("@cert-authority * {}", public(&ca));
            let text = format!("{ca_line}\n@revoked * {}\n", public(&ca));
            let revoked = check_certificate(&text, "127.0.0.1", 22, &c, NOW).unwrap_err();
            assert_eq!(
                revoked,
                HostKeyProblem::Certificate(CertificateProblem::CaRevoked {
                    ca_fingerprint: ca_fp(&ca),
                    line: 2
                })
            );
            assert!(!revoked.falls_back_to_plain_key());
            let text = format!("{ca_line}\n@revoked * {}\n", public(&host));
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                Err(HostKeyProblem::Revoked { line: 2 })
            );
            // A revoked certificate revokes its key, for plain checks too.
            let text = format!("{ca_line}\n\n@revoked * {}\n", c.to_openssh().unwrap());
            assert_eq!(
                check_certificate(&text, "127.0.0.1", 22, &c, NOW),
                Err(HostKeyProblem::Revoked { line: 3 })
            );
            assert_eq!(
                check(&text, "127.0.0.1", 22, host.public_key()),
                Err(HostKeyProblem::Revoked { line: 3 })
            );
        }

        #[test]
        fn a_bad_signature_is_refused_without_fallback() {
            let (ca, host) = (keypair(1), keypair(2));
            let mut bytes = cert(&ca, &host, VALID).to_bytes().unwrap();
            // The last byte belongs to the CA's signature.
            *bytes.last_mut().unwrap() ^= 1;
            let forged = Certificate::from_bytes(&bytes).unwrap();
            let text = format!("@cert-authority * {}\n", public(&ca));
            let refused = check_certificate(&text, "127.0.0.1", 22, &forged, NOW).unwrap_err();
            assert_eq!(
                refused,
                HostKeyProblem::Certificate(CertificateProblem::BadSignature {
                    ca_fingerprint: ca_fp(&ca)
                })
            );
            assert!(!refused.falls_back_to_plain_key());
        }

        #[test]
        fn certificate_algorithms_are_offered_only_with_a_ca() {
            let ca = keypair(1);
            let order = [
                Algorithm::Ed25519,
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa { hash: None },
            ];
            let plain = format!("[h]:2222 {}\n", public(&ca));
            assert!(certificate_algorithms(&plain, "h", 2222, &order).is_empty());
            let text = format!("@cert-authority [h]:2222 {}\n", public(&ca));
            assert_eq!(
                certificate_algorithms(&text, "h", 2222, &order),
                order[..2].to_vec()
            );
            assert!(certificate_algorithms(&text, "h", 22, &order).is_empty());
            // A CA line does not make a host known for accept-new (OpenSSH
            // adds the plain key when a certificate falls back).
            assert!(!host_is_known(&text, "h", 2222));
        }
    }

    #[test]
    fn concurrent_appends_leave_one_whole_line_after_a_last_line_without_newline() {
        let dir = std::env::temp_dir().join(format!("tunneld-kh-race-{}", std::process::id()));
        let path = dir.join("known_hosts");
        fs::create_dir_all(&dir).unwrap();
        // Written by hand, without a final newline.
        fs::write(&path, "# mine").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || append(&path, "127.0.0.1", 2200, &key(KEY_A)))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(lines[0], "# mine");
        assert_eq!(check(&text, "127.0.0.1", 2200, &key(KEY_A)), Ok(()));
        fs::remove_dir_all(dir).unwrap();
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
