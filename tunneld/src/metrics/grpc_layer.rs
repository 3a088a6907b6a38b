//! Counts every API call by method and final gRPC code, and times it: a
//! tower layer around the whole API (tonic has no maintained one).
//!
//! The code is read where gRPC puts it: the response headers of a
//! trailers-only answer (every error a handler or the auth layer returns
//! before any message), else the trailers at the end of the body. A call
//! is recorded once, when its response body is dropped: its duration is
//! the whole call, streams included. A call whose body ends without a
//! code counts as `UNKNOWN`, one dropped before its end (the caller went
//! away) as `CANCELLED`.
//!
//! The method label is the full gRPC method (`tunnel.v1.TunnelService/List`)
//! when it is one the server serves, else `unknown`: a client cannot mint
//! series by calling made-up paths.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http_body::{Body, Frame, SizeHint};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tower::{Layer, Service};

/// Bucket bounds of the call duration histogram, in seconds: from a
/// loopback List (~0.2 ms) to an Exec or an attached tunnel of minutes.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

/// The method label of a path not served.
const UNKNOWN_METHOD: &str = "unknown";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: Arc<str>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The API's call counts and durations.
#[derive(Debug)]
pub struct GrpcStats {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for GrpcStats {
    fn default() -> Self {
        GrpcStats {
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
        }
    }
}

impl GrpcStats {
    /// Adds the two families to `registry` (they share their storage).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tunneld_grpc_requests",
            "API calls by method and final gRPC code",
            self.calls.clone(),
        );
        registry.register(
            "tunneld_grpc_request_duration_seconds",
            "API call durations, to the end of the response (a stream's whole life)",
            self.durations.clone(),
        );
    }

    fn record(&self, method: Arc<str>, code: &'static str, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                method: method.clone(),
                code,
            })
            .inc();
        self.durations
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }
}

/// The layer: counts into `stats` the calls to the `methods` served
/// (`package.Service/Method`).
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    stats: Arc<GrpcStats>,
    methods: Arc<HashSet<Arc<str>>>,
}

impl GrpcMetricsLayer {
    /// A layer recording into `stats`; `methods` bounds the method label.
    pub fn new(stats: Arc<GrpcStats>, methods: impl IntoIterator<Item = String>) -> Self {
        GrpcMetricsLayer {
            stats,
            methods: Arc::new(methods.into_iter().map(Arc::from).collect()),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the API.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

/// The method label of a request path.
fn method_label(path: &str, methods: &HashSet<Arc<str>>) -> Arc<str> {
    let name = path.strip_prefix('/').unwrap_or(path);
    methods
        .get(name)
        .cloned()
        .unwrap_or_else(|| Arc::from(UNKNOWN_METHOD))
}

/// gRPC's name of a `grpc-status` value (`0` → `OK`, `5` → `NOT_FOUND`).
fn code_name(value: &[u8]) -> &'static str {
    match value {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn status_in(headers: &http::HeaderMap) -> Option<&'static str> {
    headers.get("grpc-status").map(|v| code_name(v.as_bytes()))
}

/// One call being timed; recorded when dropped.
struct Call {
    stats: Arc<GrpcStats>,
    method: Arc<str>,
    started: Instant,
    code: Option<&'static str>,
    ended: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self
            .code
            .unwrap_or(if self.ended { "UNKNOWN" } else { "CANCELLED" });
        self.stats
            .record(self.method.clone(), code, self.started.elapsed());
    }
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call {
            stats: self.layer.stats.clone(),
            method: method_label(req.uri().path(), &self.layer.methods),
            started: Instant::now(),
            code: None,
            ended: false,
        };
        CallFuture {
            inner: self.inner.call(req),
            call: Some(call),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of a counted call, on its way.
    pub struct CallFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, R, E> Future for CallFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = Result<http::Response<CountedBody<R>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        // A failed service drops the call here: counted as cancelled.
        let response = result?;
        let Some(mut call) = this.call.take() else {
            // Polled after completion: tower's contract forbids it.
            return Poll::Pending;
        };
        call.code = status_in(response.headers());
        Poll::Ready(Ok(response.map(|inner| CountedBody { inner, call })))
    }
}

pin_project_lite::pin_project! {
    /// A counted call's response body: finds the code in its trailers.
    pub struct CountedBody<B> {
        #[pin]
        inner: B,
        call: Call,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    this.call.ended = true;
                    if this.call.code.is_none() {
                        this.call.code = status_in(trailers);
                    }
                }
            }
            Some(Err(_)) => {}
            None => this.call.ended = true,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_name() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"5"), "NOT_FOUND");
        assert_eq!(code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_name(b"17"), "UNKNOWN");
        assert_eq!(code_name(b" 5"), "UNKNOWN");
        assert_eq!(code_name(b""), "UNKNOWN");
    }

    #[test]
    fn methods_are_bounded_to_those_served() {
        let methods: HashSet<Arc<str>> = [Arc::from("tunnel.v1.TunnelService/Close")].into();
        assert_eq!(
            &*method_label("/tunnel.v1.TunnelService/Close", &methods),
            "tunnel.v1.TunnelService/Close"
        );
        assert_eq!(
            &*method_label("/tunnel.v1.TunnelService/Nope", &methods),
            "unknown"
        );
        assert_eq!(&*method_label("/", &methods), "unknown");
    }

    #[tokio::test]
    async fn a_call_counts_once_under_its_code() {
        use http_body_util::BodyExt;

        let stats = Arc::new(GrpcStats::default());
        let layer = GrpcMetricsLayer::new(stats.clone(), ["s.S/M".to_string()]);
        // Trailers-only: the code in the headers.
        let refused = tower::service_fn(|_req: http::Request<()>| async {
            let mut r = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
            r.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("5"));
            Ok::<_, std::convert::Infallible>(r)
        });
        let mut svc = layer.layer(refused);
        let req = http::Request::builder().uri("/s.S/M").body(()).unwrap();
        let body = svc.call(req).await.unwrap().into_body();
        drop(body.collect().await);
        // The code in the trailers.
        let ok = tower::service_fn(|_req: http::Request<()>| async {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let body = http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<
                _,
                std::convert::Infallible,
            >(
                Frame::<bytes::Bytes>::trailers(trailers),
            )]));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        let mut svc = layer.layer(ok);
        let req = http::Request::builder().uri("/other").body(()).unwrap();
        let body = svc.call(req).await.unwrap().into_body();
        drop(body.collect().await);

        let mut registry = Registry::default();
        stats.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"tunneld_grpc_requests_total{method="s.S/M",code="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tunneld_grpc_requests_total{method="unknown",code="OK"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tunneld_grpc_request_duration_seconds_count{method="s.S/M"} 1"#),
            "{text}"
        );
    }
}
