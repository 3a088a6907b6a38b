//! The events of a running command as the caller reads them: output queued
//! under the byte budget and gathered into large chunks.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::Stream;

use super::spec::ExecEvent;
use crate::{error::Result, relay::budget::BudgetReceiver};

/// Most output bytes gathered into one [`ExecEvent`]: each event becomes one
/// gRPC message, and per-message costs (framing, a wake-up each side) kept
/// the stream far slower than the SSH channel when events were single SSH
/// packets (32 KiB).
const OUTPUT_BATCH: usize = 1024 * 1024;

/// The events of a running command; dropping it stops the command.
pub struct ExecOutput {
    rx: BudgetReceiver<Result<ExecEvent>>,
    /// An event taken while gathering that did not belong to the batch.
    held: Option<Result<ExecEvent>>,
    /// The command's place under `--max-execs`, freed with the output.
    slot: Option<OwnedSemaphorePermit>,
}

impl ExecOutput {
    /// Holds `slot` (a place under a cap) as long as the output is read.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self.slot = Some(slot);
        self
    }

    /// The next event already queued, if any, returning its bytes to the
    /// budget.
    fn take_ready(&mut self) -> Option<Result<ExecEvent>> {
        if let Some(held) = self.held.take() {
            return Some(held);
        }
        let (item, size) = self.rx.try_recv()?;
        self.rx.release(size);
        Some(item)
    }

    /// `first` and the output of the same kind already queued behind it, up
    /// to [`OUTPUT_BATCH`] bytes, as one chunk.
    fn gather(&mut self, first: Bytes, stderr: bool) -> Bytes {
        let mut batch: Option<BytesMut> = None;
        let mut len = first.len();
        while len < OUTPUT_BATCH {
            let next = match self.take_ready() {
                Some(Ok(ExecEvent::Stdout(d))) if !stderr => d,
                Some(Ok(ExecEvent::Stderr(d))) if stderr => d,
                Some(other) => {
                    self.held = Some(other);
                    break;
                }
                None => break,
            };
            let buf = batch.get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(OUTPUT_BATCH.min(first.len() * 8));
                b.extend_from_slice(&first);
                b
            });
            buf.extend_from_slice(&next);
            len += next.len();
        }
        batch.map_or(first, BytesMut::freeze)
    }
}

impl Stream for ExecOutput {
    type Item = Result<ExecEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = match this.held.take() {
            Some(held) => held,
            None => match this.rx.poll_recv(cx) {
                Poll::Ready(Some((item, size))) => {
                    this.rx.release(size);
                    item
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(Some(match item {
            Ok(ExecEvent::Stdout(d)) => Ok(ExecEvent::Stdout(this.gather(d, false))),
            Ok(ExecEvent::Stderr(d)) => Ok(ExecEvent::Stderr(this.gather(d, true))),
            other => other,
        }))
    }
}

impl ExecOutput {
    /// The output read from `rx`.
    pub(super) fn new(rx: BudgetReceiver<Result<ExecEvent>>) -> Self {
        ExecOutput {
            rx,
            held: None,
            slot: None,
        }
    }
}
