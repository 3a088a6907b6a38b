//! A real unix-socket server for forwards whose target or listener is a
//! unix socket: reads to EOF, then answers with the SHA-256 of what it read
//! (a half-close checker, as [`crate::peers::TcpPeer::digest`]). Stops —
//! listener, connections and socket file — when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};

/// A digest server on a unix socket.
#[derive(Debug)]
pub struct UnixPeer {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UnixPeer {
    /// Listens on `path` (mode 0666, so sshd's session user may connect)
    /// and answers each connection with the hex SHA-256 of what it read.
    pub async fn digest(path: &Path) -> Result<UnixPeer> {
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding a unix peer on {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                while conns.try_join_next().is_some() {}
                conns.spawn(crate::peers::digest_conn(stream));
            }
        });
        Ok(UnixPeer {
            path: path.to_path_buf(),
            accepted,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for UnixPeer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to `path`, writes `data` while reading, half-closes, and reads
/// to EOF; returns what was read.
pub async fn exchange(path: &Path, data: &[u8]) -> Result<Vec<u8>> {
    let stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("connecting to {}", path.display()))?;
    crate::peers::exchange_on(stream, data).await
}
