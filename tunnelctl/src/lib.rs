//! The parsers of `tunnelctl`, the command-line client for tunneld, as a
//! library: the binary's clap value parsers, reachable from the fuzz targets
//! (`fuzz/`) and the property tests (`tests/spec_prop.rs`).
//!
//! Everything else of the client lives in the binary (`main.rs`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod spec;
