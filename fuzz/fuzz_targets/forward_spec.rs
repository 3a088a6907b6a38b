//! tunnelctl's value parsers (`tunnelctl::spec`): the OpenSSH `-L`/`-R`
//! forward spec, ports, counts, durations, `NAME=VALUE` and non-empty
//! values. None may panic, and what they accept must hold its invariants;
//! an accepted forward spec, written back, parses to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelctl::spec::{
    ForwardSpec, parse_count, parse_duration, parse_env, parse_nonempty, parse_port,
    parse_port_or_pick,
};

fuzz_target!(|data: &[u8]| {
    let s = tunneld_fuzz::text(data);
    if let Ok(spec) = s.parse::<ForwardSpec>() {
        assert_ne!(spec.target_port, 0, "{s:?}");
        assert!(!spec.target_host.is_empty(), "{s:?}");
        let again = write(&spec);
        assert_eq!(
            again.parse::<ForwardSpec>(),
            Ok(spec),
            "{s:?} written as {again:?}"
        );
    }
    if let Ok(port) = parse_port(&s) {
        assert_ne!(port, 0, "{s:?}");
    }
    let _ = parse_port_or_pick(&s);
    if let Ok(n) = parse_count(&s) {
        assert_ne!(n, 0, "{s:?}");
    }
    if let Ok(d) = parse_duration(&s) {
        assert!(!d.is_zero(), "{s:?}");
        assert!(d <= tunnel_proto::duration::MAX, "{s:?} gave {d:?}");
    }
    if let Ok((name, value)) = parse_env(&s) {
        assert_eq!(format!("{name}={value}"), s);
    }
    if let Ok(v) = parse_nonempty(&s) {
        assert_eq!(v, s);
    }
});

/// A spec as a user writes it, IPv6 addresses in brackets.
fn write(spec: &ForwardSpec) -> String {
    let field = |s: &str| {
        if s.contains(':') {
            format!("[{s}]")
        } else {
            s.to_string()
        }
    };
    let bind = match &spec.bind {
        Some(bind) => format!("{}:", field(bind)),
        None => String::new(),
    };
    format!(
        "{bind}{}:{}:{}",
        spec.listen_port,
        field(&spec.target_host),
        spec.target_port
    )
}
