//! Properties of the parsers users reach through tunnelctl's flags (issue 16,
//! "Fuzzing"): none panics on any string, ports and counts accept exactly
//! their ranges, a forward spec written from its fields parses back to
//! them, `-L` and `-D` accept subsets of `-R`, and durations stay within
//! the API's range. The fuzz target
//! `fuzz/fuzz_targets/forward_spec.rs` checks the same on inputs libFuzzer
//! grows; these run on stable in `cargo test`.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use proptest::prelude::*;
use tunnel_proto::duration::MAX as MAX_DURATION;
use tunnelctl::spec::{
    ForwardSpec, Listen, Target, TcpListen, WILDCARD, parse_count, parse_duration,
    parse_dynamic_forward, parse_env, parse_local_forward, parse_nonempty,
    parse_permit_remote_open, parse_port, parse_port_or_pick,
};

/// Every parser in `spec`, on one string; the results only need to exist.
fn parse_all(s: &str) {
    let any = s.parse::<ForwardSpec>();
    if let Ok(spec) = &any {
        match &spec.target {
            Target::Tcp { host, port } => {
                assert_ne!(*port, 0, "{s:?}");
                assert!(!host.is_empty() && !host.contains('/'), "{s:?}");
            }
            Target::Path(path) => assert!(path.starts_with('/'), "{s:?}"),
            Target::Dynamic => {}
        }
        if let Listen::Path(path) = &spec.listen {
            assert!(path.starts_with('/'), "{s:?}");
        }
        assert_eq!(
            spec.to_string().parse::<ForwardSpec>(),
            Ok(spec.clone()),
            "{s:?}"
        );
    }
    if let Ok(local) = parse_local_forward(s) {
        assert!(!local.is_dynamic(), "{s:?}");
        assert_eq!(any.as_ref(), Ok(&local), "{s:?}");
    }
    if let Ok(tcp) = parse_dynamic_forward(s) {
        let spec = ForwardSpec {
            listen: Listen::Tcp(tcp),
            target: Target::Dynamic,
        };
        assert_eq!(any.as_ref(), Ok(&spec), "{s:?}");
    }
    if let Ok(permit) = parse_permit_remote_open(s) {
        assert!(permit == "any" || permit == "none" || permit == s, "{s:?}");
    }
    if let Ok(port) = parse_port(s) {
        assert_ne!(port, 0, "{s:?}");
    }
    let _ = parse_port_or_pick(s);
    if let Ok(n) = parse_count(s) {
        assert_ne!(n, 0, "{s:?}");
    }
    if let Ok(d) = parse_duration(s) {
        assert!(!d.is_zero(), "{s:?}");
        assert!(d <= MAX_DURATION, "{s:?} gave {d:?}");
    }
    if let Ok((name, value)) = parse_env(s) {
        assert_eq!(format!("{name}={value}"), s);
    }
    if let Ok(v) = parse_nonempty(s) {
        assert_eq!(v, s);
    }
}

/// A TCP forward from its four fields.
fn tcp_spec(bind: Option<String>, listen_port: u16, host: String, port: u16) -> ForwardSpec {
    ForwardSpec {
        listen: Listen::Tcp(TcpListen {
            bind,
            port: listen_port,
        }),
        target: Target::Tcp { host, port },
    }
}

/// An absolute unix socket path, with the odd `:` or bracket in it.
fn socket_path() -> impl Strategy<Value = String> {
    "/[a-z0-9._:\\\\\\[\\]-]{1,40}(/[a-z0-9._]{1,20}){0,2}"
}

/// A host as users type them: a DNS name, an IPv4 or an IPv6 address.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
        any::<Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        Just("localhost".to_string()),
    ]
}

/// Strings near the spec grammar, so the parser's branches get reached.
fn spec_like() -> impl Strategy<Value = String> {
    "[\\[\\]:*a-f0-9.%-]{0,40}"
}

