//! Properties of every tunneld parser a user or an API client reaches
//! (issue 16, "Fuzzing"): sizes, durations, the TOML config, SSH
//! destinations, known_hosts, the token file, forward rules and `--listen`.
//! None may panic on any string; where a value has a meaning, writing it
//! and parsing it back must give it again. The fuzz targets under `fuzz/`
//! check the same on inputs libFuzzer grows; these run on stable in
//! `cargo test`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

use proptest::prelude::*;
use russh::keys::PublicKey;
use tunneld::{
    BindPolicy, Config, HostKeyProblem, HostPolicy, ListenAddr, TokenSet,
    config::{
        DEFAULT_HOST_NAME, HostDefaults, HostSettings, parse_duration, parse_duration_or_zero,
        parse_size,
    },
    parsers::known_hosts::{self, lookup_name},
};

const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICnRE9ylNWZNfDRVa98RsqPhth2rYxLy3DGwog0u+4+J";
const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIP4u0d21JlZnBMHDiK+n7FuqtyXiA0a2pUga1tcPtr/M";

fn key(b64: &str) -> PublicKey {
    PublicKey::from_openssh(&format!("ssh-ed25519 {b64}")).expect("a valid ed25519 key")
}

/// Fixed defaults, independent of `$HOME`.
fn defaults() -> HostDefaults {
    HostDefaults::without_ssh_config(HostSettings {
        identities: vec!["/keys/id_ed25519".into()],
        known_hosts: "/keys/known_hosts".into(),
        ..HostSettings::openssh()
    })
}

/// A host as users type them: a DNS name, an IPv4 or an IPv6 address.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
    ]
}

/// `host:port` with IPv6 in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Strings made of `vocabulary`'s pieces: near enough to a parser's
/// grammar to reach past its first check, unlike uniform random text.
fn pieces(vocabulary: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(vocabulary), 0..max).prop_map(|p| p.concat())
}

/// Arbitrary text, from uniform to control characters to grammar pieces.
fn text(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f -~]{0,80}",
        "[0-9]{1,60}",
        pieces(vocabulary, 40),
    ]
}

/// Up to 64 KiB of text.
fn long_text(vocabulary: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<char>(), 0..65_536)
            .prop_map(|c| c.into_iter().collect::<String>()),
        pieces(vocabulary, 8_000),
    ]
}

const SIZES: &[&str] = &[
    "0",
    "1",
    "9",
    "18446744073709551615",
    "18446744073709551616",
    "KiB",
    "MiB",
    "GiB",
    "B",
    "k",
    " ",
    "\t",
    "-",
    "+",
    ".",
    "\u{0}",
    "é",
];

const DURATIONS: &[&str] = &[
    "0",
    "1",
    "5",
    "365",
    "366",
    "18446744073709551615",
    "99999999999999999999",
    "ns",
    "us",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "w",
    "M",
    "y",
    "sec",
    "min",
    "hours",
    "days",
    " ",
    "-",
    "+",
    ".",
    "\u{0}",
];

const TOML: &[&str] = &[
    "\n",
    " ",
    "=",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "#",
    ".",
    "[hosts.a]",
    "[hosts.b]",
    "[hosts]",
    "[[hosts.a]]",
    "hosts.a.",
    "address = ",
    "\"u@h:22\"",
    "\"h\"",
    "\"[::1]:2222\"",
    "\"::1\"",
    "\"@h\"",
    "\"h:0\"",
    "\"h:99999\"",
    "\"[::1\"",
    "\"[::1]x\"",
    "permit_open = ",
    "permit_listen = ",
    "[\"db:5432\"]",
    "[\"*:*\"]",
    "[]",
    "[\"none\", \"x:1\"]",
    "[\"any\"]",
    "rekey_limit = ",
    "\"4GiB\"",
    "\"99999999999999999999GiB\"",
    "keepalive_interval = ",
    "\"15s\"",
    "\"0s\"",
    "\"10000000000000d\"",
    "reconnect_min = ",
    "reconnect_max = ",
    "ciphers = ",
    "[\"aes256-gcm@openssh.com\"]",
    "[\"nope\"]",
    "default_host = ",
    "\"a\"",
    "\"zz\"",
    "allow_local_bind = ",
    "[\"0.0.0.0\"]",
    "keepalive_max = ",
    "18446744073709551615",
    "-1",
    "1e400",
    "host_key_policy = ",
    "\"accept-new\"",
    "\"strict\"",
    "passphrase_file = ",
    "passphrase_env = ",
    "\"X\"",
    "identity = ",
    "\"~/k\"",
    "known_hosts = ",
    "true",
    "1979-05-27T07:32:00Z",
    "\"\"\"",
    "\\u0000",
];

