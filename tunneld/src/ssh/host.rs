//! A configured SSH server and the one connection tunneld holds to it:
//! opened on first use, shared by every tunnel and exec, reopened by the next
//! request after it died.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{ForwardRoutes, SshSession};
use crate::{
    config::HostConfig,
    error::{Error, Result},
};

/// State of the connection to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected yet; the first request connects.
    Idle,
    /// Connecting or authenticating.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// The last attempt failed or the connection was lost.
    Failed,
}

/// A point-in-time view of a host.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    /// Host name.
    pub name: String,
    /// `user@host:port`.
    pub address: String,
    /// Connection state.
    pub state: ConnectionState,
    /// Detail, e.g. the last error.
    pub detail: String,
    /// When the current connection was made.
    pub connected_at: Option<SystemTime>,
}

struct Link {
    session: Option<Arc<SshSession>>,
    state: ConnectionState,
    detail: String,
}

/// One configured SSH server.
pub struct SshHost {
    config: Arc<HostConfig>,
    /// Remote-forward routing, kept across reconnects.
    routes: Arc<ForwardRoutes>,
    // std Mutex: held for field updates only, never across an await.
    link: Arc<Mutex<Link>>,
    /// Serialises connection attempts so concurrent requests share one.
    connecting: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
}

impl SshHost {
    /// A host that connects on first use; `shutdown` stops new connections.
    pub fn new(config: HostConfig, shutdown: CancellationToken) -> Self {
        SshHost {
            config: Arc::new(config),
            routes: Arc::default(),
            link: Arc::new(Mutex::new(Link {
                session: None,
                state: ConnectionState::Idle,
                detail: String::new(),
            })),
            connecting: tokio::sync::Mutex::new(()),
            shutdown,
        }
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Where forwarded channels of this host's remote forwards are routed.
    pub fn routes(&self) -> &Arc<ForwardRoutes> {
        &self.routes
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live_session(&self) -> Option<Arc<SshSession>> {
        self.link().session.clone().filter(|s| !s.is_closed())
    }

    /// The live connection, connecting first if there is none.
    pub async fn session(&self) -> Result<Arc<SshSession>> {
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        {
            let mut link = self.link();
            link.state = ConnectionState::Connecting;
            link.detail.clear();
        }
        let connect = SshSession::connect(self.config.clone(), self.routes.clone());
        let result = tokio::select! {
            r = connect => r,
            () = self.shutdown.cancelled() => Err(Error::ShuttingDown),
        };
        let mut link = self.link();
        match result {
            Ok(session) => {
                let session = Arc::new(session);
                link.session = Some(session.clone());
                link.state = ConnectionState::Connected;
                drop(link);
                self.watch(session.clone());
                Ok(session)
            }
            Err(e) => {
                link.session = None;
                link.state = ConnectionState::Failed;
                link.detail = e.to_string();
                tracing::warn!(host = %self.config.name, "SSH connection failed: {e}");
                Err(e)
            }
        }
    }

    /// Marks the host failed when this session ends, unless replaced by then.
    fn watch(&self, session: Arc<SshSession>) {
        let link = self.link.clone();
        let span = tracing::info_span!("ssh_watch", host = %self.config.name);
        tokio::spawn(
            async move {
                session.closed().await;
                let mut link = link.lock().unwrap_or_else(|p| p.into_inner());
                if link
                    .session
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(s, &session))
                {
                    link.session = None;
                    link.state = ConnectionState::Failed;
                    link.detail =
                        format!("{}; the next request reconnects", session.close_reason());
                }
            }
            .instrument(span),
        );
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> HostSnapshot {
        let link = self.link();
        let live = link.session.as_ref().filter(|s| !s.is_closed());
        let (state, detail) = match (live, link.state) {
            (None, ConnectionState::Connected) => (
                ConnectionState::Failed,
                "the SSH connection was lost".to_string(),
            ),
            (_, s) => (s, link.detail.clone()),
        };
        HostSnapshot {
            name: self.config.name.clone(),
            address: self.config.display_address(),
            state,
            detail,
            connected_at: live.map(|s| s.connected_at),
        }
    }

    /// Closes the connection, if any.
    pub async fn disconnect(&self) {
        let session = self.link().session.take();
        if let Some(s) = session {
            s.disconnect().await;
            self.link().state = ConnectionState::Idle;
        }
    }
}
