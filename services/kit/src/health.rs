//! Liveness and readiness.
//!
//! `/healthz` answers as long as the process can serve HTTP: restarting it
//! would not help a dependency outage, so it checks nothing else.
//! `/readyz` runs the service's own dependency check, so load balancers and
//! Kubernetes stop sending traffic while, say, the database is away.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A dependency check; `Err` carries a short, client-safe reason.
pub type Readiness = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

pub fn always_ready() -> Readiness {
    Arc::new(|| Box::pin(async { Ok(()) }))
}

/// Ready while `ping` (one trivial database query) answers within a
/// second: the readiness of every service that owns a database.
pub fn database<F, Fut, E>(ping: F) -> Readiness
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let ping = Arc::new(ping);
    Arc::new(move || {
        let ping = ping.clone();
        Box::pin(async move {
            match tokio::time::timeout(std::time::Duration::from_secs(1), ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err("database query failed".to_owned()),
                Err(_) => Err("database did not answer within 1s".to_owned()),
            }
        })
    })
}

pub async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

pub async fn readyz(check: Readiness) -> Response {
    match check().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `SERVICE healthcheck`: the container HEALTHCHECK command. Images are
/// distroless (no curl, no shell), so the binary probes its own `/readyz`
/// over plain HTTP/1.0 and exits 0 when ready, 1 otherwise.
pub fn probe(listen: std::net::SocketAddr) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()));
    let timeout = std::time::Duration::from_secs(2);
    let ok = (|| -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect_timeout(&target, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    })()
    .unwrap_or(false);
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
