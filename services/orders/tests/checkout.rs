//! The checkout saga end to end with the real shop (users, inventory,
//! pricing, payments), on both of orders' backends: a customer signs in,
//! tops up, fills a cart and checks out; the stock, the wallet, the cart
//! and the ledger all agree afterwards. One key is one order, however many
//! times (and however many at once) it is sent.

mod common;

use common::{new_key, problem, Backend, Shop};
use serde_json::{json, Value};

kit::on_both_backends!(
    a_checkout_makes_the_order_end_to_end,
    one_key_is_one_order_and_one_charge_even_twenty_at_once,
);

async fn a_checkout_makes_the_order_end_to_end(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "TEA-1", 2).await;
    shop.add(&ann, "POT-1", 1).await;
    let quoted = shop.cart(&ann).await["total_minor"].as_i64().unwrap();
    // 2 × 12.50 + 30.00, plus 20 % tax.
    assert_eq!(quoted, 6600);

    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = res.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(location, format!("/orders/{id}"));
    assert_eq!(order["state"], "confirmed");
    assert_eq!(
        (&order["reason"], &order["message"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        (&order["total_minor"], &order["currency"]),
        (&json!(6600), &json!("EUR"))
    );
    assert_eq!(
        (
            &order["subtotal_minor"],
            &order["discount_minor"],
            &order["tax_minor"]
        ),
        (&json!(5500), &json!(0), &json!(1100))
    );
    assert_eq!(
        order["lines"],
        json!([
            {"product_id": "POT-1", "product_name": "Teapot", "quantity": 1,
             "unit_price_minor": 3000, "line_total_minor": 3600},
            {"product_id": "TEA-1", "product_name": "Green tea", "quantity": 2,
             "unit_price_minor": 1250, "line_total_minor": 3000}
        ])
    );
    assert_eq!(shop.order(&ann, id).await, order, "the order as stored");

    // The stock left, the money moved exactly once, the cart is empty.
    assert_eq!(shop.stock("TEA-1").await, (98, 0, 98));
    assert_eq!(shop.stock("POT-1").await, (1, 0, 1));
    assert_eq!(shop.balance(&ann).await, 10_000 - 6600);
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    let cart = shop.cart(&ann).await;
    assert_eq!(cart["items"], json!([]), "{cart}");
    // The charge names the order.
    let reference: String = sqlx::query_scalar(
        "SELECT reference FROM movements WHERE kind = 'charge' AND user_id = $1",
    )
    .bind(&ann.id)
    .fetch_one(shop.payments_store.pool())
    .await
    .unwrap();
    assert_eq!(reference, id);

    let m = shop.metrics().await;
    for line in [
        r#"orders_checkouts_total{outcome="started"} 1"#,
        r#"orders_checkouts_total{outcome="confirmed"} 1"#,
        r#"orders_checkouts_total{outcome="failed_out_of_stock"} 0"#,
        r#"orders_compensations_total{action="release"} 0"#,
    ] {
        assert!(m.contains(line), "{line} in\n{m}");
    }
    shop.finish().await;
}

async fn one_key_is_one_order_and_one_charge_even_twenty_at_once(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer_with("ann", 20_000).await;
    shop.add(&ann, "CUP-1", 2).await;
    let key = new_key();
    let first = shop.checkout(&ann, &key).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // Again with the same key (the cart is empty now): the same order.
    let again = shop.checkout(&ann, &key).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(shop.movements(&ann, "charge").await, 1);

    // Twenty at once with a new key: one of them drives the saga, the
    // others wait for it; all answer the one order.
    shop.add(&ann, "CUP-1", 3).await;
    let key = new_key();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (c, url, key) = (ann.client.clone(), shop.url("/checkouts"), key.clone());
        all.spawn(async move {
            let res = c
                .post(url)
                .header("Idempotency-Key", key)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let mut ids = std::collections::BTreeSet::new();
    while let Some(r) = all.join_next().await {
        let (status, order) = r.unwrap();
        assert_eq!(status, 201, "{order}");
        ids.insert(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(!ids.contains(first["id"].as_str().unwrap()));
    assert_eq!(shop.movements(&ann, "charge").await, 2);
    assert_eq!(shop.stock("CUP-1").await, (5, 0, 5), "2 + 3 sold");
    assert_eq!(shop.balance(&ann).await, 20_000 - 1200 - 1800);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
        .bind(&ann.id)
        .fetch_one(shop.orders_store.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);

    // The key again, for another cart: refused, nothing charged.
    shop.add(&ann, "TEA-1", 1).await;
    let res = shop.checkout(&ann, &key).await;
    assert_eq!(res.status(), 422);
    let p = problem(res).await;
    assert_eq!(
        p["type"],
        "https://eshop.dev/problems/idempotency-key-reuse"
    );
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(shop.movements(&ann, "charge").await, 2);
    shop.finish().await;
}
