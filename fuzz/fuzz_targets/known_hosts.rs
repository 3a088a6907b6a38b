//! known_hosts: `check`, `host_is_known` and `preferred_host_key_order` on
//! `TEXT \0 HOST \0 PORT` (a missing or bad port is 22), with a fixed
//! ed25519 key. Never a panic; a host whose key is accepted is known.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use russh::keys::{Algorithm, PublicKey};
use tunneld::parsers::known_hosts;

/// The key the seeds' lines carry.
static KEY: LazyLock<PublicKey> = LazyLock::new(|| {
    PublicKey::from_openssh(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICnRE9ylNWZNfDRVa98RsqPhth2rYxLy3DGwog0u+4+J",
    )
    .expect("a valid ed25519 key")
});

fuzz_target!(|data: &[u8]| {
    let [text, host, port] =
        <[String; 3]>::try_from(tunneld_fuzz::fields(data, 3)).expect("three fields");
    let port = tunneld_fuzz::port(&port);
    let accepted = known_hosts::check(&text, &host, port, &KEY).is_ok();
    let known = known_hosts::host_is_known(&text, &host, port);
    assert!(!accepted || known, "{host:?}:{port} accepted but not known");
    let _ = known_hosts::preferred_host_key_order(
        &text,
        &host,
        port,
        &[Algorithm::Ed25519, Algorithm::Rsa { hash: None }],
    );
});
