//! The gRPC adapter: validates and converts `tunnel.v1` messages, delegates
//! to [`crate::daemon::Daemon`], and maps errors to statuses.
//!
//! Architecture invariant: prost/tonic types appear only in this module and
//! in [`crate::server`]; the domain below never sees them.

pub mod audit;
mod auth;
mod caller;
mod convert;
mod exec_stream;
mod service;
mod status;
pub mod tokens;

pub use auth::{AuthLayer, AuthPolicy};
pub use service::TunnelApi;
