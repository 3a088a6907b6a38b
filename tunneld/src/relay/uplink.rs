//! The uplink: reads the local socket and sends to the channel, waiting for
//! the SSH window (real backpressure in this direction); local EOF becomes
//! the channel's EOF.

use bytes::BytesMut;
use russh::{ChannelWriteHalf, client::Msg};
use tokio::io::AsyncReadExt;

use super::{Counted, LocalReadHalf, SessionUser, TO_CHANNEL};

/// Carries `local_rx` into `ch_tx` in reads of `read_chunk` bytes, counting
/// them into `counted`, until local EOF (sent on as the channel's EOF) or
/// the channel is gone: then `true`; `false` on a local reset.
pub(super) async fn run<R: LocalReadHalf>(
    local_rx: &mut R,
    ch_tx: &ChannelWriteHalf<Msg>,
    read_chunk: usize,
    counted: Counted<'_>,
    user: &SessionUser,
) -> bool {
    // Nothing is allocated until the peer first sends: an idle
    // connection costs no read buffer (10,000 of them would
    // otherwise hold 640 MiB).
    let mut buf = BytesMut::new();
    if local_rx.readable().await.is_err() {
        return false;
    }
    loop {
        buf.reserve(read_chunk);
        let n = match local_rx.read_buf(&mut buf).await {
            Ok(0) => {
                // An ending connection yields first to whatever
                // else is ready on this thread, typically the next
                // connection's channel open: russh then writes both
                // in one `sendto`, as `ssh`'s poll loop batches
                // them, and sshd takes the open without first
                // waking for this EOF (docs/BENCHMARKS.md, step 5).
                tokio::task::yield_now().await;
                let _ = ch_tx.eof().await;
                user.direction_done(TO_CHANNEL);
                return true;
            }
            Ok(n) => n,
            Err(_) => return false, // local reset
        };
        if ch_tx.data_bytes(buf.split().freeze()).await.is_err() {
            return true; // channel gone; the drain sees the close
        }
        counted.add(n);
    }
}
