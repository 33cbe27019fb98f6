//! schemathesis (a real, external property-based API tester) against the
//! running users service on both backends: zero 5xx, zero schema
//! violations.

mod common;

use common::{spawn_app_with, Backend};

async fn conforms(b: Backend) {
    let app = spawn_app_with(b, &[("ADMIN_EMAILS", "ann@example.com")]).await;
    app.sign_up("ann@example.com", "correct horse battery")
        .await;
    // As an admin: /me and the role routes answer beyond 401.
    let token = app.login("ann@example.com", "correct horse battery").await;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    kit::testing::schemathesis_as(&app.server.base, &config, 40, Some(&token)).await;
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
