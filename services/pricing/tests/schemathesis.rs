//! schemathesis (a real, external property-based API tester) against the
//! running pricing, in front of a real inventory: zero 5xx, zero schema
//! violations.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_service() {
    let inv = common::spawn_inventory().await;
    let pricing = common::spawn_pricing(&inv.running.base, &[]).await;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml");
    kit::testing::schemathesis(&pricing.base, &config, 40).await;
    pricing.stop().await;
    inv.running.stop().await;
}
