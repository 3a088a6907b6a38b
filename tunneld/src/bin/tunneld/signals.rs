//! Signals: SIGINT and SIGTERM drain then stop tunneld (a second one
//! stops it at once); SIGHUP reloads what can be reloaded and is never
//! fatal.

use tokio_util::sync::CancellationToken;
use tunneld::{TokenStore, config::Reloader};

/// SIGTERM and SIGINT: the first drains (no new connections, the open
/// ones get `--drain-timeout`, then tunneld stops), the second stops at
/// once.
pub async fn stop_signals(drain: CancellationToken, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => return std::future::pending().await,
    };
    let mut seen = 0;
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        seen += 1;
        if seen == 1 {
            tracing::info!("{name} received: draining");
            drain.cancel();
        } else {
            tracing::info!("{name} received again: stopping now");
            shutdown.cancel();
            return;
        }
    }
}

/// Handles every SIGHUP (a `postrotate kill -HUP` must never end the
/// daemon): asks the daemon to reload the config file (its declared
/// tunnels), reloads the token file when there is one, keeping the old
/// tokens if the new file is bad, and logs what it did.
pub async fn on_sighup(
    mut hup: tokio::signal::unix::Signal,
    tokens: Option<TokenStore>,
    reloader: Reloader,
) {
    while hup.recv().await.is_some() {
        reloader.request();
        match &tokens {
            Some(tokens) => match tokens.reload() {
                Ok(n) => {
                    tracing::info!(tokens = n, file = %tokens.path().display(), "SIGHUP: token file reloaded")
                }
                Err(e) => tracing::warn!("SIGHUP: {e}; the tokens in use are unchanged"),
            },
            None => tracing::info!("SIGHUP: no --token-file to reload; tunneld goes on"),
        }
    }
}
