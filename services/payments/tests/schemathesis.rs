//! schemathesis (a real, external property-based API tester) against the
//! running payments service on both backends: zero 5xx, zero schema
//! violations.

mod common;

use common::{spawn_app, Backend};

async fn conforms(b: Backend) {
    let app = spawn_app(b).await;
    // As an admin, so every operation answers beyond 401/403; a wallet
    // and a charge exist for the generated requests to find.
    app.top_up("ann", 50_000, "EUR").await;
    assert_eq!(app.charge("ann", &common::new_key(), 100).await.status(), 201);
    let token = app.token("root", &["admin"]);
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    kit::testing::schemathesis_as(&app.server.base, &config, 40, Some(&token)).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_sqlite() {
    conforms(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_postgres() {
    conforms(Backend::Postgres).await
}