proptest! {
    #[test]
    fn no_parser_panics_on_any_string(s in any::<String>()) {
        parse_all(&s);
    }

    #[test]
    fn no_parser_panics_on_control_characters(s in "[\\x00-\\x1f\\x7f:\\[\\]0-9 =]{0,64}") {
        parse_all(&s);
    }

    #[test]
    fn no_parser_panics_on_spec_like_strings(s in spec_like()) {
        parse_all(&s);
    }

    #[test]
    fn no_parser_panics_on_huge_numbers(s in "[-+]?[0-9]{1,60}(s|ms|h|d)?") {
        parse_all(&s);
        parse_all(&format!("{s}:localhost:{s}"));
    }

    #[test]
    fn parse_port_accepts_exactly_1_to_65535(n in -100_000i64..200_000) {
        let expected = u16::try_from(n).ok().filter(|p| *p != 0);
        prop_assert_eq!(parse_port(&n.to_string()).ok(), expected);
    }

    #[test]
    fn parse_port_or_pick_accepts_exactly_0_to_65535(n in any::<i64>()) {
        prop_assert_eq!(parse_port_or_pick(&n.to_string()).ok(), u16::try_from(n).ok());
    }

    #[test]
    fn parse_count_accepts_exactly_1_to_u32_max(n in any::<i64>()) {
        let expected = u32::try_from(n).ok().filter(|n| *n != 0);
        prop_assert_eq!(parse_count(&n.to_string()).ok(), expected);
    }

    #[test]
    fn parse_duration_reads_seconds_up_to_its_max(n in 1u64..=MAX_DURATION.as_secs() + 1) {
        let d = Duration::from_secs(n);
        prop_assert_eq!(parse_duration(&format!("{n}s")).ok(), Some(d).filter(|d| *d <= MAX_DURATION));
    }

    #[test]
    fn parse_env_splits_at_the_first_equals(
        name in "[A-Za-z_][A-Za-z0-9_]{0,20}",
        value in any::<String>(),
    ) {
        prop_assert_eq!(parse_env(&format!("{name}={value}")), Ok((name, value)));
    }

    #[test]
    fn parse_nonempty_rejects_only_blank(s in any::<String>()) {
        prop_assert_eq!(parse_nonempty(&s).is_ok(), !s.trim().is_empty());
    }

    #[test]
    fn a_formatted_spec_parses_back_to_its_fields(
        bind in proptest::option::of(prop_oneof![host(), Just(WILDCARD.to_string())]),
        listen_port in any::<u16>(),
        target_host in host(),
        target_port in 1u16..,
    ) {
        let spec = tcp_spec(bind, listen_port, target_host, target_port);
        let text = spec.to_string();
        prop_assert_eq!(text.parse::<ForwardSpec>(), Ok(spec), "{}", text);
    }

    #[test]
    fn a_formatted_socket_spec_parses_back_to_its_fields(
        listen_path in proptest::option::of(socket_path()),
        listen_port in any::<u16>(),
        target in prop_oneof![
            socket_path().prop_map(Target::Path),
            (host(), 1u16..).prop_map(|(host, port)| Target::Tcp { host, port }),
            Just(Target::Dynamic),
        ],
    ) {
        let listen = match listen_path {
            Some(path) => Listen::Path(path),
            None => Listen::Tcp(TcpListen { bind: None, port: listen_port }),
        };
        let spec = ForwardSpec { listen, target };
        let text = spec.to_string();
        prop_assert_eq!(text.parse::<ForwardSpec>(), Ok(spec), "{}", text);
    }

    #[test]
    fn an_empty_bind_field_means_every_interface(
        listen_port in any::<u16>(),
        target_host in host(),
        target_port in 1u16..,
    ) {
        let spec = tcp_spec(None, listen_port, target_host.clone(), target_port);
        let parsed = format!(":{spec}").parse::<ForwardSpec>();
        prop_assert_eq!(
            parsed,
            Ok(tcp_spec(Some(WILDCARD.to_string()), listen_port, target_host, target_port))
        );
    }
}

proptest! {
    // Up to 64 KiB each: fewer cases keep the test quick.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn no_parser_panics_on_long_strings(s in proptest::collection::vec(any::<char>(), 0..65_536)) {
        parse_all(&s.into_iter().collect::<String>());
    }

    #[test]
    fn no_parser_panics_on_long_spec_like_strings(
        parts in proptest::collection::vec(spec_like(), 0..2_000),
    ) {
        parse_all(&parts.join(":"));
    }
}
