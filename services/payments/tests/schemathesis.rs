//! schemathesis (a real, external property-based API tester) against the
//! running payments service on both backends: zero 5xx, zero schema
//! violations.

mod common;

use common::{spawn_app, Backend};

async fn conforms(b: Backend) {
    let app = spawn_app(b).await;
    // As an admin, so every operation answers beyond 401/403, on a wallet
    // and a charge that exist (pinned below), so generated requests reach
    // the ledger instead of stopping at 404.
    app.top_up("ann", 50_000, "EUR").await;
    let res = app.charge("ann", &common::new_key(), 100).await;
    assert_eq!(res.status(), 201);
    let charge: serde_json::Value = res.json().await.unwrap();
    let token = app.token("root", &["admin"]);
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let mut config = std::fs::read_to_string(base).unwrap();
    config.push_str(&format!(
        "\n[parameters]\n\"path.user_id\" = \"ann\"\n\"path.charge_id\" = {}\n",
        charge["id"]
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schemathesis.toml");
    std::fs::write(&file, config).unwrap();
    // kit runs one schemathesis at a time (a CPython race; see there).
    kit::testing::schemathesis_as(&app.server.base, &file, 40, Some(&token)).await;
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
