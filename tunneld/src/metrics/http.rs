//! The metrics endpoint: plain HTTP/1.1 on its own listener, serving
//! `/metrics`, `/healthz` and `/readyz` to GET (and HEAD) only.
//!
//! Every connection and request is bounded, so a hostile scraper costs
//! little: at most [`MAX_CONNECTIONS`] at once (past it a new one is closed
//! at once), a request head of at most [`MAX_REQUEST_HEAD_BYTES`] read
//! within [`HEADER_READ_TIMEOUT`], and a connection closed after
//! [`CONNECTION_LIFETIME`] whatever it does. Request bodies are never read.
//! Shares nothing with the API's accept loop or the tunnels'.

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Metrics;
use crate::sys::accept_backoff::AcceptBackoff;

/// Connections open at once; Prometheus uses one per target.
pub const MAX_CONNECTIONS: usize = 16;

/// Time a client has to send a request's head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a connection stays open, kept alive or not.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Largest request head read (hyper's smallest buffer).
pub const MAX_REQUEST_HEAD_BYTES: usize = 8192;

/// The exposition format served: OpenMetrics text, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::new("metrics");
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.accepted();
                a
            }
            Err(e) => {
                let wait = backoff.failed(&e);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections; closing a new one");
            continue;
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(
            async move {
                let service = service_fn(move |req| answer(req, metrics.clone()));
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_HEAD_BYTES)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    r = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {
                        if let Ok(Err(e)) = r {
                            tracing::debug!("metrics connection: {e}");
                        }
                    }
                }
                drop(place);
            }
            .instrument(tracing::debug_span!("metrics_connection", %peer)),
        );
    }
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let lifecycle = metrics.daemon.lifecycle();
    Ok(match req.uri().path() {
        "/metrics" => {
            // Reads /proc and the registry: off the async threads.
            let encoded = tokio::task::spawn_blocking(move || metrics.encode()).await;
            match encoded {
                Ok(Ok(text)) => {
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static(CONTENT_TYPE),
                    );
                    r
                }
                _ => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
            }
        }
        "/healthz" if lifecycle.is_stopping() => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n")
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        "/readyz" if lifecycle.is_ready() => plain(StatusCode::OK, "ready\n"),
        "/readyz" => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{:?}\n", lifecycle.phase()).to_lowercase(),
        ),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz, /readyz\n",
        ),
    })
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
