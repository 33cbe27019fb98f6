//! Assembles a service's router with the shared endpoints and layers, and
//! serves it with a bounded graceful drain.

use crate::health::{self, Readiness};
use crate::metrics::{self, Metrics};
use crate::problem::{self, Problem};
use crate::telemetry::{self, RequestContext, TraceContext};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self as mw, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

/// Request bodies above this are refused with 413; the largest legitimate
/// body (a product) is a few KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Requests slower than this are logged as warnings whatever their status.
const SLOW: Duration = Duration::from_secs(1);

/// A service's routes plus what kit adds around them.
pub struct App {
    routes: Router,
    metrics: Metrics,
    readiness: Readiness,
    openapi: Option<axum::body::Bytes>,
    tracer: Option<crate::otlp::Tracer>,
}

/// What the observe middleware needs.
struct Observe {
    metrics: Arc<Metrics>,
    tracer: Option<crate::otlp::Tracer>,
}

impl App {
    pub fn new(routes: Router) -> Self {
        Self {
            routes,
            metrics: Metrics::new(),
            readiness: health::always_ready(),
            openapi: None,
            tracer: None,
        }
    }

    /// Export a server span per request over OTLP (see `otlp.rs`).
    pub fn tracer(mut self, tracer: Option<crate::otlp::Tracer>) -> Self {
        if let Some(t) = &tracer {
            t.register(self.metrics.registry_mut());
        }
        self.tracer = tracer;
        self
    }

    /// Service-specific metrics are registered on this before `into_router`.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    pub fn readiness(mut self, check: Readiness) -> Self {
        self.readiness = check;
        self
    }

    /// The service's OpenAPI document, served at `/openapi.json`.
    pub fn openapi(mut self, doc: impl Into<axum::body::Bytes>) -> Self {
        self.openapi = Some(doc.into());
        self
    }

    pub fn into_router(self) -> Router {
        let metrics = Arc::new(self.metrics);
        let readiness = self.readiness;
        let m = metrics.clone();
        let mut router = self
            .routes
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(move || health::readyz(readiness.clone())))
            .route(
                "/metrics",
                get(move || async move {
                    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], m.render())
                }),
            );
        if let Some(doc) = self.openapi {
            router = router.route(
                "/openapi.json",
                get(move || {
                    let doc = doc.clone();
                    async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
                }),
            );
        }
        router
            .fallback(problem::not_found_fallback)
            .method_not_allowed_fallback(problem::method_not_allowed_fallback)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
            .layer(mw::from_fn_with_state(
                Arc::new(Observe {
                    metrics,
                    tracer: self.tracer,
                }),
                observe,
            ))
    }
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message is printed by the panic hook; the client gets none of it.
    tracing::error!("handler panicked");
    Problem::internal().into_response()
}

/// Per request: request id and trace context, a log span carrying both,
/// RED metrics by matched route, and one access-log line.
async fn observe(State(obs): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let metrics = &obs.metrics;
    let start = Instant::now();
    let started_at = std::time::SystemTime::now();
    let ctx = RequestContext {
        request_id: telemetry::request_id_from(req.headers()),
        trace: TraceContext::from_headers(req.headers()),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = metrics::method_label(req.method());
    let span = tracing::info_span!(
        "request",
        method,
        route = %route,
        request_id = %ctx.request_id,
        trace_id = %ctx.trace.trace_id,
        span_id = %ctx.trace.span_id,
    );
    let request_id = HeaderValue::from_str(&ctx.request_id).ok();
    let trace = ctx.trace.clone();
    req.extensions_mut().insert(ctx);
    metrics.in_flight().inc();
    let mut res = next.run(req).instrument(span.clone()).await;
    metrics.in_flight().dec();
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    metrics.observe(method, &route, status, elapsed);
    if let Some(id) = request_id {
        res.headers_mut()
            .insert(telemetry::X_REQUEST_ID.clone(), id);
    }
    // Successes are counted by the metrics; logging each one costs more
    // than serving it (a JSON line per request), so they are DEBUG on the
    // `access` target (`LOG_LEVEL=info,access=debug` to see them all).
    // Client errors are INFO, server errors and slow requests WARN.
    if let Some(tracer) = &obs.tracer {
        record_span(tracer, &trace, method, &route, status, started_at);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 || elapsed >= SLOW {
            tracing::warn!(target: "access", status, latency_ms, "request completed")
        } else if status >= 400 {
            tracing::info!(target: "access", status, latency_ms, "request completed")
        } else {
            tracing::debug!(target: "access", status, latency_ms, "request completed")
        }
    });
    res
}

/// Probes and scrapes would drown the traces, so they are not exported.
fn record_span(
    tracer: &crate::otlp::Tracer,
    trace: &TraceContext,
    method: &'static str,
    route: &str,
    status: u16,
    started_at: std::time::SystemTime,
) {
    use crate::otlp::{hex_to_bytes, SpanData, Value};
    if !trace.sampled || matches!(route, "/metrics" | "/healthz" | "/readyz") {
        return;
    }
    let (Some(trace_id), Some(span_id)) =
        (hex_to_bytes(&trace.trace_id), hex_to_bytes(&trace.span_id))
    else {
        return;
    };
    tracer.record(SpanData {
        trace_id,
        span_id,
        parent_span_id: trace.parent_span_id.as_deref().and_then(hex_to_bytes),
        name: format!("{method} {route}"),
        kind: 2,
        start: started_at,
        end: std::time::SystemTime::now(),
        attributes: vec![
            ("http.request.method", Value::Str(method.to_owned())),
            ("http.route", Value::Str(route.to_owned())),
            ("http.response.status_code", Value::Int(status as i64)),
        ],
        error: status >= 500,
    });
}

/// Binds the service's address, with an error that names it.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for
/// at most `drain`; after that the remaining connections are dropped so a
/// stuck client cannot hold a rollout hostage.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!(
            drain_ms = drain.as_millis() as u64,
            "shutting down, draining"
        );
        notify.notify_one();
    });
    tokio::select! {
        r = server.into_future() => r,
        _ = async { started.notified().await; tokio::time::sleep(drain).await } => {
            tracing::warn!("drain time limit reached; dropping remaining connections");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (Kubernetes, Docker) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
