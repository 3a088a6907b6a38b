//! End-to-end tests of tunneld: the real daemon binary, a real OpenSSH sshd,
//! real TCP and HTTP peers, all on ephemeral ports of 127.0.0.1.
//!
//! One test binary with one module per concern (matklad's "one integration
//! test crate"). Every test builds its own fixtures, runs under
//! [`support::TEST_TIMEOUT`], and polls instead of sleeping, so tests run in
//! parallel in any order. The first test that needs `tunneld` builds it once
//! (see `tunneld_tests::binaries`).

mod support;

mod agent;
mod attach;
mod check_config;
mod ciphers;
mod cli;
mod declared;
mod drain;
mod errors;
mod exec;
mod exec_stream;
mod fixtures;
mod forward_dynamic;
mod forward_local;
mod forward_remote;
mod forward_unix;
mod grpcurl;
mod health_listen;
mod host_certificates;
mod host_thread;
mod hostile;
mod hosts_runtime;
mod identities;
mod isolation;
mod jump;
mod lifecycle;
mod list_close;
mod load;
mod lossless;
mod metrics;
mod persist;
mod reconnect;
mod rekey;
mod security;
mod service_manager;
mod ssh_config;
mod user_certificates;
mod watch;