const KNOWN_HOSTS: &[&str] = &[
    "\n",
    "\r\n",
    " ",
    "\t",
    "#",
    ",",
    "!",
    "*",
    "?",
    "@revoked ",
    "@cert-authority ",
    "@x ",
    "|1|",
    "|",
    "BwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    "=",
    "host",
    "HOST",
    "h",
    "[",
    "]",
    ":22",
    ":2222",
    "::1",
    "127.0.0.1",
    "ssh-ed25519 ",
    "ssh-rsa ",
    KEY_A,
    KEY_B,
    "AAAA",
    " comment",
];

const TOKENS: &[&str] = &[
    "\n",
    "\r\n",
    " ",
    "#",
    ":",
    "ci",
    "a.b@c-d_e",
    "bad name",
    "0123456789abcdef",
    "0123456789abcdef0123",
    "x",
    "\u{7f}",
    "é",
    "\u{0}",
];

const HOST_FIELDS: &[&str] = &[
    "*",
    ":",
    "[",
    "]",
    "any",
    "none",
    "db",
    "DB.internal",
    "::1",
    "127.0.0.1",
    "0.0.0.0",
    "[::1]",
    "fe80::1%eth0",
    "0",
    "22",
    "65535",
    "65536",
    "-1",
    "unix:",
    "//",
    "/run/x.sock",
    "@",
    "u",
    " ",
    "\u{0}",
];

