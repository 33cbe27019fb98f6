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
