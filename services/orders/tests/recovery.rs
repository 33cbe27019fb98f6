//! Checkouts left half-way by orders itself: stopped mid-saga after the
//! charge, or a driver that died holding its lease. The next orders run
//! (or the recovery loop, once the lease runs out) finishes them, with
//! the same ids and keys: one order, one charge.

mod common;

use common::proxy::{Mode, Proxy};
use common::{new_key, Backend, Shop};
use std::time::{Duration, Instant};

kit::on_both_backends!(
    a_checkout_cut_off_by_a_stop_of_orders_is_finished_by_the_next_run,
    a_checkout_whose_driver_died_is_taken_over_when_its_lease_runs_out,
);

async fn step(shop: &Shop, id: &str) -> String {
    sqlx::query_scalar("SELECT step FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(shop.orders_store.pool())
        .await
        .unwrap()
}

/// Inventory goes silent the moment payments answers the charge, so the
/// commit cannot happen; orders stops (its recovery loop cut off mid-try);
/// a new orders process, with inventory back, confirms the order.
async fn a_checkout_cut_off_by_a_stop_of_orders_is_finished_by_the_next_run(b: Backend) {
    let mut shop = Shop::services(b).await;
    let inventory = Proxy::start(shop.inventory_addr()).await;
    let payments = Proxy::start(shop.payments_addr()).await;
    let silence = inventory.clone();
    payments.on_response(move || silence.set_mode(Mode::Blackhole));
    let fast = [
        ("INVENTORY_URL", inventory.url.as_str()),
        ("PAYMENTS_URL", payments.url.as_str()),
        ("UPSTREAM_TIMEOUT_MS", "300"),
        ("CHECKOUT_DEADLINE_MS", "1200"),
    ];
    shop.start_orders(&fast).await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "POT-1", 1).await;
    let res = shop.checkout(&ann, &new_key()).await;
    assert_eq!(res.status(), 202);
    let id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(step(&shop, &id).await, "commit", "charged, not committed");
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    assert_eq!(shop.stock("POT-1").await, (2, 1, 1), "still held");
    // Let the recovery loop try (and fail) a little, then stop orders,
    // wherever it is.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shop.stop_orders().await;

    payments.on_response(|| {});
    inventory.set_mode(Mode::Forward);
    shop.start_orders(&fast).await;
    let o = shop.settled(&ann, &id, Duration::from_secs(15)).await;
    assert_eq!(o["state"], "confirmed", "{o}");
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    assert_eq!(shop.balance(&ann).await, 10_000 - 3600);
    assert_eq!(shop.stock("POT-1").await, (1, 0, 1));
    assert_eq!(shop.cart(&ann).await["items"], serde_json::json!([]));
    shop.finish().await;
}

/// A checkout created and leased by a driver that then vanished (as a
/// replica dying right after `POST /checkouts` claimed it): the running
/// recovery loop leaves it alone while the lease lasts, then finishes it.
async fn a_checkout_whose_driver_died_is_taken_over_when_its_lease_runs_out(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer_with("ann", 10_000).await;
    shop.add(&ann, "TEA-1", 1).await;
    let lease = orders::db::Lease::new(1500);
    let created = shop
        .orders_store
        .create_checkout(&ann.id, "k-dead-driver", &lease)
        .await
        .unwrap();
    let orders::db::Created::New(order) = created else {
        panic!("{created:?}")
    };
    let leased_until = Instant::now() + Duration::from_millis(1300);
    while Instant::now() < leased_until {
        assert_eq!(
            step(&shop, &order.id).await,
            "hold",
            "nobody else drives it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = shop.settled(&ann, &order.id, Duration::from_secs(10)).await;
    assert_eq!(o["state"], "confirmed", "{o}");
    assert_eq!(shop.movements(&ann, "charge").await, 1);
    assert_eq!(shop.stock("TEA-1").await, (99, 0, 99));
    shop.finish().await;
}
