//! The byte path of one forwarded connection: a local stream socket on one
//! side (TCP today; anything that is a [`LocalStream`]), an SSH channel on
//! the other.
//!
//! Three parts run concurrently in the connection's task, one file each:
//! - **drain** (`drain.rs`) takes every message russh delivers for the
//!   channel at once and queues the data in a byte-budgeted queue
//!   ([`crate::relay::budget`]), so a local reader that stalls never stalls
//!   the shared SSH connection. When the budget is full and the connection
//!   is alone on its SSH connection, it stops taking messages, which holds
//!   the whole connection back, until its reader catches up or someone else
//!   needs the connection ([`SessionUse`]). Otherwise what does not fit goes
//!   to the connection's spill file ([`crate::relay::spill`]), and
//!   everything after it too until the reader has taken the file's bytes:
//!   russh offers no per-channel backpressure, so the bytes wait on disk
//!   rather than be lost. Only past the spill limits is the connection
//!   reset.
//! - **downlink** (`downlink.rs`) writes queued data to the local socket, in
//!   order: memory, then the spill file where the queue says so, then memory
//!   again; and turns the channel's EOF into a half-close
//!   (`shutdown(Write)`).
//! - **uplink** (`uplink.rs`) reads the local socket and sends to the
//!   channel, waiting for the SSH window (real backpressure in this
//!   direction); local EOF becomes the channel's EOF.
//!
//! This file holds what they share: the queue's items (`Down`), the
//! connection's spill state, and whether it still counts as a user of its
//! SSH connection; and [`relay`], which runs the three.
//!
//! The connection ends when the remote side has closed the channel and its
//! data is written out, or at once on an error, a local reset, or cancellation
//! (tunnel closed, daemon stopping): then the local socket is reset and the
//! channel closed.

use std::{
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ssh::{SessionUse, SshChannel, UseGuard};

use self::spill::{Next, SpillError, SpillFile, SpillPolicy};

pub mod budget;
mod downlink;
mod drain;
mod local_stream;
pub mod spill;
mod uplink;

pub use local_stream::{LocalReadHalf, LocalStream, LocalWriteHalf};

/// The channel has sent its EOF (see [`SessionUser`]).
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

/// What the drain hands the downlink, in the channel's order.
enum Down {
    Data(Bytes),
    /// From here on, the bytes are in the spill file, up to the point where
    /// the reader finds it empty; the queue goes on after that.
    Spilled,
    Eof,
}

/// Byte counters of one relay, by direction.
pub struct ByteCounters<'a> {
    /// Bytes read from the local stream and sent into the channel.
    pub local_to_channel: Counted<'a>,
    /// Bytes received from the channel and written to the local stream.
    pub channel_to_local: Counted<'a>,
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

/// Whether a connection counts as a user of its SSH connection: it does
/// while bytes may still move either way. Once the channel has sent its EOF
/// and ours is sent, this connection only waits for the close, and another
/// one may hold the SSH connection back without stalling it.
struct SessionUser {
    /// Dropped, ending the use, once both directions are done.
    user: Mutex<Option<UseGuard>>,
    /// [`FROM_CHANNEL`] and [`TO_CHANNEL`], as each direction ends.
    directions_done: AtomicU8,
}

impl SessionUser {
    fn new(session: Option<&Arc<SessionUse>>) -> Self {
        SessionUser {
            user: Mutex::new(session.map(|s| s.relay())),
            directions_done: AtomicU8::new(0),
        }
    }

    /// Marks `direction` ended; the use ends with the second.
    fn direction_done(&self, direction: u8) {
        if self.directions_done.fetch_or(direction, Ordering::Relaxed) | direction
            == BOTH_DIRECTIONS
        {
            self.user.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }
}

/// Carries bytes both ways between `local` and `channel` until the
/// connection ends, counting them into `bytes`. With `session`, the
/// connection counts as a user of that SSH connection, and may hold it back
/// while alone on it.
pub async fn relay<S: LocalStream>(
    local: S,
    channel: SshChannel,
    bytes: ByteCounters<'_>,
    buffers: &RelayBuffers,
    session: Option<&Arc<SessionUse>>,
    cancel: &CancellationToken,
) -> RelayEnd {
    let user = &SessionUser::new(session);
    let RelayBuffers {
        max_buffer,
        read_chunk,
        spill,
    } = buffers;
    let read_chunk = *read_chunk;
    let (ch_rx, ch_tx) = channel.split();
    let (mut local_rx, mut local_tx) = local.into_split();
    let (q_tx, mut q_rx) = budget::channel::<Down>(*max_buffer);
    let spill = &Spill::new(spill.clone());
    let spilled = bytes.spilled;

    let end = {
        let drain = pin!(drain::run(ch_rx, q_tx, spill, session, spilled, user));
        let downlink = pin!(downlink::run(
            &mut q_rx,
            &mut local_tx,
            spill,
            bytes.channel_to_local
        ));
        let uplink = pin!(uplink::run(
            &mut local_rx,
            &ch_tx,
            read_chunk,
            bytes.local_to_channel,
            user
        ));
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
                    Err(downlink::Failed::Local) => break RelayEnd::LocalError,
                    Err(downlink::Failed::Spill(e)) => break RelayEnd::Overflow(SpillError::Io(e)),
                },
                ok = &mut uplink, if !uplink_done => {
                    if !ok { break RelayEnd::LocalError; }
                    uplink_done = true;
                }
            }
        }
    };

    if !matches!(end, RelayEnd::Completed) {
        // Abnormal end: tell the local peer with a reset, and no FIN before
        // it, so a cut stream never reads as a complete one. The socket
        // closes with the read half, below.
        let _ = local_tx.reset();
    }
    // Closing is not urgent either: connections being opened or carried go
    // first (see the EOF in the uplink).
    tokio::task::yield_now().await;
    let _ = ch_tx.close().await;
    end
}
