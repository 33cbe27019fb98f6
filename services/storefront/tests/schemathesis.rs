//! schemathesis (a real, external property-based API tester) against the
//! public API, `/api/<service>/…` on the storefront, in front of the real
//! shop: each service's own OpenAPI document, fetched through the gateway,
//! must describe what the gateway answers (zero 5xx, zero schema
//! violations), so API clients and load tests can use the one entry.

mod common;

use serde_json::{json, Value};

/// Each service's schemathesis settings, with `pins` as path parameters
/// (values that exist, so generated requests get past 404).
fn config(dir: &std::path::Path, service: &str, pins: &[(&str, &Value)]) -> std::path::PathBuf {
    let own = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(service)
        .join("schemathesis.toml");
    let mut config = std::fs::read_to_string(own).unwrap();
    if !pins.is_empty() {
        config.push_str("\n[parameters]\n");
        for (name, value) in pins {
            config.push_str(&format!("\"path.{name}\" = {value}\n"));
        }
    }
    let file = dir.join(format!("{service}.toml"));
    std::fs::write(&file, config).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_behind_the_gateway_matches_its_openapi_document() {
    let shop = common::start().await;
    let api = |service: &str| format!("{}/api/{service}", shop.storefront.base);
    let admin = kit::testing::client_as(&shop.admin_token);
    // The admin's wallet, a charge and an order, all through the gateway.
    let me = admin.get(format!("{}/me", api("users"))).send().await;
    let id = me.unwrap().json::<Value>().await.unwrap()["id"].clone();
    let wallet = format!("{}/wallets/{}", api("payments"), id.as_str().unwrap());
    let res = admin
        .post(format!("{wallet}/top-ups"))
        .header("Idempotency-Key", "schemathesis-top-up")
        .json(&json!({"amount_minor": 50_000, "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = admin
        .post(format!("{wallet}/charges"))
        .header("Idempotency-Key", "schemathesis-charge")
        .json(&json!({"amount_minor": 100, "currency": "EUR", "reference": "schemathesis"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let charge: Value = res.json().await.unwrap();
    let res = admin
        .put(format!("{}/cart/items/SKU-1", api("orders")))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = admin
        .post(format!("{}/checkouts", api("orders")))
        .header("Idempotency-Key", "schemathesis-checkout")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sku = json!("SKU-1");
    let runs: [(&str, Vec<(&str, &Value)>); 5] = [
        ("users", vec![]),
        ("inventory", vec![]),
        ("pricing", vec![]),
        (
            "payments",
            vec![("user_id", &id), ("charge_id", &charge["id"])],
        ),
        (
            "orders",
            vec![("product_id", &sku), ("order_id", &order["id"])],
        ),
    ];
    for (service, pins) in runs {
        let file = config(dir.path(), service, &pins);
        // kit runs one schemathesis at a time (a CPython race; see there).
        kit::testing::schemathesis_as(&api(service), &file, 20, Some(&shop.admin_token)).await;
    }
    shop.stop().await;
}
