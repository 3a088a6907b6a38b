//! Who is using one SSH connection right now, so that a connection whose
//! local reader is slow may hold the whole SSH connection back while, and
//! only while, nobody else needs it.
//!
//! russh 0.65 re-opens a channel's window as soon as data arrives, so the
//! only brake on a sender is to stop taking a channel's messages, which
//! stops russh's session loop and with it every channel of the connection.
//! A forwarded connection therefore queues what its reader has not taken
//! yet, up to `--max-connection-buffer`. Past that, if it is the only
//! connection being carried, no remote forward waits for the server's
//! channels and no request is under way, it stops taking messages: sshd's
//! socket fills and sshd stops reading the target, the backpressure
//! `ssh -L` gets from the channel window. The moment anyone else wants the
//! connection (a new channel, a remote forward, another request), it goes
//! back to the shared-connection policy and is reset if still over its
//! budget.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::Notify;

use super::ForwardRoutes;

/// The users of one SSH connection.
pub struct SessionUse {
    /// Connections whose bytes are being carried over it.
    relays: AtomicUsize,
    /// Requests (channel opens, global requests) awaiting the server.
    requests: AtomicUsize,
    /// Signalled whenever a request starts.
    wanted: Notify,
    /// The host's remote forwards: while there is one, the server may open
    /// a channel at any moment and the session loop must keep reading.
    routes: Arc<ForwardRoutes>,
}

impl SessionUse {
    /// Nobody uses the connection yet; `routes` are its host's remote
    /// forwards.
    pub fn new(routes: Arc<ForwardRoutes>) -> Self {
        SessionUse {
            relays: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            wanted: Notify::new(),
            routes,
        }
    }

    /// Counts a carried connection until the guard is dropped.
    pub fn relay(self: &Arc<Self>) -> UseGuard {
        self.relays.fetch_add(1, Ordering::SeqCst);
        UseGuard {
            owner: self.clone(),
            counter: Counter::Relays,
        }
    }

    /// Counts a request until the guard is dropped, and wakes whoever holds
    /// the connection back.
    pub fn request(self: &Arc<Self>) -> UseGuard {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.wanted.notify_waiters();
        UseGuard {
            owner: self.clone(),
            counter: Counter::Requests,
        }
    }

    /// Resolves once someone else wants the connection: when
    /// [`SessionUse::alone`] was true after this was called, it stops being
    /// true by the time this resolves.
    pub fn wanted(&self) -> impl Future<Output = ()> + '_ {
        // A `Notified` counts every `notify_waiters` made after its
        // creation, even before it is first polled.
        self.wanted.notified()
    }

    /// Whether exactly one connection is being carried (the caller's), no
    /// request is under way and no remote forward is registered.
    pub fn alone(&self) -> bool {
        self.relays.load(Ordering::SeqCst) == 1
            && self.requests.load(Ordering::SeqCst) == 0
            && self.routes.is_empty()
    }
}

enum Counter {
    Relays,
    Requests,
}

/// Keeps one use counted; see [`SessionUse::relay`] and
/// [`SessionUse::request`].
pub struct UseGuard {
    owner: Arc<SessionUse>,
    counter: Counter,
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        let counter = match self.counter {
            Counter::Relays => &self.owner.relays,
            Counter::Requests => &self.owner.requests,
        };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_relay_is_alone_until_a_request_starts() {
        let routes = Arc::new(ForwardRoutes::default());
        let using = Arc::new(SessionUse::new(routes.clone()));
        let relay = using.relay();
        assert!(using.alone());

        let wanted = using.wanted();
        let request = using.request();
        assert!(!using.alone());
        tokio::time::timeout(std::time::Duration::from_secs(1), wanted)
            .await
            .expect("a request wakes whoever waits");
        drop(request);
        assert!(using.alone());

        let other = using.relay();
        assert!(!using.alone());
        drop(other);
        drop(relay);
        assert!(!using.alone());
    }

    #[tokio::test]
    async fn a_remote_forward_means_never_alone() {
        let routes = Arc::new(ForwardRoutes::default());
        let using = Arc::new(SessionUse::new(routes.clone()));
        let _relay = using.relay();
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let listener = crate::ssh::RemoteListener::Tcp {
            address: "127.0.0.1".into(),
            port: 9000,
        };
        routes.add(&listener, tx);
        assert!(!using.alone());
        routes.remove(&listener);
        assert!(using.alone());
    }
}
