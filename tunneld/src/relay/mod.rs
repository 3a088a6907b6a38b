//! The byte path of one forwarded connection: a local TCP stream on one side,
//! an SSH channel on the other.
//!
//! Three parts run concurrently in the connection's task:
//! - **drain** takes every message russh delivers for the channel at once and
//!   queues the data in a byte-budgeted queue ([`crate::relay::budget`]), so a local
//!   reader that stalls never stalls the shared SSH connection. When the
//!   budget is full and the connection is alone on its SSH connection, it
//!   stops taking messages, which holds the whole connection back, until its
//!   reader catches up or someone else needs the connection ([`SessionUse`]).
//!   Otherwise what does not fit goes to the connection's spill file
//!   ([`crate::relay::spill`]), and everything after it too until the reader has
//!   taken the file's bytes: russh offers no per-channel backpressure, so
//!   the bytes wait on disk rather than be lost. Only past the spill limits
//!   is the connection reset.
//! - **downlink** writes queued data to the local socket, in order: memory,
//!   then the spill file where the queue says so, then memory again; and
//!   turns the channel's EOF into a TCP half-close (`shutdown(Write)`).
//! - **uplink** reads the local socket and sends to the channel, waiting for
//!   the SSH window (real backpressure in this direction); local EOF becomes
//!   the channel's EOF.
//!
//! The connection ends when the remote side has closed the channel and its
//! data is written out, or at once on an error, a local reset, or cancellation
//! (tunnel closed, daemon stopping): then the local socket is reset and the
//! channel closed.

use std::{
    io::IoSlice,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use russh::ChannelMsg;
use tokio::sync::Notify;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::ssh::{SessionUse, SshChannel};

use self::budget::BudgetSender;
use self::spill::{Next, SpillError, SpillFile, SpillPolicy};

pub mod budget;
pub mod spill;

/// Most bytes gathered from the queue into one write to the local socket.
const WRITE_BATCH: usize = 256 * 1024;

/// Most chunks (SSH packets) in one vectored write.
const MAX_SLICES: usize = 64;

/// The channel has sent its EOF (see `relay`'s use of the SSH connection).
const FROM_CHANNEL: u8 = 1;
/// Our EOF is sent into the channel.
const TO_CHANNEL: u8 = 2;
const BOTH_DIRECTIONS: u8 = FROM_CHANNEL | TO_CHANNEL;

/// How a connection ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides finished normally.
    Completed,
    /// The local peer reset the connection or a local write failed.
    LocalError,
    /// The local reader fell further behind than the memory buffer and the
    /// spill file may hold; which limit, or why spilling failed.
    Overflow(SpillError),
    /// The tunnel was closed or the daemon is stopping.
    Cancelled,
    /// The channel vanished without a close: the SSH connection died.
    SshLost,
}

enum Down {
    Data(Bytes),
    /// From here on, the bytes are in the spill file, up to the point where
    /// the reader finds it empty; the queue goes on after that.
    Spilled,
    Eof,
}

/// Byte counters of one relay, by direction.
pub struct ByteCounters<'a> {
    /// Bytes read from the TCP stream and sent into the channel.
    pub tcp_to_channel: Counted<'a>,
    /// Bytes received from the channel and written to the TCP stream.
    pub channel_to_tcp: Counted<'a>,
    /// Bytes from the channel that waited in a spill file (the tunnel's
    /// total).
    pub spilled: &'a AtomicU64,
}

/// One direction's byte count, kept both for the whole tunnel and for the
/// connection alone.
#[derive(Clone, Copy)]
pub struct Counted<'a> {
    /// The tunnel's running total.
    pub total: &'a AtomicU64,
    /// This connection's count.
    pub connection: &'a AtomicU64,
}

