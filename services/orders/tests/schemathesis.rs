//! schemathesis (a real, external property-based API tester) against the
//! running orders service in front of the real shop, on both backends:
//! zero 5xx, zero schema violations.

mod common;

use common::{new_key, Backend, Shop};

async fn conforms(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer_with("ann", 100_000).await;
    // An order that exists, and a cart with a product the shop sells
    // (pinned below), so generated requests reach the saga and the
    // history instead of stopping at 404 or an empty cart.
    shop.add(&ann, "TEA-1", 1).await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 201);
    let order: serde_json::Value = res.json().await.unwrap();
    shop.add(&ann, "TEA-1", 1).await;
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    let mut config = std::fs::read_to_string(base).unwrap();
    config.push_str(&format!(
        "\n[parameters]\n\"path.product_id\" = \"TEA-1\"\n\"path.order_id\" = {}\n",
        order["id"]
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schemathesis.toml");
    std::fs::write(&file, config).unwrap();
    // kit runs one schemathesis at a time (a CPython race; see there).
    kit::testing::schemathesis_as(&shop.orders_url, &file, 40, Some(&ann.token)).await;
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_sqlite() {
    conforms(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service_on_postgres() {
    conforms(Backend::Postgres).await
}
