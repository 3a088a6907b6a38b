//! TCP listeners with a listen backlog sized for bursts.
//!
//! `TcpListener::bind` in tokio (through mio) asks for the standard
//! library's backlog of 128. When more connections than that arrive while
//! tunneld is between accepts (a busy moment, a pool of clients all
//! starting at once), Linux drops the extra SYNs and each client waits for
//! its retransmission: 1 s, then 3 s, then 7 s; a client with a 10 s connect
//! timeout gives up after three such waves. A backlog of [`LISTEN_BACKLOG`]
//! (the kernel lowers it to `net.core.somaxconn`, 4096 by default since
//! Linux 5.4) holds a burst of that size until it is accepted. OpenSSH's
//! `ssh -L` also asks for 128; this is one place tunneld does better.

use std::{io, net::SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may hold completed but not yet accepted.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (SO_REUSEADDR, as tokio and OpenSSH do) and listens with
/// [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_an_ephemeral_port_and_accepts() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        assert_eq!(client.unwrap().local_addr().unwrap(), accepted.unwrap().1);
    }

    #[tokio::test]
    async fn a_port_in_use_is_addr_in_use() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
