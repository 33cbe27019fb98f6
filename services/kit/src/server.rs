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
use std::future::Future;
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

/// Connections the kernel holds for us while every slot of
/// [`Limits::max_connections`] is taken; `TcpListener::bind` asks for 128,
/// after which new clients' SYNs are dropped and they retry only after a
/// second or more. Linux caps it at `net.core.somaxconn` (4096 by default).
pub const ACCEPT_BACKLOG: u32 = 1024;

/// Binds the service's address, with an error that names it.
pub async fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does, so a restarted service can rebind
        // while its old connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(ACCEPT_BACKLOG)
    };
    listen().map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// What one client may hold on to. `axum::serve` bounds neither, so a few
/// hundred connections that never finish their request head (slowloris)
/// or never send one each kept a task and a file descriptor for as long as
/// the client liked, until the process ran out of descriptors and every
/// service behind it stopped accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request line and its headers must arrive within this long of the
    /// connection opening or of the previous response; otherwise the
    /// connection is closed. hyper starts the clock when it starts reading a
    /// head and does not restart it per byte, so dripping a byte at a time
    /// does not extend it, and an idle keep-alive connection is closed after
    /// the same time (hyper has no separate idle timeout). Request bodies are
    /// not covered (they are at most [`BODY_LIMIT`]; the connection cap
    /// bounds how many can be held). Default 10 s: a real client sends its
    /// head in one packet, and a keep-alive pool reconnecting every 10 s is
    /// cheap.
    pub header_read_timeout: Duration,
    /// At most this many connections are open at once. When all are taken
    /// the server stops accepting, so further connections wait in the
    /// kernel's accept queue and are served in order as slots free up (a
    /// slot held by a slow client frees after `header_read_timeout` at the
    /// latest). Waiting rather than refusing means a burst or an attack
    /// costs normal clients latency, not errors they would have to retry
    /// (until the accept queue, [`ACCEPT_BACKLOG`] with [`bind`], is full
    /// too).
    /// Default 512: below the usual 1024 open-file limit, with room for the
    /// database pool, outgoing clients and log files.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// [`serve_with`] with the default [`Limits`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, drain, Limits::default()).await
}

/// Serves HTTP/1 within `limits` until `shutdown` resolves, then lets
/// in-flight requests finish for at most `drain`; after that the remaining
/// connections are dropped so a stuck client cannot hold a rollout hostage.
///
/// An accept loop over hyper rather than `axum::serve`, which sets no timer
/// (so hyper's header-read timeout never runs) and accepts without limit.
/// HTTP/1 only: the services' clients (reqwest without `http2`, probes,
/// Prometheus) speak it, and hyper-util's HTTP/2 detection reads the
/// preface with no timeout at all. Handlers can read the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
    limits: Limits,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // A cap of 0 would never accept anything; treat it as 1.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Owning the connection tasks is what lets the drain limit drop them.
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        // The slot is taken before accepting: while none is free the
        // listener is not polled and the kernel queues new connections.
        let next = async {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            loop {
                match listener.accept().await {
                    Ok(conn) => return (slot, conn),
                    Err(e) => on_accept_error(e).await,
                }
            }
        };
        let (slot, (stream, peer)) = tokio::select! {
            next = next => next,
            () = &mut shutdown => break,
        };
        // The peer's address for handlers that need it (the users
        // service's per-client login limit), as axum's ConnectInfo.
        let router = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(router);
        let conn =
            graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        connections.spawn(async move {
            // Header timeouts and clients that hang up land here; neither
            // is the server's fault, so they are not logged as errors.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    // Closing the listener refuses new connections at once instead of
    // leaving them queued until the process exits.
    drop(listener);
    while connections.try_join_next().is_some() {}
    tracing::info!(
        drain_ms = drain.as_millis() as u64,
        open_connections = connections.len(),
        "shutting down, draining"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("drain time limit reached; dropping remaining connections");
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Aborted handshakes are the client's business; anything else (out of
/// file descriptors, most likely) is logged and retried after a pause
/// rather than spinning or taking the server down, as hyper 0.14 did.
async fn on_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
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

/// A service built and bound, not yet serving: what every service's
/// `Application` holds beside its own state (tests bind port 0 and read
/// the port back before serving).
pub struct Bound {
    listener: TcpListener,
    router: Router,
    drain: Duration,
    limits: Limits,
}

impl Bound {
    pub fn new(listener: TcpListener, router: Router, common: &crate::config::Common) -> Self {
        Self {
            listener,
            router,
            drain: common.shutdown_timeout,
            limits: common.http,
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Logs "`name` listening" with `detail`, then [`serve_with`].
    pub async fn serve(
        self,
        name: &str,
        detail: &str,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, detail, "{name} listening");
        }
        serve_with(
            self.listener,
            self.router,
            shutdown,
            self.drain,
            self.limits,
        )
        .await
    }
}
