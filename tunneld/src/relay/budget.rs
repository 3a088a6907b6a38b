//! A queue bounded by bytes rather than items, for data received from an SSH
//! channel and not yet taken by its local reader.
//!
//! russh 0.65 re-opens a channel's window as soon as data arrives and its
//! session loop awaits a bounded per-channel queue, so a channel whose reader
//! stalls would stall every channel of the connection. We therefore drain each
//! channel at once into one of these queues; the budget bounds the memory a
//! slow reader can cost, and the sender learns when it is exceeded. Where a
//! stalled channel stalls nothing else (an Exec on an SSH connection of its
//! own), the sender waits for room instead: [`BudgetSender::send_when_room`].

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::sync::{Notify, mpsc};

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
    used: Arc<Used>,
    limit: usize,
}

/// Bytes waiting, and a signal each time the reader takes some.
#[derive(Default)]
struct Used {
    bytes: AtomicUsize,
    released: Notify,
}

/// Receiving side; call [`BudgetReceiver::release`] once an item's bytes are
/// consumed.
pub struct BudgetReceiver<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    used: Arc<Used>,
}

/// A queue that holds at most `limit` bytes (an item larger than `limit` is
/// still accepted when the queue is empty).
pub fn channel<T>(limit: usize) -> (BudgetSender<T>, BudgetReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let used = Arc::new(Used::default());
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
        if !self.reserve(size) {
            return Err(SendError::Overflow);
        }
        self.tx.send((item, size)).map_err(|_| SendError::Closed)
    }

    /// Queues `item` of `size` bytes, first waiting as long as it takes for
    /// the reader to make room; fails only with [`SendError::Closed`].
    pub async fn send_when_room(&self, item: T, size: usize) -> Result<(), SendError> {
        self.send_waiting_until(item, size, std::future::pending())
            .await
    }

    /// Whether `size` more bytes fit now (the reader only ever makes more
    /// room, so a lone sender that sees room gets it).
    pub fn has_room(&self, size: usize) -> bool {
        self.fits(self.used.bytes.load(Ordering::Acquire), size)
    }

    /// The budget rule: `size` more bytes fit beside `used` if they keep
    /// within the limit, are a marker (0), or the queue is empty (an
    /// oversized item still passes alone).
    fn fits(&self, used: usize, size: usize) -> bool {
        size == 0 || used == 0 || used + size <= self.limit
    }

    /// Queues `item` of `size` bytes, waiting for the reader to make room
    /// until `give_up` resolves; then, still without room, fails with
    /// [`SendError::Overflow`].
    pub async fn send_waiting_until(
        &self,
        item: T,
        size: usize,
        give_up: impl std::future::Future<Output = ()>,
    ) -> Result<(), SendError> {
        if !self.wait_for_room(size, give_up).await? {
            return Err(SendError::Overflow);
        }
        self.send(item, size)
    }

    /// Waits until `size` more bytes fit (`true`: for a lone sender they
    /// stay free until it sends) or `give_up` resolves without room
    /// (`false`); fails only with [`SendError::Closed`].
    pub async fn wait_for_room(
        &self,
        size: usize,
        give_up: impl std::future::Future<Output = ()>,
    ) -> Result<bool, SendError> {
        let mut give_up = std::pin::pin!(give_up);
        loop {
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            let released = self.used.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if self.has_room(size) {
                return Ok(true);
            }
            tokio::select! {
                () = released => {}
                () = self.tx.closed() => return Err(SendError::Closed),
                () = &mut give_up => return Ok(self.has_room(size)),
            }
        }
    }

    /// Counts `size` more bytes waiting, unless that goes over the budget.
    fn reserve(&self, size: usize) -> bool {
        let before = self.used.bytes.fetch_add(size, Ordering::AcqRel);
        if !self.fits(before, size) {
            self.used.bytes.fetch_sub(size, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Resolves when the receiver is dropped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Bytes waiting.
    pub fn buffered(&self) -> usize {
        self.used.bytes.load(Ordering::Acquire)
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
        self.used.bytes.fetch_sub(size, Ordering::AcqRel);
        self.used.released.notify_waiters();
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

    #[tokio::test(start_paused = true)]
    async fn send_when_room_waits_for_the_reader_and_ends_when_it_is_gone() {
        let (tx, mut rx) = channel::<u8>(10);
        tx.send(1, 10).unwrap();
        // The reader takes the first item after 5 s; the sender waits that
        // long and then gets through.
        let start = tokio::time::Instant::now();
        let reader = async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let (_, n) = rx.recv().await.unwrap();
            rx.release(n);
            rx
        };
        let (sent, rx) = tokio::join!(tx.send_when_room(2, 5), reader);
        assert_eq!(sent, Ok(()));
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(5));
        assert_eq!(tx.buffered(), 5);
        // Full again, and the reader goes away: the wait ends.
        tx.send(3, 5).unwrap();
        drop(rx);
        assert_eq!(tx.send_when_room(4, 5).await, Err(SendError::Closed));
    }

    #[tokio::test]
    async fn send_waiting_until_overflows_when_told_to_give_up() {
        let (tx, mut rx) = channel::<u8>(10);
        tx.send(1, 10).unwrap();
        assert!(!tx.has_room(1));
        let (give_up, gave_up) = tokio::sync::oneshot::channel::<()>();
        let waiting = tx.send_waiting_until(2, 5, async {
            let _ = gave_up.await;
        });
        let (sent, ()) = tokio::join!(waiting, async { give_up.send(()).unwrap() });
        assert_eq!(sent, Err(SendError::Overflow));
        // With room made before giving up, the item gets in.
        let (_, n) = rx.recv().await.unwrap();
        rx.release(n);
        assert!(tx.has_room(5));
        assert_eq!(tx.send_waiting_until(3, 5, async {}).await, Ok(()));
    }

    #[tokio::test]
    async fn an_oversized_item_passes_an_empty_queue() {
        let (tx, _rx) = channel::<u8>(10);
        tx.send(1, 100).unwrap();
        assert_eq!(tx.send(2, 1), Err(SendError::Overflow));
    }
}
