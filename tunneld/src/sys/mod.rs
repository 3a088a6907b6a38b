//! OS helpers that know nothing of tunnels, hosts or the API: listeners with a
//! backlog that holds a burst, what an accept loop does when accepting fails,
//! and files only their owner may read.

pub mod accept_backoff;
pub mod secret_file;
pub mod tcp_listener;
pub mod user;
