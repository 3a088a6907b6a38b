//! Dialling an SSH server: the byte stream the handshake then runs over.
//! TCP here; a host behind jump hosts gets its stream from `jump.rs` (a
//! channel of the last hop), a proxy command would return its own, and the
//! handshake does not change.

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::HostConfig;
use crate::error::{Error, Result};

/// Opens the stream to `host`'s SSH server.
pub async fn dial(
    host: &HostConfig,
) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    let unreachable = |reason: String| Error::SshUnreachable {
        host: host.name.clone(),
        addr: host.addr(),
        reason,
    };
    let limit = host.settings.connect_timeout;
    let tcp = tokio::time::timeout(
        limit,
        TcpStream::connect((host.hostname.as_str(), host.port)),
    )
    .await
    .map_err(|_| unreachable(format!("no answer within {}s", limit.as_secs())))?
    .map_err(|e| unreachable(e.to_string()))?;
    // russh's own `nodelay` only applies to sockets it dials; small round
    // trips through a forward cost ~40 ms with Nagle on.
    tcp.set_nodelay(true)
        .map_err(|e| unreachable(e.to_string()))?;
    Ok(tcp)
}
