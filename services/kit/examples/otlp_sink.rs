//! A do-nothing OTLP/HTTP receiver for `bench/services.sh`: accepts every
//! export with 200 and counts requests and bytes (GET /stats), so the
//! benchmark measures what exporting costs the services, not a collector.

use axum::routing::{get, post};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    bytes: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:4318".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let seen = Arc::new(Seen::default());
    let (a, b) = (seen.clone(), seen);
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: axum::body::Bytes| async move {
                a.requests.fetch_add(1, Ordering::Relaxed);
                a.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                ""
            }),
        )
        .route(
            "/stats",
            get(move || async move {
                format!(
                    "{} {}\n",
                    b.requests.load(Ordering::Relaxed),
                    b.bytes.load(Ordering::Relaxed)
                )
            }),
        );
    axum::serve(listener, app).await.expect("serve");
}
