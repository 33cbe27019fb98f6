//! The benchmark ceiling: a bare axum hello-world on the same runtime
//! settings as the services, with none of their layers. `bench/services.sh`
//! compares every service endpoint against it.

use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8089".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    let app = axum::Router::new().route("/", get(|| async { "Hello, World!" }));
    axum::serve(listener, app).await.expect("serve");
}
