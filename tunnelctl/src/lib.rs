//! The parts of `tunnelctl`, the command-line client for tunneld, that are
//! a library:
//! - [`spec`]: the binary's clap value parsers, reachable from the fuzz
//!   targets (`fuzz/`) and the property tests (`tests/spec_prop.rs`).
//! - [`terminal`]: the local terminal for `exec -t` and `ssh` — OpenSSH's
//!   rule for when to ask for a pty, raw mode, window size and its changes;
//!   here so its unit tests run with `cargo test --lib`.
//!
//! Everything else of the client lives in the binary (`main.rs`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod spec;
pub mod terminal;
