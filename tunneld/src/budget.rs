//! A queue bounded by bytes rather than items, for data received from an SSH
//! channel and not yet taken by its local reader.
//!
//! russh 0.65 re-opens a channel's window as soon as data arrives and its
//! session loop awaits a bounded per-channel queue, so a channel whose reader
//! stalls would stall every channel of the connection. We therefore drain each
//! channel at once into one of these queues; the budget bounds the memory a
//! slow reader can cost, and the sender learns when it is exceeded.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::mpsc;

/// The sender went over its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// More than the budget is waiting for the reader.
    Overflow,
    /// The receiver is gone.
    Closed,
}

/// Sending side.
pub struct BudgetSender<T> {
    tx: mpsc::UnboundedSender<(T, usize)>,
    used: Arc<AtomicUsize>,
    limit: usize,
}

/// Receiving side; call [`BudgetReceiver::release`] once an item's bytes are
/// consumed.
pub struct BudgetReceiver<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    used: Arc<AtomicUsize>,
}

/// A queue that holds at most `limit` bytes (an item larger than `limit` is
/// still accepted when the queue is empty).
pub fn channel<T>(limit: usize) -> (BudgetSender<T>, BudgetReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let used = Arc::new(AtomicUsize::new(0));
    (
        BudgetSender {
            tx,
            used: used.clone(),
            limit,
        },
        BudgetReceiver { rx, used },
    )
}

impl<T> BudgetSender<T> {
    /// Queues `item` of `size` bytes, or says why not. Never waits. Items of
    /// size 0 (markers, final statuses) always fit.
    pub fn send(&self, item: T, size: usize) -> Result<(), SendError> {
        let before = self.used.fetch_add(size, Ordering::AcqRel);
        if size > 0 && before > 0 && before + size > self.limit {
            self.used.fetch_sub(size, Ordering::AcqRel);
            return Err(SendError::Overflow);
        }
        self.tx.send((item, size)).map_err(|_| SendError::Closed)
    }

    /// Resolves when the receiver is dropped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Bytes waiting.
    pub fn buffered(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<T> BudgetReceiver<T> {
    /// The next item and its size; `None` once the sender is gone and the
    /// queue is empty.
    pub async fn recv(&mut self) -> Option<(T, usize)> {
        self.rx.recv().await
    }

    /// The next item if one is waiting now.
    pub fn try_recv(&mut self) -> Option<(T, usize)> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next item (for `Stream` impls).
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(T, usize)>> {
        self.rx.poll_recv(cx)
    }

    /// Returns `size` bytes to the budget.
    pub fn release(&self, size: usize) {
        self.used.fetch_sub(size, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_bounds_bytes_not_items() {
        let (tx, mut rx) = channel::<u8>(10);
        tx.send(1, 6).unwrap();
        tx.send(2, 4).unwrap();
        assert_eq!(tx.send(3, 1), Err(SendError::Overflow));
        let (item, size) = rx.recv().await.unwrap();
        assert_eq!(item, 1);
        rx.release(size);
        tx.send(3, 5).unwrap();
        assert_eq!(tx.buffered(), 9);
    }

    #[tokio::test]
    async fn an_oversized_item_passes_an_empty_queue() {
        let (tx, _rx) = channel::<u8>(10);
        tx.send(1, 100).unwrap();
        assert_eq!(tx.send(2, 1), Err(SendError::Overflow));
    }
}
