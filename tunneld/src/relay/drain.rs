//! The drain: takes every message russh delivers for the channel at once, so
//! that a local reader that stalls never stalls the shared SSH connection.
//! The data goes into the byte-budgeted queue ([`super::budget`]) while it
//! has room; past it the connection either holds its SSH connection back
//! (alone on it) or its bytes go to the spill file ([`super::spill`]), and
//! every later byte too until the downlink has read the file empty.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use russh::{ChannelMsg, ChannelReadHalf};

use super::{
    Down, FROM_CHANNEL, RelayEnd, SessionUser, Spill, budget::BudgetSender, spill::SpillError,
};
use crate::ssh::SessionUse;

/// Takes the channel's messages until it closes or vanishes, queueing its
/// data and its EOF for the downlink. `q_tx` is dropped when the drain
/// ends: the downlink then finishes.
pub(super) async fn run(
    mut ch_rx: ChannelReadHalf,
    q_tx: BudgetSender<Down>,
    spill: &Spill,
    session: Option<&Arc<SessionUse>>,
    spilled: &AtomicU64,
    user: &SessionUser,
) -> RelayEnd {
    while let Some(msg) = ch_rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if let Err(limit) = queue(data, &q_tx, spill, session, spilled).await {
                    return RelayEnd::Overflow(limit);
                }
            }
            ChannelMsg::Eof => {
                user.direction_done(FROM_CHANNEL);
                // Behind whatever is in the spill file, which the
                // downlink empties before it takes the queue again.
                let _ = q_tx.send(Down::Eof, 0);
            }
            ChannelMsg::Close => return RelayEnd::Completed,
            _ => {}
        }
    }
    RelayEnd::SshLost
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