proptest! {
    #[test]
    fn sizes_never_panic(s in text(SIZES)) {
        if let Ok(n) = parse_size(&s) {
            prop_assert!(n > 0, "{s:?} gave 0");
        }
    }

    #[test]
    fn sizes_multiply_their_suffix_or_overflow(
        n in prop_oneof![1usize..1 << 20, 1usize..],
        (suffix, unit) in proptest::sample::select(
            &[("", 1usize), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)][..]
        ),
        pad in proptest::sample::select(&["", " ", "\t"][..]),
    ) {
        let text = format!("{pad}{n}{pad}{suffix}{pad}");
        match n.checked_mul(unit) {
            Some(bytes) => prop_assert_eq!(parse_size(&text), Ok(bytes), "{:?}", text),
            None => prop_assert!(parse_size(&text).is_err(), "{:?}", text),
        }
    }

    #[test]
    fn size_zero_is_refused(suffix in proptest::sample::select(&["", "KiB", "MiB", "GiB"][..])) {
        let zero = format!("0{suffix}");
        prop_assert!(parse_size(&zero).is_err());
    }

    #[test]
    fn durations_never_panic(s in text(DURATIONS)) {
        if let Ok(d) = parse_duration(&s) {
            prop_assert!(!d.is_zero(), "{s:?} gave zero");
            assert_within_range(&s, d);
        }
        if let Ok(d) = parse_duration_or_zero(&s) {
            assert_within_range(&s, d);
        }
    }

    #[test]
    fn durations_read_seconds_up_to_a_year(n in 1u64..=365 * 24 * 60 * 60) {
        let d = Duration::from_secs(n);
        prop_assert_eq!(parse_duration(&format!("{n}s")), Ok(d));
        prop_assert_eq!(parse_duration_or_zero(&format!("{n}s")), Ok(d));
    }

    #[test]
    fn config_text_never_panics(s in text(TOML)) {
        let mut config = Config::default();
        let _ = config.load_str(&s, &defaults());
        let _ = config.finish();
    }

    #[test]
    fn a_written_host_loads_back(
        name in "[A-Za-z0-9._-]{1,20}",
        user in "[a-z_][a-z0-9_-]{0,10}",
        host in host(),
        port in 1u16..,
    ) {
        let text = format!("[hosts.\"{name}\"]\naddress = \"{user}@{}\"\n", host_port(&host, port));
        let mut config = Config::default();
        prop_assert!(config.load_str(&text, &defaults()).is_ok(), "{}", text);
        prop_assert!(config.finish().is_ok());
        prop_assert_eq!(config.default_host.as_deref(), Some(name.as_str()));
        let loaded = &config.hosts[&name];
        prop_assert_eq!((&loaded.user, &loaded.hostname, loaded.port), (&user, &host, port));
        prop_assert_eq!(&loaded.settings.identities, &vec![PathBuf::from("/keys/id_ed25519")]);
    }

    #[test]
    fn destinations_never_panic(s in text(HOST_FIELDS)) {
        let mut config = Config::default();
        if config.add_destination(&s, &defaults()).is_ok() {
            let host = &config.hosts[DEFAULT_HOST_NAME];
            prop_assert!(!host.hostname.is_empty() && host.port != 0, "{s:?}: {host:?}");
        }
    }

    #[test]
    fn a_written_destination_parses_back(
        user in "[a-z_][a-z0-9_.-]{0,10}",
        host in host(),
        port in 1u16..,
    ) {
        let mut config = Config::default();
        let destination = format!("{user}@{}", host_port(&host, port));
        prop_assert!(config.add_destination(&destination, &defaults()).is_ok(), "{}", destination);
        let parsed = &config.hosts[DEFAULT_HOST_NAME];
        prop_assert_eq!((&parsed.user, &parsed.hostname, parsed.port), (&user, &host, port));
    }

    #[test]
    fn known_hosts_never_panic(
        text in text(KNOWN_HOSTS),
        host in text(HOST_FIELDS),
        port in any::<u16>(),
    ) {
        let key = key(KEY_A);
        let accepted = known_hosts::check(&text, &host, port, &key).is_ok();
        let known = known_hosts::host_is_known(&text, &host, port);
        prop_assert!(!accepted || known, "{text:?} accepts {host:?}:{port} but does not know it");
        let _ = known_hosts::preferred_host_key_order(
            &text,
            &host,
            port,
            &[russh::keys::Algorithm::Ed25519],
        );
    }

    #[test]
    fn a_written_known_host_is_accepted_and_others_are_not(
        host in host(),
        port in any::<u16>(),
        upper in any::<bool>(),
    ) {
        let mut name = lookup_name(&host, port);
        if upper {
            name = name.to_ascii_uppercase();
        }
        let text = format!("# written by a test\n{name} ssh-ed25519 {KEY_A} comment\n");
        prop_assert!(known_hosts::check(&text, &host, port, &key(KEY_A)).is_ok(), "{}", text);
        prop_assert!(known_hosts::host_is_known(&text, &host, port));
        prop_assert_eq!(
            known_hosts::check(&text, &host, port, &key(KEY_B)),
            Err(HostKeyProblem::Changed { lines: vec![2] })
        );
        let revoked = format!("{text}@revoked * ssh-ed25519 {KEY_A}\n");
        prop_assert_eq!(
            known_hosts::check(&revoked, &host, port, &key(KEY_A)),
            Err(HostKeyProblem::Revoked { line: 3 })
        );
        let other = if port == 22 { 2222 } else { 22 };
        prop_assert_eq!(
            known_hosts::check(&text, &host, other, &key(KEY_A)),
            Err(HostKeyProblem::Unknown)
        );
    }

    #[test]
    fn token_files_never_panic(text in text(TOKENS)) {
        if let Ok(set) = TokenSet::parse(&text) {
            prop_assert!(!set.is_empty());
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let token = line.split_once(':').map_or(line, |(_, token)| token);
                prop_assert!(set.verify(token).is_some(), "{token:?} of {text:?}");
            }
        }
        if let Ok(set) = TokenSet::parse(&text) {
            let _ = set.verify(&text);
        }
    }

    #[test]
    fn a_written_token_file_verifies_each_token_and_nothing_else(
        entries in proptest::collection::vec(
            (
                proptest::option::of("[A-Za-z0-9._@-]{1,16}"
                    .prop_filter("auto names are token1, token2…", |n| !n.starts_with("token"))),
                "[!-~]{16,48}",
                "[A-Za-z0-9+/=_-]{16,48}",
            ),
            1..8,
        ),
        crlf in any::<bool>(),
        which in any::<proptest::sample::Index>(),
        change in any::<proptest::sample::Index>(),
    ) {
        // Names and tokens must differ from line to line.
        let mut names = std::collections::BTreeSet::new();
        let mut tokens = std::collections::BTreeSet::new();
        let mut expected = Vec::new();
        let mut lines = vec!["# tokens".to_string(), String::new()];
        let mut unnamed = 0;
        for (name, named_token, bare_token) in entries {
            let (name, token, line) = match name {
                Some(name) => (name.clone(), named_token.clone(), format!("  {name}:{named_token}  ")),
                None => {
                    unnamed += 1;
                    (format!("token{unnamed}"), bare_token.clone(), bare_token)
                }
            };
            prop_assume!(names.insert(name.clone()) && tokens.insert(token.clone()));
            lines.push(line);
            expected.push((name, token));
        }
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let set = TokenSet::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text:?}")))?;
        prop_assert_eq!(set.len(), expected.len());
        for (name, token) in &expected {
            prop_assert_eq!(set.verify(token), Some(name.as_str()));
        }
        let (_, token) = &expected[which.index(expected.len())];
        let mut modified: Vec<char> = token.chars().collect();
        let at = change.index(modified.len());
        modified[at] = if modified[at] == 'x' { 'y' } else { 'x' };
        let modified: String = modified.into_iter().collect();
        for wrong in [modified, format!("{token}x"), token[1..].to_string()] {
            if !tokens.contains(&wrong) {
                prop_assert_eq!(set.verify(&wrong), None, "{:?}", wrong);
            }
        }
    }

    #[test]
    fn forward_rules_never_panic(
        permit_open in proptest::collection::vec(text(HOST_FIELDS), 0..4),
        permit_listen in proptest::collection::vec(text(HOST_FIELDS), 0..4),
        target in text(HOST_FIELDS),
        port in any::<u16>(),
    ) {
        if let Ok(policy) = HostPolicy::parse(&permit_open, &permit_listen) {
            let _ = policy.check_open("h", &target, port);
            let _ = policy.check_listen("h", &target, port);
        }
    }

    #[test]
    fn a_written_rule_permits_its_own_target(host in host(), port in 1u16..) {
        let rule = host_port(&host, port);
        let policy = HostPolicy::parse(std::slice::from_ref(&rule), std::slice::from_ref(&rule))
            .map_err(TestCaseError::fail)?;
        prop_assert!(policy.check_open("h", &host, port).is_ok(), "{}", rule);
        prop_assert!(policy.check_listen("h", &host, port).is_ok(), "{}", rule);
        prop_assert!(policy.check_open("h", &host, port ^ 1).is_err(), "{}", rule);
        let any = HostPolicy::parse(&[], &[]).map_err(TestCaseError::fail)?;
        prop_assert!(any.check_open("h", &host, port).is_ok());
    }

    #[test]
    fn bind_rules_never_panic(
        allowed in proptest::collection::vec(text(HOST_FIELDS), 0..4),
        bind in text(HOST_FIELDS),
        ip in any::<IpAddr>(),
    ) {
        let policy = BindPolicy::new(allowed);
        if ip.is_loopback() {
            prop_assert!(policy.check(&bind, ip).is_ok());
        } else {
            let _ = policy.check(&bind, ip);
        }
        prop_assert!(BindPolicy::new(vec!["*".into()]).check(&bind, ip).is_ok());
        prop_assert!(BindPolicy::new(vec![ip.to_string()]).check(&bind, ip).is_ok());
    }

    #[test]
    fn listen_addresses_never_panic(s in text(HOST_FIELDS)) {
        match ListenAddr::from_str(&s) {
            Ok(ListenAddr::Tcp(addr)) => prop_assert_eq!(addr, s),
            Ok(ListenAddr::Unix(path)) => {
                prop_assert!(s.starts_with("unix:") && !path.as_os_str().is_empty());
            }
            Err(_) => prop_assert!(s == "unix:" || s == "unix://"),
        }
    }
}

