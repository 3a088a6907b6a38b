//! The API's accept loop: a cap on connections, a deadline for the
//! handshake, and a back-off when accepting fails.
//!
//! Borrowed from nginx (`worker_connections`, `client_header_timeout`) and
//! OpenSSH (`MaxStartups`, `LoginGraceTime`):
//! - at most `max` API connections are open at once; past that a new one
//!   is closed at once, so idle connections can never take the descriptors
//!   tunnels need (their accept loops are separate and never wait on this);
//! - a connection must complete its handshake within [`HANDSHAKE_DEADLINE`]:
//!   after tunneld's first write (the HTTP/2 SETTINGS, or the TLS
//!   ServerHello) it must send [`HANDSHAKE_BYTES`] (the HTTP/2 preface is
//!   24 bytes; a TLS client's Finished is longer), or it is closed;
//! - a failed accept waits ([`AcceptBackoff`]), never spins.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tonic::transport::server::Connected;

use crate::{logging::Throttle, sys::accept_backoff::AcceptBackoff};

/// Time from accept for a client to complete its handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(5);
/// Bytes a client must send after tunneld's first write, within the
/// deadline: the length of the HTTP/2 client preface.
pub const HANDSHAKE_BYTES: usize = 24;

/// How a listener logs the connections it closes at its cap: a few lines
/// per period, naming the listener and what raises the cap.
pub struct AtCap {
    throttle: Throttle,
    listener: &'static str,
    accept_loop: &'static str,
    raise: &'static str,
}

impl AtCap {
    /// Lines as `throttle` admits them, about the connections of
    /// `listener` (its accept loop's failures about `accept_loop`);
    /// `raise` says how to raise the cap.
    pub const fn new(
        throttle: Throttle,
        listener: &'static str,
        accept_loop: &'static str,
        raise: &'static str,
    ) -> Self {
        AtCap {
            throttle,
            listener,
            accept_loop,
            raise,
        }
    }
}

/// The API's connections refused at the cap.
pub static API_AT_CAP: AtCap = AtCap::new(
    Throttle::new(
        "API connections closed at --max-api-connections",
        5,
        Duration::from_secs(10),
    ),
    "API",
    "the API's listener",
    "--max-api-connections",
);

/// Default cap on API connections for a soft descriptor limit of `nofile`:
/// an eighth of it, from 16 to 4096, so that tunnels' connections always
/// keep most descriptors.
pub fn default_max_api_connections(nofile: u64) -> usize {
    (nofile / 8).clamp(16, 4096) as usize
}

/// A listener the API accepts on.
pub trait Acceptor: Send + 'static {
    /// The accepted connection.
    type Io: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;
    /// Accepts one connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Acceptor for TcpListener {
    type Io = TcpStream;
    async fn accept(&self) -> io::Result<TcpStream> {
        let (tcp, _) = TcpListener::accept(self).await?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

impl Acceptor for UnixListener {
    type Io = UnixStream;
    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// The connections of `listener`, at most `max` open at once (those past
/// it closed and logged as `at_cap` says), each held to the handshake
/// deadline. Never yields an error: failures are waited out.
pub fn incoming<A: Acceptor>(
    listener: A,
    max: usize,
    at_cap: &'static AtCap,
) -> impl Stream<Item = io::Result<Guarded<A::Io>>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max));
    let state = (listener, slots, AcceptBackoff::new(at_cap.accept_loop));
    futures_util::stream::unfold(state, move |(listener, slots, mut backoff)| async move {
        loop {
            match listener.accept().await {
                Ok(io) => {
                    backoff.accepted();
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let conn = Guarded::new(io, slot);
                            return Some((Ok(conn), (listener, slots, backoff)));
                        }
                        Err(_) => {
                            drop(io);
                            if at_cap.throttle.admit() {
                                tracing::warn!(
                                    max,
                                    "{} connection closed: {max} are open ({})",
                                    at_cap.listener,
                                    at_cap.raise
                                );
                            }
                        }
                    }
                }
                Err(e) => {
                    let wait = backoff.failed(&e);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    })
}

/// An API connection: holds its place under the cap until dropped, and
/// fails its reads once the handshake deadline passes without the
/// handshake.
pub struct Guarded<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
    /// Armed until the handshake is seen.
    deadline: Option<Pin<Box<Sleep>>>,
    wrote: bool,
    read_after_write: usize,
}

impl<IO> Guarded<IO> {
    fn new(io: IO, slot: OwnedSemaphorePermit) -> Self {
        Guarded {
            io,
            _slot: slot,
            deadline: Some(Box::pin(tokio::time::sleep(HANDSHAKE_DEADLINE))),
            wrote: false,
            read_after_write: 0,
        }
    }
}

impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some(deadline) = &mut this.deadline {
            if this.wrote {
                this.read_after_write += buf.filled().len() - before;
                if this.read_after_write >= HANDSHAKE_BYTES {
                    this.deadline = None;
                    return polled;
                }
            }
            if polled.is_pending() && deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no HTTP/2 handshake within 5s",
                )));
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote = true;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn past_the_cap_a_connection_is_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conns = Box::pin(incoming(listener, 2, &API_AT_CAP));
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let a = conns.next().await.unwrap().unwrap();
        let _b = conns.next().await.unwrap().unwrap();
        // The third is accepted and closed: its client reads EOF.
        let pending = tokio::spawn(async move { conns.next().await.map(|c| c.is_ok()) });
        let mut third = clients.pop().unwrap();
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
        // A place frees when a connection ends.
        drop(a);
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        let yielded = tokio::time::timeout(Duration::from_secs(5), pending).await;
        assert_eq!(yielded.unwrap().unwrap(), Some(true));
        fourth.write_all(b"x").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_its_read_at_the_deadline() {
        let (server, mut client) = tokio::io::duplex(64);
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let mut g = Guarded::new(server, slot);
        g.write_all(b"SETTINGS").await.unwrap();
        let mut buf = [0u8; 64];
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // One that sends the preface in time is not held to it.
        let slot = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let (server, mut c2) = tokio::io::duplex(64);
        let mut g = Guarded::new(server, slot);
        g.write_all(b"SETTINGS").await.unwrap();
        c2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 24);
        tokio::time::sleep(Duration::from_secs(60)).await;
        c2.write_all(b"later").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 5);
        client.write_all(b"").await.unwrap();
    }
}
