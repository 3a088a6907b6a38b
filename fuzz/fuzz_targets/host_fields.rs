//! Host and address fields of flags, the config file and API requests:
//! `HostPolicy` (permit_open, permit_listen) and its checks, `BindPolicy`
//! (allow_local_bind), `ListenAddr` (`--listen`) and `--ssh` destinations.
//! The input is NUL-separated fields (lists are a field's lines):
//!
//! `PERMIT_OPEN \0 PERMIT_LISTEN \0 TARGET \0 PORT \0 ALLOW_LOCAL_BIND \0 IP
//! \0 LISTEN \0 DESTINATION`
//!
//! Never a panic; loopback and listed addresses may always be bound, a
//! destination that parses names a host and a port.
//!
//! The API request converters (`tunneld::grpc`'s `convert`) are private to
//! tunneld, so they are reached here only through what they call.

#![no_main]

use std::{net::IpAddr, str::FromStr};

use libfuzzer_sys::fuzz_target;
use tunneld::{
    BindPolicy, Config, HostPolicy, ListenAddr,
    config::{DEFAULT_HOST_NAME, HostDefaults, HostSettings},
};
use tunneld_fuzz::{lines, port};

fuzz_target!(|data: &[u8]| {
    let f = tunneld_fuzz::fields(data, 8);
    let (target, port) = (&f[2], port(&f[3]));
    if let Ok(policy) = HostPolicy::parse(&lines(&f[0]), &lines(&f[1])) {
        let _ = policy.check_open("h", target, port);
        let _ = policy.check_listen("h", target, port);
    }

    let ip = IpAddr::from_str(f[5].trim()).unwrap_or(IpAddr::from([10, 0, 0, 1]));
    let binds = BindPolicy::new(lines(&f[4]));
    let allowed = binds.check(target, ip).is_ok();
    assert!(allowed || !ip.is_loopback(), "loopback {ip} refused");
    assert!(
        BindPolicy::new(vec![ip.to_string()])
            .check(target, ip)
            .is_ok()
    );

    for field in &f {
        match ListenAddr::from_str(field) {
            Ok(ListenAddr::Tcp(addr)) => assert_eq!(&addr, field),
            Ok(ListenAddr::Unix(path)) => assert!(!path.as_os_str().is_empty()),
            Err(_) => assert!(field == "unix:" || field == "unix://"),
        }
    }

    let defaults = HostDefaults::without_ssh_config(HostSettings {
        identities: vec!["/keys/id_ed25519".into()],
        known_hosts: "/keys/known_hosts".into(),
        ..HostSettings::openssh()
    });
    for destination in [&f[7], target] {
        let mut config = Config::default();
        if config.add_destination(destination, &defaults).is_ok() {
            let host = &config.hosts[DEFAULT_HOST_NAME];
            assert!(
                !host.hostname.is_empty() && host.port != 0,
                "{destination:?}: {host:?}"
            );
        }
    }
});
