//! schemathesis (a real, external property-based API tester) against the
//! running inventory on both backends: zero 5xx, zero schema violations.

mod common;

use common::{spawn_app, Backend};

async fn conforms(b: Backend) {
    let app = spawn_app(b).await;
    // A few real products so lookups also hit the found paths.
    for id in ["0", "00", "A", "a", "SKU-1"] {
        app.create(id, 500, 50).await;
    }
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    // As an admin, so the write operations are exercised beyond 401.
    let admin = app.issuer.token("admin-1", &["admin"]);
    kit::testing::schemathesis_as(&app.base, &config, 40, Some(&admin)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_sqlite() {
    conforms(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_postgres() {
    conforms(Backend::Postgres).await
}
