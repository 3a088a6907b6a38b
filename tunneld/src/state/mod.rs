//! What tunneld keeps across restarts: persisted hosts and tunnels and the
//! ids given out, in an embedded store (redb) in the state directory.
//!
//! Architecture invariant: the store holds our own versioned records
//! ([`TunnelRecord`], [`HostRecord`]), never the API's messages nor anything redb's
//! encoding decides; it knows tunnels only as specs, not as running
//! things: the daemon decides what to record and when.

mod host_record;
mod record;
mod store;

pub use host_record::HostRecord;
pub use record::TunnelRecord;
pub use store::Store;
