//! OS helpers that know nothing of tunnels, hosts or the API: listeners with a
//! backlog that holds a burst, what an accept loop does when accepting fails,
//! files only their owner may read,
//! unix sockets only their owner may connect to, and systemd's service
//! notifications.

pub mod accept_backoff;
pub mod secret_file;
pub mod systemd;
pub mod tcp_listener;
pub mod unix_listener;
pub mod user;
