//! Signals: SIGINT and SIGTERM stop tunneld; SIGHUP reloads what can be
//! reloaded and is never fatal.

use tunneld::{TokenStore, config::Reloader};

pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
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
