//! The events of a running command as the caller reads them: output queued
//! under the byte budget and gathered into large chunks.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::Stream;

use super::spec::{ExecEvent, ExitStatus};
use crate::{
    error::Result,
    relay::budget::BudgetReceiver,
    ssh::{ExecOutcome, SshHost},
};

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
    /// Where the command's outcome is counted, once.
    tally: Option<Tally>,
}

/// Counts a command's outcome on its host once: at its exit, its error,
/// or (as an error) when the output is dropped before either.
struct Tally(Option<Arc<SshHost>>);

impl Tally {
    fn record(&mut self, outcome: ExecOutcome) {
        if let Some(host) = self.0.take() {
            host.counters().exec_ended(outcome);
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.record(ExecOutcome::Error);
    }
}

/// The outcome an event tells of, if it is the last.
fn outcome_of(item: &Result<ExecEvent>) -> Option<ExecOutcome> {
    match item {
        Ok(ExecEvent::Exit(ExitStatus::Code(0))) => Some(ExecOutcome::Ok),
        Ok(ExecEvent::Exit(ExitStatus::Code(_))) => Some(ExecOutcome::Nonzero),
        Ok(ExecEvent::Exit(ExitStatus::Signal { .. })) => Some(ExecOutcome::Signal),
        Ok(ExecEvent::Stdout(_) | ExecEvent::Stderr(_)) => None,
        Err(_) => Some(ExecOutcome::Error),
    }
}

impl ExecOutput {
    /// Holds `slot` (a place under a cap) as long as the output is read.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self.slot = Some(slot);
        self
    }

    /// Counts how the command ends on `host` ([`ExecOutcome`]).
    pub fn counted_on(mut self, host: Arc<SshHost>) -> Self {
        self.tally = Some(Tally(Some(host)));
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
        if let (Some(outcome), Some(tally)) = (outcome_of(&item), this.tally.as_mut()) {
            tally.record(outcome);
        }
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
            tally: None,
        }
    }
}