impl Counted<'_> {
    fn add(self, n: usize) {
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        self.connection.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Sizes of one relay's buffers.
#[derive(Debug, Clone)]
pub struct RelayBuffers {
    /// Most bytes from the channel held in memory for a lagging local
    /// reader; past it they go to the spill file.
    pub max_buffer: usize,
    /// Size of one read from the local socket (`--copy-buffer`).
    pub read_chunk: usize,
    /// Where and how much a lagging reader's bytes may wait on disk.
    pub spill: SpillPolicy,
}

/// A connection's spill file and whether its bytes are going there now;
/// shared by the drain (appends) and the downlink (reads), which run in
/// one task (the lock is never contended, nor held across an await).
struct Spill {
    state: Mutex<SpillState>,
    /// Signalled when the downlink has read the file empty.
    emptied: Notify,
}

struct SpillState {
    /// Between a [`Down::Spilled`] mark and the downlink finding the file
    /// empty: every byte from the channel goes to the file.
    active: bool,
    file: SpillFile,
}

impl Spill {
    fn new(policy: SpillPolicy) -> Self {
        Spill {
            state: Mutex::new(SpillState {
                active: false,
                file: SpillFile::new(policy),
            }),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next bytes for the downlink; on [`Next::Empty`] spilling has
    /// stopped and the queue's order goes on.
    fn next(&self, max: usize) -> Next {
        let mut state = self.lock();
        let next = state.file.next(max);
        if matches!(next, Next::Empty) {
            state.active = false;
            drop(state);
            self.emptied.notify_waiters();
        }
        next
    }
}

/// Carries bytes both ways between `tcp` and `channel` until the connection
/// ends, counting them into `bytes`. With `session`, the connection counts
/// as a user of that SSH connection, and may hold it back while alone on it.
pub async fn relay(
    tcp: TcpStream,
    channel: SshChannel,
    bytes: ByteCounters<'_>,
    buffers: &RelayBuffers,
    session: Option<&Arc<SessionUse>>,
    cancel: &CancellationToken,
) -> RelayEnd {
    // A user of the SSH connection while bytes may still move either way:
    // once the channel has sent its EOF and ours is sent, this connection
    // only waits for the close, and another one may hold the SSH
    // connection back without stalling it.
    let user = std::sync::Mutex::new(session.map(|s| s.relay()));
    let directions_done = AtomicU8::new(0);
    let direction_done = |direction: u8| {
        if directions_done.fetch_or(direction, Ordering::Relaxed) | direction == BOTH_DIRECTIONS {
            user.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    };
    let direction_done = &direction_done;
    let RelayBuffers {
        max_buffer,
        read_chunk,
        spill,
    } = buffers;
    let read_chunk = *read_chunk;
    let (mut ch_rx, ch_tx) = channel.split();
    let (mut tcp_rx, mut tcp_tx) = tcp.into_split();
    let (q_tx, mut q_rx) = budget::channel::<Down>(*max_buffer);
    let spill = &Spill::new(spill.clone());
    let spilled = bytes.spilled;

    let end = {
        let drain = pin!(async move {
            let q_tx = q_tx; // dropped when the drain ends: the downlink then finishes
            while let Some(msg) = ch_rx.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        if let Err(limit) = queue(data, &q_tx, spill, session, spilled).await {
                            return RelayEnd::Overflow(limit);
                        }
                    }
                    ChannelMsg::Eof => {
                        direction_done(FROM_CHANNEL);
                        // Behind whatever is in the spill file, which the
                        // downlink empties before it takes the queue again.
                        let _ = q_tx.send(Down::Eof, 0);
                    }
                    ChannelMsg::Close => return RelayEnd::Completed,
                    _ => {}
                }
            }
            RelayEnd::SshLost
        });
        let downlink = pin!(async {
            // Whatever is already queued goes out in one vectored write (up
            // to WRITE_BATCH bytes, MAX_SLICES chunks): one syscall per SSH
            // packet costs throughput, and gathering with writev costs no
            // copy.
            let mut chunks: Vec<Bytes> = Vec::new();
            while let Some((first, mut taken)) = q_rx.recv().await {
                let (mut eof, mut spilled) = (false, false);
                let mut len = 0;
                match first {
                    Down::Data(d) if d.is_empty() => {}
                    Down::Data(d) => {
                        len += d.len();
                        chunks.push(d);
                    }
                    Down::Spilled => spilled = true,
                    Down::Eof => eof = true,
                }
                while !eof && !spilled && len < WRITE_BATCH && chunks.len() < MAX_SLICES {
                    match q_rx.try_recv() {
                        Some((Down::Data(d), n)) => {
                            len += d.len();
                            if !d.is_empty() {
                                chunks.push(d);
                            }
                            taken += n;
                        }
                        Some((Down::Spilled, _)) => spilled = true,
                        Some((Down::Eof, _)) => eof = true,
                        None => break,
                    }
                }
                write_all_vectored(&mut tcp_tx, &mut chunks)
                    .await
                    .map_err(|_| Downlink::Local)?;
                bytes.channel_to_tcp.add(len);
                q_rx.release(taken);
                if spilled {
                    write_spilled(spill, &mut tcp_tx, bytes.channel_to_tcp).await?;
                }
                if eof {
                    tcp_tx.shutdown().await.map_err(|_| Downlink::Local)?;
                }
            }
            Ok::<(), Downlink>(())
        });
        let uplink = pin!(async {
            // Nothing is allocated until the peer first sends: an idle
            // connection costs no read buffer (10,000 of them would
            // otherwise hold 640 MiB).
            let mut buf = BytesMut::new();
            if tcp_rx.readable().await.is_err() {
                return false;
            }
            loop {
                buf.reserve(read_chunk);
                let n = match tcp_rx.read_buf(&mut buf).await {
                    Ok(0) => {
                        // An ending connection yields first to whatever
                        // else is ready on this thread, typically the next
                        // connection's channel open: russh then writes both
                        // in one `sendto`, as `ssh`'s poll loop batches
                        // them, and sshd takes the open without first
                        // waking for this EOF (docs/BENCHMARKS.md, step 5).
                        tokio::task::yield_now().await;
                        let _ = ch_tx.eof().await;
                        direction_done(TO_CHANNEL);
                        return true;
                    }
                    Ok(n) => n,
                    Err(_) => return false, // local reset
                };
                if ch_tx.data_bytes(buf.split().freeze()).await.is_err() {
                    return true; // channel gone; the drain sees the close
                }
                bytes.tcp_to_channel.add(n);
            }
        });
        let (mut drain, mut downlink, mut uplink) = (drain, downlink, uplink);
        let (mut drained, mut uplink_done) = (None, false);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break RelayEnd::Cancelled,
                end = &mut drain, if drained.is_none() => match end {
                    RelayEnd::Overflow(limit) => break RelayEnd::Overflow(limit),
                    end => drained = Some(end),
                },
                written = &mut downlink => match written {
                    // The queue closes only after the drain ended.
                    Ok(()) => break drained.take().unwrap_or(RelayEnd::Completed),
                    Err(Downlink::Local) => break RelayEnd::LocalError,
                    Err(Downlink::Spill(e)) => break RelayEnd::Overflow(SpillError::Io(e)),
                },
                ok = &mut uplink, if !uplink_done => {
                    if !ok { break RelayEnd::LocalError; }
                    uplink_done = true;
                }
            }
        }
    };

    if !matches!(end, RelayEnd::Completed) {
        // Abnormal end: tell the local peer with a reset, not a clean FIN.
        let _ = socket2::SockRef::from(tcp_tx.as_ref()).set_linger(Some(Duration::ZERO));
    }
    // Closing is not urgent either: connections being opened or carried go
    // first (see the EOF above).
    tokio::task::yield_now().await;
    let _ = ch_tx.close().await;
    end
}

