//! A TCP relay that can turn into a black hole: the network between tunneld
//! and its SSH server failing silently.
//!
//! Killing sshd makes the kernel close its sockets, so the client hears of it
//! at once (FIN or RST). A path that just stops carrying packets — a dead
//! router, a laptop that slept, a NAT that forgot the flow — sends nothing at
//! all; only keepalives notice. [`Blackhole`] reproduces that on loopback: it
//! listens on 127.0.0.1:0 and relays every connection to a target (the
//! fixture sshd), and [`Blackhole::freeze`] makes it stop moving bytes in
//! both directions while keeping every socket open — no FIN, no RST, the
//! peers' writes just pile up in kernel buffers.
//!
//! While frozen, new connections are still accepted (the kernel completes
//! the handshake of a listening socket anyway) but not connected onwards: a
//! client's SSH handshake over them hangs, as over a dead path.
//! [`Blackhole::pass`] heals the path *for every connection*, frozen ones
//! included, as a network coming back would: what was held is delivered and
//! frozen handshakes go on (a client that gave up on such a connection has
//! closed its end, and the relay passes that on too).
//!
//! The relay runs on tokio tasks of the runtime that created it and stops —
//! listener and every connection — when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::daemon::HostSpec;
use crate::keys;
use crate::sshd::Sshd;

/// Bytes one direction of a connection moves per read.
const CHUNK: usize = 64 * 1024;

/// A relay from a port of 127.0.0.1 to `target` that can be frozen.
#[derive(Debug)]
pub struct Blackhole {
    addr: SocketAddr,
    target: SocketAddr,
    /// `true` while bytes pass; every connection watches it.
    passing: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    /// The accept loop; it owns the connections' tasks, so aborting it
    /// closes every relayed socket.
    task: JoinHandle<()>,
}

impl Blackhole {
    /// Listens on 127.0.0.1:0 and relays each connection to `target`,
    /// passing bytes until [`Blackhole::freeze`] is called.
    pub async fn start(target: SocketAddr) -> Result<Blackhole> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the blackhole relay on 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (passing, _) = watch::channel(true);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            passing.clone(),
            accepted.clone(),
        ));
        Ok(Blackhole {
            addr,
            target,
            passing,
            accepted,
            task,
        })
    }

    /// A relay in front of the fixture sshd.
    pub async fn to_sshd(sshd: &Sshd) -> Result<Blackhole> {
        Self::start(SocketAddr::from(([127, 0, 0, 1], sshd.port()))).await
    }

    /// Stops moving bytes, both ways, on every connection, without closing
    /// any socket.
    pub fn freeze(&self) {
        self.passing.send_replace(false);
    }

    /// Moves bytes again, on every connection (frozen ones resume, with what
    /// they held), and connects the ones accepted while frozen.
    pub fn pass(&self) {
        self.passing.send_replace(true);
    }

    /// True unless frozen.
    pub fn is_passing(&self) -> bool {
        *self.passing.borrow()
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the relay listens on (of 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where it relays to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far (frozen or not).
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The fixture sshd as reached through this relay: its user, key and
    /// host key, at the relay's address. The known_hosts file is written
    /// next to the sshd's (`[127.0.0.1]:RELAY_PORT` with the sshd's host key),
    /// because a client checks the key under the address it dialled.
    pub fn host_spec(&self, sshd: &Sshd) -> Result<HostSpec> {
        let known_hosts = self.write_known_hosts(sshd)?;
        Ok(HostSpec::from_sshd(sshd)
            .with_address(format!("{}@127.0.0.1:{}", sshd.user(), self.port()))
            .with_known_hosts(known_hosts))
    }

    /// Writes a known_hosts file naming the relay's address with `sshd`'s
    /// host key, in the sshd's temp dir; returns its path.
    pub fn write_known_hosts(&self, sshd: &Sshd) -> Result<PathBuf> {
        let path = sshd
            .dir()
            .join(format!("known_hosts_relay_{}", self.port()));
        keys::write_known_hosts(
            &path,
            &[keys::known_hosts_line(self.port(), sshd.host_key())?],
        )?;
        Ok(path)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    passing: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
) {
    // Owned here so that aborting this task aborts every connection.
    let mut conns = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        accepted.fetch_add(1, Ordering::SeqCst);
        while conns.try_join_next().is_some() {}
        conns.spawn(relay(client, target, passing.subscribe()));
    }
}

/// Relays one connection: connects to `target` once passing, then moves
/// bytes both ways while passing. Either side's EOF is passed on as a
/// half-close; an error on either side ends the connection (both sockets
/// dropped).
async fn relay(client: TcpStream, target: SocketAddr, mut passing: watch::Receiver<bool>) {
    if passing.wait_for(|p| *p).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        // The target is down: the client sees its connection closed, as it
        // would see a refused connect.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_r, client_w) = client.into_split();
    let (server_r, server_w) = server.into_split();
    let up = pump(client_r, server_w, passing.clone());
    let down = pump(server_r, client_w, passing);
    // `join`, not `select`: one direction ending (a half-close) must not stop
    // the other.
    let _ = tokio::join!(up, down);
}

/// Copies `from` to `to`, never reading or writing while frozen. Returns when
/// `from` ends (after passing the EOF on) or either side fails.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut passing: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = loop {
            wait_passing(&mut passing).await?;
            tokio::select! {
                r = from.read(&mut buf) => break r?,
                _ = frozen(&mut passing) => {}
            }
        };
        if n == 0 {
            // EOF is passed on only while passing, like any other byte.
            wait_passing(&mut passing).await?;
            return to.shutdown().await;
        }
        let mut off = 0;
        while off < n {
            wait_passing(&mut passing).await?;
            // A TcpStream write that is dropped unfinished wrote nothing, so
            // freezing in the middle of a chunk loses no byte.
            tokio::select! {
                w = to.write(&buf[off..n]) => off += w?,
                _ = frozen(&mut passing) => {}
            }
        }
    }
}

/// Waits until the relay passes bytes.
async fn wait_passing(passing: &mut watch::Receiver<bool>) -> std::io::Result<()> {
    passing
        .wait_for(|p| *p)
        .await
        .map(|_| ())
        .map_err(|_| std::io::Error::other("blackhole relay dropped"))
}

/// Completes when the relay is frozen (never, if it is dropped first).
async fn frozen(passing: &mut watch::Receiver<bool>) {
    if passing.wait_for(|p| !*p).await.is_err() {
        std::future::pending::<()>().await;
    }
}
