//! tunnelctl's value parsers (`tunnelctl::spec`): the OpenSSH `-L`/`-R`/`-D`
//! forward specs, `--permit-remote-open` patterns, ports, counts,
//! durations, `NAME=VALUE` and non-empty values. None may panic, and what
//! they accept must hold its invariants; an accepted forward spec, written
//! back, parses to itself, and `-L` and `-D` accept subsets of `-R`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelctl::spec::{
    ForwardSpec, Listen, Target, parse_count, parse_duration, parse_dynamic_forward, parse_env,
    parse_local_forward, parse_nonempty, parse_permit_remote_open, parse_port,
    parse_port_or_pick,
};

fuzz_target!(|data: &[u8]| {
    let s = tunneld_fuzz::text(data);
    let any = s.parse::<ForwardSpec>();
    if let Ok(spec) = &any {
        match &spec.target {
            Target::Tcp { host, port } => {
                assert_ne!(*port, 0, "{s:?}");
                assert!(!host.is_empty(), "{s:?}");
            }
            Target::Path(path) => assert!(path.starts_with('/'), "{s:?}"),
            Target::Dynamic => {}
        }
        let again = spec.to_string();
        assert_eq!(
            again.parse::<ForwardSpec>().as_ref(),
            Ok(spec),
            "{s:?} written as {again:?}"
        );
    }
    if let Ok(local) = parse_local_forward(&s) {
        assert!(!local.is_dynamic(), "{s:?}");
        assert_eq!(any.as_ref(), Ok(&local), "{s:?}");
    }
    if let Ok(tcp) = parse_dynamic_forward(&s) {
        let spec = ForwardSpec {
            listen: Listen::Tcp(tcp),
            target: Target::Dynamic,
        };
        assert_eq!(any.as_ref(), Ok(&spec), "{s:?}");
    }
    let _ = parse_permit_remote_open(&s);
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
