//! schemathesis (a real, external property-based API tester) against the
//! running payments service on both backends: zero 5xx, zero schema
//! violations.

mod common;

use common::{spawn_app, Backend};
use std::path::PathBuf;

/// The Python behind schemathesis here (3.11.7) has a CPython bug: two
/// threads parsing source at once may fail with this (hypothesis parses a
/// module to describe a lambda, and both of schemathesis's workers do it
/// at the start of the path-parameter checks). Two schemathesis runs at
/// once made it happen every time, one alone never: the two tests take
/// turns, and a run failing with exactly this is the tool's fault and is
/// run once more.
const CPYTHON_AST_RACE: &str = "AST constructor recursion depth mismatch";
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn schemathesis(base: String, config: PathBuf, token: String) {
    let _turn = ONE_AT_A_TIME.lock().await;
    for attempt in 1..=2 {
        let (b, c, t) = (base.clone(), config.clone(), token.clone());
        let run =
            tokio::spawn(async move { kit::testing::schemathesis_as(&b, &c, 40, Some(&t)).await });
        let Err(e) = run.await else { return };
        let panic = e.into_panic();
        let report = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if attempt == 2 || !report.contains(CPYTHON_AST_RACE) {
            std::panic::resume_unwind(panic);
        }
        eprintln!("schemathesis hit the CPython AST race; running it again");
    }
}

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
    schemathesis(app.server.base.clone(), file, token).await;
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
