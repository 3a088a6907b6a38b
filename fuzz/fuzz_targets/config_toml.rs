//! The TOML config file: `Config::load_str` with fixed host defaults, then
//! `Config::finish`, and the cipher list on its own. Never a panic; a
//! config that loads holds hosts a connection can be made to.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tunneld::{
    Config,
    config::{HostDefaults, HostSettings},
    parsers::ciphers,
};

fuzz_target!(|data: &[u8]| {
    let text = tunneld_fuzz::text(data);
    let defaults = HostDefaults::without_ssh_config(HostSettings {
        identities: vec!["/keys/id_ed25519".into()],
        known_hosts: "/keys/known_hosts".into(),
        ..HostSettings::openssh()
    });
    let mut config = Config::default();
    let loaded = config.load_str(&text, &defaults).is_ok();
    if loaded && config.finish().is_ok() {
        if let Some(name) = &config.default_host {
            assert!(
                config.hosts.contains_key(name),
                "default_host {name:?} of {text:?}"
            );
        }
        for host in config.hosts.values() {
            assert!(!host.hostname.is_empty() && host.port != 0, "{host:?}");
            assert!(
                host.settings.reconnect.min <= host.settings.reconnect.max,
                "{host:?}"
            );
            assert!(
                host.settings.keepalive_interval <= tunnel_proto::duration::MAX,
                "{host:?}"
            );
            assert!(
                host.settings.rekey_limit > 0 && !host.settings.ciphers.is_empty(),
                "{host:?}"
            );
        }
    }
    let _ = ciphers::parse(&tunneld_fuzz::lines(&text));
});
