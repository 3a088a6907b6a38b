//! Parsing of the values users type: OpenSSH `-L`/`-R`/`-D` forward specs,
//! `PermitRemoteOpen` patterns, ports, durations, counts and `NAME=VALUE`
//! pairs.
//!
//! These run as clap value parsers, so a bad value is rejected before any call
//! to tunneld, and clap's message names the flag it came with.
//!
//! - [`forward`]: the forward specs, by OpenSSH's `parse_forward` rules
//!   (`tunnel_proto::forward_spec`, shared with tunneld's config file).
//! - [`permit`]: `--permit-remote-open` patterns.
//! - [`values`]: ports, durations, counts, `NAME=VALUE`, non-empty values.

pub use tunnel_proto::forward_spec as forward;
pub mod permit;
pub mod values;

pub use forward::{
    ForwardSpec, Listen, SpecError, Target, TcpListen, WILDCARD, parse_dynamic_forward,
    parse_local_forward, parse_remote_forward,
};
pub use permit::{check_permit_list, parse_permit_remote_open};
pub use values::{
    parse_count, parse_duration, parse_env, parse_nonempty, parse_port, parse_port_or_pick,
};
