//! Talking to tunneld, in three parts:
//! - [`addr`]: what `--addr` accepts (TCP, TLS or a Unix socket);
//! - [`connect`]: the credentials sent along ([`Remote`]), connecting within
//!   a deadline, and one bounded call;
//! - [`explain`]: transport failures and gRPC statuses as one-line messages
//!   that say what to do.

mod addr;
mod connect;
mod explain;

pub use addr::Addr;
pub use connect::{Client, Remote, Transport, call, channel, connect};
pub use explain::{has_code, status_error, timeout_error};