proptest! {
    // Up to 64 KiB each: fewer cases keep the test quick.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn long_inputs_never_panic(
        size in long_text(SIZES),
        duration in long_text(DURATIONS),
        toml in long_text(TOML),
        known in long_text(KNOWN_HOSTS),
        tokens in long_text(TOKENS),
        field in long_text(HOST_FIELDS),
    ) {
        let _ = parse_size(&size);
        let _ = parse_duration(&duration);
        let _ = parse_duration_or_zero(&duration);
        let _ = Config::default().load_str(&toml, &defaults());
        let _ = known_hosts::check(&known, "host", 22, &key(KEY_A));
        let _ = known_hosts::host_is_known(&known, &field, 2222);
        let _ = TokenSet::parse(&tokens);
        let _ = Config::default().add_destination(&field, &defaults());
        let _ = HostPolicy::parse(std::slice::from_ref(&field), std::slice::from_ref(&field));
        let _ = BindPolicy::new(vec![field.clone()]).check(&field, IpAddr::from([10, 0, 0, 1]));
        let _ = ListenAddr::from_str(&field);
    }
}

/// Deeply nested TOML arrays and tables: the parser must refuse them, not
/// overflow its stack.
#[test]
fn deeply_nested_config_is_refused() {
    for depth in [64, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{a=", "}")] {
            let text = format!("x = {}{}", open.repeat(depth), close.repeat(depth));
            let _ = Config::default().load_str(&text, &defaults());
        }
    }
}

/// Ok durations stay within the range the API accepts.
fn assert_within_range(s: &str, d: Duration) {
    assert!(d <= tunnel_proto::duration::MAX, "{s:?} gave {d:?}");
}
