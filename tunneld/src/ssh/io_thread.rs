//! The thread that carries one host's bytes.
//!
//! A host's russh session task and the connections of its tunnels run on one
//! current-thread runtime on a thread of their own, as `ssh` runs its
//! session and its forwards in one poll loop. On tokio's shared work-stealing
//! runtime the session task and a connection's task land on different
//! workers, and every SSH packet handed from one to the other woke a thread:
//! pulling through a local forward ran at 0.73× `ssh -L`, and 0.85× with both
//! on one thread (docs/BENCHMARKS.md, "Tuning steps"). The gRPC API, control
//! calls and Exec streams stay on the shared runtime; separate hosts use
//! separate threads, so one busy host does not slow another.

use std::{future::Future, sync::OnceLock};

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Where a host's session and connections run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostThread {
    /// A thread of its own, started on the host's first connection.
    #[default]
    Own,
    /// tokio's shared runtime, with the API.
    Shared,
}

/// One host's I/O thread, started on first use; it ends when the host is
/// dropped (a host removed at runtime), and with it whatever still runs
/// there.
#[derive(Debug)]
pub struct IoThread {
    host: String,
    mode: HostThread,
    handle: OnceLock<Option<Handle>>,
    /// Ends the thread's runtime when the host goes.
    stop: CancellationToken,
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl IoThread {
    /// The I/O thread of host `host`; nothing starts until it is used.
    pub fn new(host: &str, mode: HostThread) -> Self {
        IoThread {
            host: host.to_string(),
            mode,
            handle: OnceLock::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The runtime this host's byte path runs on: its own thread's, or the
    /// caller's when the host shares the runtime or the thread cannot start.
    pub fn handle(&self) -> Handle {
        let own = self.handle.get_or_init(|| match self.mode {
            HostThread::Shared => None,
            HostThread::Own => match start(&self.host, self.stop.clone()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(host = %self.host, "cannot start the host's I/O thread ({e}); its connections run on the shared runtime");
                    None
                }
            },
        });
        own.clone().unwrap_or_else(Handle::current)
    }

    /// Runs `fut` on the host's thread and waits for its result; dropping
    /// the returned future aborts it there.
    pub async fn run<F>(&self, fut: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // The caller's span goes along to the other thread.
        tokio_util::task::AbortOnDropHandle::new(self.handle().spawn(fut.in_current_span()))
            .await
            .ok()
    }
}

/// Starts a thread running a current-thread runtime until `stop` and
/// returns its handle.
fn start(host: &str, stop: CancellationToken) -> std::io::Result<Handle> {
    let runtime = Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    // Thread names are cut at 15 bytes by Linux; "ssh:" and the start of the
    // host name tell `top -H` which host a busy thread carries.
    let name: String = format!("ssh:{host}").chars().take(15).collect();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(stop.cancelled_owned()))?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_runs_on_a_thread_named_for_the_host() {
        let io = IoThread::new("db", HostThread::Own);
        let name = io
            .run(async { std::thread::current().name().map(str::to_owned) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("ssh:db"));
        // The same thread every time.
        let again = io.run(async { std::thread::current().id() }).await.unwrap();
        let first = io.run(async { std::thread::current().id() }).await.unwrap();
        assert_eq!(again, first);
        assert_ne!(first, std::thread::current().id());
    }

    #[tokio::test]
    async fn the_thread_ends_with_the_host() {
        let io = IoThread::new("gone", HostThread::Own);
        let thread = io.run(async { std::thread::current().id() }).await.unwrap();
        let handle = io.handle();
        drop(io);
        // The runtime shuts down; a task spawned there afterwards never runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            drop(handle.spawn(async move {
                let _ = tx.send(std::thread::current().id());
            }));
            match rx.await {
                Err(_) => break,
                Ok(id) => assert_eq!(id, thread),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the thread still runs"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn shared_runs_on_the_callers_runtime() {
        let io = IoThread::new("db", HostThread::Shared);
        let here = std::thread::current().id();
        let there = io.run(async { std::thread::current().id() }).await.unwrap();
        assert_eq!(here, there);
    }
}
