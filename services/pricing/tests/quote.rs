//! POST /quote against a real inventory: a basket's lines priced as
//! calculate_price prices them, their sums, and what it refuses.

mod common;

use common::{spawn_inventory, spawn_pricing};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basket_is_the_sum_of_its_lines_in_one_currency() {
    let inv = spawn_inventory().await;
    let pricing = spawn_pricing(&inv.running.base, &[]).await;
    let c = reqwest::Client::new();
    let quote = |items: Value| {
        c.post(format!("{}/quote", pricing.base))
            .json(&json!({ "items": items }))
            .send()
    };

    let res = quote(json!([
        {"product_id": "SKU-2", "quantity": 1},
        {"product_id": "SKU-1", "quantity": 12}
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let b: Value = res.json().await.unwrap();
    // Each line exactly as calculate_price says, in the request's order.
    for (i, (id, q)) in [("SKU-2", 1), ("SKU-1", 12)].into_iter().enumerate() {
        let single: Value = c
            .get(format!(
                "{}/calculate_price?product_id={id}&quantity={q}",
                pricing.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(b["lines"][i], single, "line {i}");
    }
    for k in [
        "subtotal_minor",
        "discount_minor",
        "tax_minor",
        "total_minor",
    ] {
        let sum: i64 = b["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l[k].as_i64().unwrap())
            .sum();
        assert_eq!(b[k].as_i64().unwrap(), sum, "{k}");
    }
    assert_eq!(
        b["total_minor"],
        27347 + b["lines"][0]["total_minor"].as_i64().unwrap()
    );
    assert_eq!(
        (b["currency"].as_str(), b["minor_unit_exponent"].as_i64()),
        (Some("EUR"), Some(2))
    );

    // Euros and yen are never added up.
    let res = quote(json!([
        {"product_id": "SKU-1", "quantity": 1},
        {"product_id": "YEN-1", "quantity": 1}
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/mixed-currencies");
    assert!(p["detail"].as_str().unwrap().contains("EUR, JPY"), "{p}");

    // Every unknown product named in one 404.
    let res = quote(json!([
        {"product_id": "NOPE-2", "quantity": 1},
        {"product_id": "SKU-1", "quantity": 1},
        {"product_id": "NOPE-1", "quantity": 1}
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 404);
    let p: Value = res.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("NOPE-1, NOPE-2"),
        "{p}"
    );

    // Bad lines: each named, and inventory never asked.
    let res = quote(json!([
        {"product_id": "SKU-1", "quantity": 0},
        {"product_id": "../x", "quantity": 1},
        {"product_id": "SKU-1", "quantity": 1}
    ]))
    .await
    .unwrap();
    assert_eq!(res.status(), 422);
    let p: Value = res.json().await.unwrap();
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "items[0].quantity",
            "items[1].product_id",
            "items[2].product_id"
        ]
    );
    assert_eq!(quote(json!([])).await.unwrap().status(), 422);

    // Inventory gone: a 503 with Retry-After, not a partial basket.
    inv.running.stop().await;
    let res = quote(json!([{"product_id": "SKU-1", "quantity": 1}]))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    pricing.stop().await;
}
