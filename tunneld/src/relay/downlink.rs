//! The downlink: writes what the drain queued to the local socket, in the
//! channel's order — memory, then the spill file where the queue says so,
//! then memory again — and turns the channel's EOF into a half-close
//! (`shutdown(Write)`).

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{
    Counted, Down, LocalWriteHalf, Spill,
    budget::BudgetReceiver,
    spill::{self, Next},
};

/// Most bytes gathered from the queue into one write to the local socket.
const WRITE_BATCH: usize = 256 * 1024;

/// Most chunks (SSH packets) in one vectored write.
const MAX_SLICES: usize = 64;

/// Why the downlink stopped.
pub(super) enum Failed {
    /// Writing to the local socket failed.
    Local,
    /// Reading the spill file failed.
    Spill(std::io::Error),
}

/// Writes the queue to `local_tx` until the queue closes (the drain ended
/// and everything it queued is written), counting the bytes into `counted`.
pub(super) async fn run<W: LocalWriteHalf>(
    q_rx: &mut BudgetReceiver<Down>,
    local_tx: &mut W,
    spill: &Spill,
    counted: Counted<'_>,
) -> Result<(), Failed> {
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
        write_all_vectored(local_tx, &mut chunks)
            .await
            .map_err(|_| Failed::Local)?;
        counted.add(len);
        q_rx.release(taken);
        if spilled {
            write_spilled(spill, local_tx, counted).await?;
        }
        if eof {
            local_tx.shutdown().await.map_err(|_| Failed::Local)?;
        }
    }
    Ok(())
}

/// Writes the spill file's bytes to the local socket until the file is
/// empty (then the queue goes on).
async fn write_spilled<W: AsyncWrite + Unpin>(
    spill: &Spill,
    local: &mut W,
    counted: Counted<'_>,
) -> Result<(), Failed> {
    loop {
        let data = match spill.next(WRITE_BATCH) {
            Next::Empty => return Ok(()),
            Next::Ready(data) => data,
            Next::Read { file, offset, len } => {
                let data = spill::read_at(file, offset, len)
                    .await
                    .map_err(Failed::Spill)?;
                spill.lock().file.consumed(len);
                data
            }
        };
        local.write_all(&data).await.map_err(|_| Failed::Local)?;
        counted.add(data.len());
    }
}

/// Writes every chunk, in order, with as few `writev` calls as the socket
/// allows; leaves `chunks` empty.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    local: &mut W,
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
        let mut n = local.write_vectored(&slices[..k]).await?;
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
