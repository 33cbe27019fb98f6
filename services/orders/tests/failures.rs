//! Checkouts that fail, and what is undone: a refusal in words, nothing
//! left charged and no stock left held; and the one case where orders
//! must not decide (a charge whose answer was lost), which stays pending
//! until payments' own answer settles it.

mod common;

use common::proxy::{Mode, Proxy};
use common::{new_key, problem, Backend, Shop};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_fails_in_words_and_charges_nothing() {
    let shop = Shop::start(Backend::Sqlite).await;
    let ann = shop.customer_with("ann", 50_000).await;
    shop.add(&ann, "POT-1", 3).await;
    shop.add(&ann, "WHISK-1", 1).await;
    shop.add(&ann, "TEA-1", 1).await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 409);
    let p = problem(res).await;
    assert_eq!(p["type"], "https://eshop.dev/problems/out-of-stock");
    assert_eq!(p["reason"], "out_of_stock");
    assert_eq!(
        p["detail"],
        "Only 2 Teapot left; Matcha whisk is out of stock. Nothing was charged"
    );
    let id = p["order"]["id"].as_str().unwrap();
    shop.saga_done(id, Duration::from_secs(5)).await;
    let o = shop.order(&ann, id).await;
    assert_eq!(
        (&o["state"], &o["reason"]),
        (&"failed".into(), &"out_of_stock".into())
    );
    assert_eq!(o["message"], p["detail"]);
    assert_eq!(shop.movements(&ann, "charge").await, 0);
    assert_eq!(shop.balance(&ann).await, 50_000);
    assert_eq!(shop.stock("POT-1").await, (2, 0, 2));
    assert_eq!(shop.stock("TEA-1").await, (100, 0, 100), "all or nothing");
    // The cart stays, to be fixed.
    assert_eq!(shop.cart(&ann).await["items"].as_array().unwrap().len(), 3);
    let m = shop.metrics().await;
    assert!(
        m.contains(r#"orders_checkouts_total{outcome="failed_out_of_stock"} 1"#),
        "{m}"
    );
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_fails_and_gives_the_held_stock_back() {
    let shop = Shop::start(Backend::Sqlite).await;
    let ann = shop.customer_with("ann", 1000).await;
    shop.add(&ann, "POT-1", 1).await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 402);
    let p = problem(res).await;
    assert_eq!(p["reason"], "insufficient_funds");
    assert_eq!(
        p["detail"],
        "Your wallet has 10.00 EUR; this order costs 36.00 EUR. Nothing was charged"
    );
    shop.saga_done(p["order"]["id"].as_str().unwrap(), Duration::from_secs(5))
        .await;
    assert_eq!(
        shop.stock("POT-1").await,
        (2, 0, 2),
        "the hold was released"
    );
    assert_eq!(shop.balance(&ann).await, 1000);
    assert_eq!(shop.movements(&ann, "charge").await, 0);
    let m = shop.metrics().await;
    assert!(
        m.contains(r#"orders_compensations_total{action="release"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"orders_checkouts_total{outcome="failed_insufficient_funds"} 1"#),
        "{m}"
    );
    shop.finish().await;
}

/// The hold runs out (1 s) while the charge's answer is on its way (1.5 s):
/// inventory refuses the commit, so the charge is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_after_the_charge_is_refunded() {
    let mut shop = Shop::services(Backend::Sqlite).await;
    let payments = Proxy::start(shop.payments_addr()).await;
    payments.set_delay(Duration::from_millis(1500));
    shop.start_orders(&[
        ("PAYMENTS_URL", &payments.url),
        ("HOLD_TTL_SECS", "1"),
        ("UPSTREAM_TIMEOUT_MS", "3000"),
        ("CHECKOUT_DEADLINE_MS", "9000"),
    ])
    .await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "POT-1", 1).await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 409);
    let p = problem(res).await;
    assert_eq!(p["reason"], "hold_expired");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("the 36.00 EUR charged are refunded"),
        "{p}"
    );
    shop.saga_done(p["order"]["id"].as_str().unwrap(), Duration::from_secs(8))
        .await;
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    assert_eq!(shop.movements(&ann, "refund").await, 1);
    assert_eq!(shop.balance(&ann).await, 10_000, "every cent back");
    assert_eq!(shop.stock("POT-1").await, (2, 0, 2), "nothing sold");
    let m = shop.metrics().await;
    assert!(
        m.contains(r#"orders_compensations_total{action="refund"} 1"#),
        "{m}"
    );
    shop.finish().await;
}

/// Payments unreachable: no charge can have happened, so the checkout
/// fails at once, the hold is released, and a new checkout works once
/// payments is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_down_fails_the_checkout_and_charges_nothing() {
    let mut shop = Shop::start(Backend::Sqlite).await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "POT-1", 1).await;
    shop.stop_payments().await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let p = problem(res).await;
    assert_eq!(p["reason"], "service_unavailable");
    assert_eq!(
        p["detail"],
        "Payments is not answering; nothing was charged, try again"
    );
    shop.saga_done(p["order"]["id"].as_str().unwrap(), Duration::from_secs(5))
        .await;
    assert_eq!(shop.stock("POT-1").await, (2, 0, 2));

    shop.restart_payments().await;
    assert_eq!(shop.movements(&ann, "charge").await, 0);
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(shop.balance(&ann).await, 10_000 - 3600);
    shop.finish().await;
}

/// The charge reaches payments but its answer never comes back: orders
/// cannot know whether money moved, so the checkout stays pending (202)
/// and the recovery loop asks payments again with the same key once it
/// can be heard; payments answers with the charge it made. One charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_answer_is_lost_stays_pending_until_payments_is_heard() {
    let mut shop = Shop::services(Backend::Sqlite).await;
    let payments = Proxy::start(shop.payments_addr()).await;
    shop.start_orders(&[
        ("PAYMENTS_URL", &payments.url),
        ("UPSTREAM_TIMEOUT_MS", "400"),
        ("CHECKOUT_DEADLINE_MS", "1500"),
    ])
    .await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "POT-1", 1).await;
    payments.set_mode(Mode::Swallow);
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = res.json().await.unwrap();
    assert_eq!(order["state"], "pending");
    let id = order["id"].as_str().unwrap();
    assert_eq!(location, format!("/orders/{id}"));
    // Payments did charge; orders just never heard.
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    assert_eq!(shop.order(&ann, id).await["state"], "pending");
    shop.metric("orders_pending 1", Duration::from_secs(10))
        .await;

    payments.set_mode(Mode::Forward);
    let o = shop.settled(&ann, id, Duration::from_secs(15)).await;
    assert_eq!(o["state"], "confirmed", "{o}");
    assert_eq!(
        shop.movements(&ann, "charge").await,
        1,
        "asked again, charged once"
    );
    assert_eq!(shop.balance(&ann).await, 10_000 - 3600);
    assert_eq!(shop.stock("POT-1").await, (1, 0, 1));
    assert_eq!(shop.cart(&ann).await["items"], serde_json::json!([]));
    shop.metric("orders_pending 0", Duration::from_secs(5))
        .await;
    shop.finish().await;
}
