//! What the byte path needs of a connection's local end, so that it carries
//! any stream socket, not only TCP: split into two halves used at once
//! without a lock, wait for the first bytes before allocating a read buffer,
//! half-close, and reset on an abnormal end.
//!
//! Implemented for [`TcpStream`] and [`UnixStream`].

use std::{future::Future, io, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpStream, UnixStream, tcp, unix},
};

/// The local end of a forwarded connection: the socket tunneld accepted or
/// dialled, as the relay carries it.
pub trait LocalStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The half the uplink reads.
    type ReadHalf: LocalReadHalf;
    /// The half the downlink writes.
    type WriteHalf: LocalWriteHalf;

    /// Splits the stream into halves that the uplink and the downlink use
    /// at the same time, without a lock between them.
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf);

    /// Makes the coming close a reset where the socket has one, so the peer
    /// sees at once that the connection was not carried.
    fn reset_on_close(&self) -> io::Result<()>;
}

/// The reading half of a [`LocalStream`].
pub trait LocalReadHalf: AsyncRead + Unpin + Send + 'static {
    /// Resolves once a read would not wait: data, EOF or an error. The
    /// uplink waits here before it allocates its read buffer.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

/// The writing half of a [`LocalStream`]. Its `poll_shutdown` must be a
/// half-close (`shutdown(Write)`): the channel's EOF, while the peer may
/// still send.
pub trait LocalWriteHalf: AsyncWrite + Unpin + Send + 'static {
    /// Ends the stream with a reset where the socket has one: the close
    /// that follows (when the read half is dropped too) is an RST, and no
    /// FIN goes first. Dropping the half instead would half-close it, and
    /// the peer would read a clean EOF, taking a cut stream for a complete
    /// one.
    fn reset(self) -> io::Result<()>;
}

impl LocalStream for TcpStream {
    type ReadHalf = tcp::OwnedReadHalf;
    type WriteHalf = tcp::OwnedWriteHalf;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        TcpStream::into_split(self)
    }

    /// `SO_LINGER` 0: the close sends an RST, not a FIN.
    fn reset_on_close(&self) -> io::Result<()> {
        socket2::SockRef::from(self).set_linger(Some(Duration::ZERO))
    }
}

impl LocalReadHalf for tcp::OwnedReadHalf {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tcp::OwnedReadHalf::readable(self)
    }
}

impl LocalWriteHalf for tcp::OwnedWriteHalf {
    fn reset(self) -> io::Result<()> {
        let stream: &TcpStream = self.as_ref();
        stream.reset_on_close()?;
        // Without the shutdown(Write) tokio's drop of this half would send.
        self.forget();
        Ok(())
    }
}

impl LocalStream for UnixStream {
    type ReadHalf = unix::OwnedReadHalf;
    type WriteHalf = unix::OwnedWriteHalf;

    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf) {
        UnixStream::into_split(self)
    }

    /// A unix socket has no reset: its peer sees a plain close.
    fn reset_on_close(&self) -> io::Result<()> {
        Ok(())
    }
}

impl LocalReadHalf for unix::OwnedReadHalf {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        unix::OwnedReadHalf::readable(self)
    }
}

impl LocalWriteHalf for unix::OwnedWriteHalf {
    /// A unix socket has no reset: its peer sees a plain close.
    fn reset(self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connected pair: the stream under test and its peer.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = TcpStream::connect(listener.local_addr().unwrap());
        let (dialled, accepted) = tokio::join!(dialled, listener.accept());
        (accepted.unwrap().0, dialled.unwrap())
    }

    /// What the relay does with a stream: wait for the first bytes, read
    /// them, half-close its writing side and still read what the peer sends
    /// after it.
    async fn carries_both_ways_with_a_half_close<S: LocalStream, P>(local: S, mut peer: P)
    where
        P: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut rx, mut tx) = local.into_split();
        peer.write_all(b"ping").await.unwrap();
        rx.readable().await.unwrap();
        let mut got = [0; 4];
        rx.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        tx.write_all(b"pong").await.unwrap();
        tx.shutdown().await.unwrap();
        let mut back = Vec::new();
        peer.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong", "the peer sees the bytes, then EOF");
        peer.write_all(b"late").await.unwrap();
        drop(peer);
        let mut rest = Vec::new();
        rx.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"late", "reading goes on after the half-close");
    }

    #[tokio::test]
    async fn tcp_half_closes_and_reads_on() {
        let (local, peer) = tcp_pair().await;
        carries_both_ways_with_a_half_close(local, peer).await;
    }

    #[tokio::test]
    async fn unix_half_closes_and_reads_on() {
        let (local, peer) = UnixStream::pair().unwrap();
        carries_both_ways_with_a_half_close(local, peer).await;
    }

    #[tokio::test]
    async fn tcp_reset_on_close_resets_the_peer() {
        let (local, mut peer) = tcp_pair().await;
        local.reset_on_close().unwrap();
        drop(local);
        let err = peer.read(&mut [0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_tcp_write_half_reset_sends_no_fin_before_the_reset() {
        let (local, mut peer) = tcp_pair().await;
        let (rx, mut tx) = local.into_split();
        tx.write_all(b"cut").await.unwrap();
        tx.reset().unwrap();
        // The half is gone but the socket is open until the read half goes:
        // the peer has the bytes and no EOF yet.
        let mut got = [0; 3];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"cut");
        let early = tokio::time::timeout(Duration::from_millis(200), peer.read(&mut [0; 1])).await;
        assert!(
            early.is_err(),
            "the peer read {early:?} before the close: a FIN went first"
        );
        drop(rx);
        let err = peer.read(&mut [0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_unix_write_half_reset_is_a_plain_close() {
        let (local, mut peer) = UnixStream::pair().unwrap();
        let (rx, tx) = local.into_split();
        tx.reset().unwrap();
        drop(rx);
        assert_eq!(peer.read(&mut [0; 1]).await.unwrap(), 0);
    }
}
