//! Real TCP and HTTP peers for forwarded connections to reach, and port
//! helpers.
//!
//! Every server listens on 127.0.0.1 port 0 and stops — listener and open
//! connections — when its handle is dropped.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A TCP server running a handler per accepted connection.
#[derive(Debug)]
pub struct TcpPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TcpPeer {
    /// Listens on 127.0.0.1:0 and runs `handler` on every connection.
    pub async fn start<F, Fut>(handler: F) -> Result<TcpPeer>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), handler).await
    }

    /// Listens on `addr` (e.g. a port a test released earlier) and runs
    /// `handler` on every connection.
    pub async fn start_at<F, Fut>(addr: SocketAddr, handler: F) -> Result<TcpPeer>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener =
            bind_with_backlog(addr).with_context(|| format!("binding a TCP peer on {addr}"))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned here so that aborting this task aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    // Out of descriptors or an aborted handshake: a real
                    // server keeps listening, and so does this one.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                counter.fetch_add(1, Ordering::SeqCst);
                while conns.try_join_next().is_some() {}
                conns.spawn(handler(stream));
            }
        });
        Ok(TcpPeer {
            addr,
            accepted,
            task,
        })
    }

    /// Echoes every byte back; on EOF from the client, closes its write side
    /// after flushing what it echoed.
    pub async fn echo() -> Result<TcpPeer> {
        Self::start(echo_conn).await
    }

    /// An echo server on a given address.
    pub async fn echo_at(addr: SocketAddr) -> Result<TcpPeer> {
        Self::start_at(addr, echo_conn).await
    }

    /// Reads one byte: `F` makes it a [`flood`](Self::flood) connection of
    /// `total` bytes, anything else an echo connection (that byte included).
    /// Lets one forward carry both a stalled flood and echo traffic.
    pub async fn flood_or_echo(total: usize) -> Result<TcpPeer> {
        Self::start(move |mut stream| async move {
            let mut first = [0u8; 1];
            if stream.read(&mut first).await? == 0 {
                return Ok(());
            }
            if first[0] == FLOOD_REQUEST {
                flood_conn(stream, total).await
            } else {
                stream.write_all(&first).await?;
                echo_conn(stream).await
            }
        })
        .await
    }

    /// Reads until EOF, then replies with the lowercase-hex SHA-256 of what it
    /// read (64 bytes) and closes: a half-close checker.
    pub async fn digest() -> Result<TcpPeer> {
        Self::start(digest_conn).await
    }

    /// On connect, writes `total` bytes (a repeating pattern) and closes,
    /// whether or not anyone reads them.
    pub async fn flood(total: usize) -> Result<TcpPeer> {
        Self::start(move |stream| flood_conn(stream, total)).await
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Binds `addr` with a listen backlog of 4096, as tunneld's own listeners
/// do: tokio's default of 128 drops the SYNs of a burst (sshd opening 500
/// channels to this peer at once) whenever this test process is slow to
/// accept, and each dropped client waits 1, 3, 7 s... to retry.
fn bind_with_backlog(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The first byte that asks a [`TcpPeer::flood_or_echo`] server to flood.
pub const FLOOD_REQUEST: u8 = b'F';

async fn echo_conn(mut stream: TcpStream) -> std::io::Result<()> {
    let (mut r, mut w) = stream.split();
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

async fn flood_conn(mut stream: TcpStream, total: usize) -> std::io::Result<()> {
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n;
    }
    stream.shutdown().await
}

impl Drop for TcpPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tiny HTTP/1.1 server (axum): `GET /` answers with a fixed body, `GET
/// /echo/{text}` with `text`.
#[derive(Debug)]
pub struct HttpPeer {
    addr: SocketAddr,
    body: String,
    task: JoinHandle<()>,
}

impl HttpPeer {
    /// Starts the server with `body` as the answer to `GET /`.
    pub async fn start(body: impl Into<String>) -> Result<HttpPeer> {
        use axum::{Router, extract::Path, routing::get};
        let body = body.into();
        let root_body = body.clone();
        let app = Router::new()
            .route("/", get(move || async move { root_body }))
            .route(
                "/echo/{text}",
                get(|Path(text): Path<String>| async move { text }),
            );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the HTTP peer on 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpPeer { addr, body, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The body `GET /` returns.
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long [`http_get`] waits for a whole response.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET url` with a real HTTP client (hyper); returns the status code and
/// body text.
pub async fn http_get(url: &str) -> Result<(u16, String)> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let fetch = async {
        let resp = client
            .get(uri)
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the body of GET {url}"))?
            .to_bytes();
        anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fetch)
        .await
        .with_context(|| format!("GET {url} took longer than {HTTP_TIMEOUT:?}"))?
}

/// True when nothing listens on 127.0.0.1:`port` and it can be bound now.
pub fn port_is_free(port: u16) -> bool {
    StdTcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released), so
/// connecting to it is refused. Another process could take it meanwhile;
/// on a test machine that is rare enough.
pub fn refused_port() -> Result<u16> {
    crate::sshd::free_port()
}

/// Reads `stream` until EOF, then replies with the lowercase-hex SHA-256 of
/// what it read (64 bytes) and shuts down: the digest peers' handler, over
/// TCP or a unix socket.
pub async fn digest_conn<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> std::io::Result<()> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    stream
        .write_all(crate::data::hex(&hasher.finalize()).as_bytes())
        .await?;
    stream.shutdown().await
}

/// Writes `data` on `stream` while reading, half-closes, and reads until
/// EOF; returns what was read.
pub async fn exchange_on<S: AsyncRead + AsyncWrite>(stream: S, data: &[u8]) -> Result<Vec<u8>> {
    let (mut r, mut w) = tokio::io::split(stream);
    let write = async {
        w.write_all(data).await.context("writing")?;
        w.shutdown().await.context("half-closing")?;
        anyhow::Ok(w)
    };
    let read = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.context("reading")?;
        anyhow::Ok(got)
    };
    let (_w, got) = tokio::try_join!(write, read)?;
    Ok(got)
}
