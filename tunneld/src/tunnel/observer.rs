//! Who hears of a tunnel's changes: an observer the tunnel defines and the
//! daemon implements (its watch bus; metrics later), so that tunnels know
//! nothing of who listens.

use super::{TunnelEvent, TunnelSnapshot};

/// Hears every change of every tunnel. Calls must not block: they run on
/// the tunnel's tasks.
pub trait TunnelObserver: Send + Sync {
    /// A tunnel opened, changed state, or closed: how it is now.
    fn tunnel_changed(&self, tunnel: TunnelSnapshot);

    /// A connection of the tunnel `tunnel_id` opened or closed.
    fn connection_event(&self, tunnel_id: &str, event: &TunnelEvent);
}
