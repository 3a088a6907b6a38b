//! The handshake over a byte stream (a local TCP client, or any
//! `AsyncRead + AsyncWrite`), bounded in time.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Handshake, Request, Step};

/// How long a client has to finish its handshake, method selection
/// included. A SOCKS client sends its greeting as soon as it connects, and
/// its request one round trip later; what sends nothing (a port scan, a
/// client that waits for a server banner) would otherwise hold its
/// connection forever. 10 s leaves room for the round trips of a reverse
/// dynamic forward, whose bytes cross the SSH connection, on a slow link.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How much one read takes: any request fits, and what the client sent
/// past its request comes back as leftover.
const READ_SIZE: usize = 4096;

/// Why no request came from a SOCKS client.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    /// The client broke the protocol or asked for what tunneld does not
    /// do; the protocol's reply, if it has one, was written.
    #[error("SOCKS request refused: {0}")]
    Refused(String),
    /// The client did not finish within [`HANDSHAKE_TIMEOUT`].
    #[error(
        "SOCKS client sent no complete request within {}s; is it speaking SOCKS to this port?",
        HANDSHAKE_TIMEOUT.as_secs()
    )]
    Timeout,
    /// The client closed the connection mid-handshake.
    #[error(
        "SOCKS client closed the connection before its request was complete; check that it \
         is set to use SOCKS4, SOCKS4a or SOCKS5"
    )]
    Closed,
    /// Reading from or writing to the client failed.
    #[error("SOCKS handshake failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a request from `stream`: drives a [`Handshake`] over it (writing
/// its `Reply` steps), bounded by [`HANDSHAKE_TIMEOUT`]. Returns the
/// request and the bytes the client sent after it; the caller then writes
/// [`Request::success`] or [`Request::failure`].
///
/// On a refusal it writes the protocol's reply, if any, and returns
/// [`SocksError::Refused`] (even if that write fails: the refusal is what
/// the log needs); [`SocksError::Timeout`] when the client is too slow,
/// [`SocksError::Closed`] on EOF mid-handshake, [`SocksError::Io`] on a
/// read or write error.
pub async fn read_request<S>(stream: &mut S) -> Result<(Request, Vec<u8>), SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream))
        .await
        .unwrap_or(Err(SocksError::Timeout))
}

async fn handshake<S>(stream: &mut S) -> Result<(Request, Vec<u8>), SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut handshake = Handshake::new();
    let mut buffer = vec![0; READ_SIZE];
    let mut read = 0;
    loop {
        match handshake.feed(buffer.get(..read).unwrap_or_default()) {
            Step::NeedMore => {
                read = stream.read(&mut buffer).await?;
                if read == 0 {
                    return Err(SocksError::Closed);
                }
            }
            Step::Reply(reply) => {
                stream.write_all(&reply).await?;
                stream.flush().await?;
                // The request may already be held: feed nothing first.
                read = 0;
            }
            Step::Request { request, leftover } => return Ok((request, leftover)),
            Step::Refuse { reply, reason } => {
                if !reply.is_empty() {
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.flush().await;
                }
                return Err(SocksError::Refused(reason));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // Through the module's re-exports, as the tunnels will use them.
    use super::super::{HANDSHAKE_TIMEOUT, Request, Target, Version, read_request};
    use super::SocksError;

    #[tokio::test]
    async fn socks5_request_with_data() {
        let (mut client, mut server) = duplex(1024);
        let request = [
            &[5, 1, 0, 5, 1, 0, 3, 2][..],
            b"db",
            &[0x15, 0x38],
            b"hello",
        ]
        .concat();
        client.write_all(&request).await.unwrap();
        let (got, leftover) = read_request(&mut server).await.unwrap();
        assert_eq!(
            got,
            Request {
                version: Version::Socks5,
                target: Target::Domain {
                    name: "db".into(),
                    port: 5432
                }
            }
        );
        assert_eq!(leftover, b"hello");
        let mut reply = [0; 2];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply, [5, 0]);
    }

    #[tokio::test]
    async fn socks4_request_in_pieces() {
        let (mut client, mut server) = duplex(1024);
        let reader = tokio::spawn(async move { read_request(&mut server).await });
        for piece in [&[4, 1][..], &[0, 80, 10, 0], &[0, 1, b'u', 0, b'x']] {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        let (got, leftover) = reader.await.unwrap().unwrap();
        assert_eq!(got.target, Target::Ip("10.0.0.1:80".parse().unwrap()));
        assert_eq!(leftover, b"x");
    }

    #[tokio::test]
    async fn refusal_writes_the_reply() {
        let (mut client, mut server) = duplex(1024);
        client.write_all(&[5, 1, 2]).await.unwrap();
        match read_request(&mut server).await {
            Err(SocksError::Refused(reason)) => assert!(reason.contains("no acceptable methods")),
            other => panic!("{other:?}"),
        }
        drop(server);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, [5, 0xFF]);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out() {
        let (mut client, mut server) = duplex(1024);
        client.write_all(&[5, 1, 0, 5, 1]).await.unwrap();
        let started = tokio::time::Instant::now();
        let result = read_request(&mut server).await;
        assert!(matches!(result, Err(SocksError::Timeout)), "{result:?}");
        assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
        drop(client);
    }

    #[tokio::test]
    async fn eof_mid_handshake_is_closed() {
        // Mid greeting and mid SOCKS4 request: no reply was due yet.
        for input in [&[5, 2, 0][..], &[4, 1, 0, 80, 10]] {
            let (mut client, mut server) = duplex(1024);
            client.write_all(input).await.unwrap();
            drop(client);
            let result = read_request(&mut server).await;
            assert!(
                matches!(result, Err(SocksError::Closed)),
                "{input:?}: {result:?}"
            );
        }
    }
}