/// Queues `data` for the downlink: in memory while the budget allows;
/// past it, if this connection is alone on its SSH connection, it holds the
/// SSH connection back until the reader makes room or someone else wants
/// the connection; otherwise, or then, into the spill file, where every
/// later byte goes too until the downlink has read the file empty. Fails
/// only at a spill limit (or when spilling is off or broken).
async fn queue(
    data: Bytes,
    queue: &BudgetSender<Down>,
    spill: &Spill,
    session: Option<&Arc<SessionUse>>,
    spilled: &AtomicU64,
) -> Result<(), SpillError> {
    let n = data.len();
    loop {
        let active = spill.lock().active;
        if !active && queue.has_room(n) {
            let _ = queue.send(Down::Data(data), n);
            return Ok(());
        }
        if let Some(s) = session {
            // Taken before the check: a request that starts after it
            // wakes us.
            let wanted = s.wanted();
            if s.alone() {
                if active {
                    // Behind bytes on disk: wait for the reader to empty the
                    // file rather than make it grow.
                    let emptied = spill.emptied.notified();
                    let mut emptied = pin!(emptied);
                    emptied.as_mut().enable();
                    if spill.lock().active {
                        tokio::select! {
                            () = emptied => {}
                            () = wanted => {}
                            () = queue.closed() => return Ok(()),
                        }
                    }
                    continue;
                }
                tracing::debug!(
                    "the local reader is {} KiB behind; holding the SSH connection back, nobody else uses it",
                    queue.buffered() / 1024
                );
                match queue.wait_for_room(n, wanted).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(_) => return Ok(()), // the downlink is gone
                }
            }
        }
        let mut state = spill.lock();
        let starts = !state.active;
        state.file.append(data)?;
        state.active = true;
        drop(state);
        spilled.fetch_add(n as u64, Ordering::Relaxed);
        if starts {
            tracing::debug!(
                "the local reader is {} KiB behind; its bytes wait in a spill file",
                queue.buffered() / 1024
            );
            let _ = queue.send(Down::Spilled, 0);
        }
        return Ok(());
    }
}

/// Why the downlink stopped.
enum Downlink {
    /// Writing to the local socket failed.
    Local,
    /// Reading the spill file failed.
    Spill(std::io::Error),
}

/// Writes the spill file's bytes to the local socket until the file is
/// empty (then the queue goes on).
async fn write_spilled(
    spill: &Spill,
    tcp: &mut tokio::net::tcp::OwnedWriteHalf,
    counted: Counted<'_>,
) -> Result<(), Downlink> {
    loop {
        let data = match spill.next(WRITE_BATCH) {
            Next::Empty => return Ok(()),
            Next::Ready(data) => data,
            Next::Read { file, offset, len } => {
                let data = spill::read_at(file, offset, len)
                    .await
                    .map_err(Downlink::Spill)?;
                spill.lock().file.consumed(len);
                data
            }
        };
        tcp.write_all(&data).await.map_err(|_| Downlink::Local)?;
        counted.add(data.len());
    }
}

/// Writes every chunk, in order, with as few `writev` calls as the socket
/// allows; leaves `chunks` empty.
async fn write_all_vectored(
    tcp: &mut tokio::net::tcp::OwnedWriteHalf,
    chunks: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut next = 0;
    while next < chunks.len() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let pending = &chunks[next..];
        let k = pending.len().min(MAX_SLICES);
        for (slot, chunk) in slices.iter_mut().zip(&pending[..k]) {
            *slot = IoSlice::new(chunk);
        }
        let mut n = tcp.write_vectored(&slices[..k]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let chunk = &mut chunks[next];
            if n >= chunk.len() {
                n -= chunk.len();
                next += 1;
            } else {
                chunk.advance(n);
                n = 0;
            }
        }
    }
    chunks.clear();
    Ok(())
}
