//! How the configuration is read again, and when: the binary builds a
//! [`Reloader`] around the flags it parsed and asks for a reload on SIGHUP;
//! the daemon waits for those requests and applies what the new `Config`
//! says. Signals stay the binary's business; applying stays the daemon's.

use std::sync::Arc;

use tokio::sync::Notify;

use super::Config;
use crate::error::Result;

/// Reads the configuration again on request.
#[derive(Clone)]
pub struct Reloader {
    load: Arc<dyn Fn() -> Result<Config> + Send + Sync>,
    requests: Arc<Notify>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloader")
    }
}

impl Reloader {
    /// A reloader that reads the configuration with `load` (for the
    /// binary: `config::load` of the flags it was started with).
    pub fn new(load: impl Fn() -> Result<Config> + Send + Sync + 'static) -> Self {
        Reloader {
            load: Arc::new(load),
            requests: Arc::default(),
        }
    }

    /// Asks for a reload; requests made while one waits are one.
    pub fn request(&self) {
        self.requests.notify_one();
    }

    /// Waits for the next request.
    pub async fn requested(&self) {
        self.requests.notified().await;
    }

    /// Reads the configuration (every problem, `FILE:LINE:COL: …` a line).
    pub fn load(&self) -> Result<Config> {
        (self.load)()
    }
}
