//! Orders killed with SIGKILL in the middle of many checkouts: no
//! goodbye, no lease let go, requests cut off. Started again on the same
//! database, it finishes every checkout it had begun (confirmed, or
//! failed and fully compensated), none stays pending, none is doubled:
//! each customer's key is still one order and at most one kept charge,
//! and stock and wallets agree with the orders.

mod common;

use common::proxy::Proxy;
use common::{new_key, Backend, Customer, Shop};
use std::time::{Duration, Instant};

kit::on_both_backends!(checkouts_cut_off_by_a_sigkill_are_all_finished_by_the_next_run);

const CUSTOMERS: usize = 24;
const BALANCE: i64 = 10_000;
/// Cups in stock (common::CATALOGUE): fewer than customers, so some
/// checkouts are refused and compensated too.
const CUPS: i64 = 10;

/// (step, state) of every order.
async fn steps(shop: &Shop) -> Vec<(String, String)> {
    sqlx::query_as("SELECT step, state FROM orders")
        .fetch_all(shop.orders_store.pool())
        .await
        .unwrap()
}

async fn checkouts_cut_off_by_a_sigkill_are_all_finished_by_the_next_run(b: Backend) {
    let mut shop = Shop::services(b).await;
    // Slow answers from inventory and payments spread the checkouts over
    // every step when the kill comes.
    let inventory = Proxy::start(shop.inventory_addr()).await;
    let payments = Proxy::start(shop.payments_addr()).await;
    inventory.set_delay(Duration::from_millis(60));
    payments.set_delay(Duration::from_millis(60));
    let settings = [
        ("INVENTORY_URL", inventory.url.as_str()),
        ("PAYMENTS_URL", payments.url.as_str()),
        ("UPSTREAM_TIMEOUT_MS", "500"),
        ("CHECKOUT_DEADLINE_MS", "1500"),
    ];
    let mut orders = shop.spawn_orders(&settings).await;
    let mut customers: Vec<(Customer, String)> = Vec::new();
    for i in 0..CUSTOMERS {
        let c = shop.customer_with(&format!("c{i}"), BALANCE).await;
        shop.add(&c, "TEA-1", 1).await;
        shop.add(&c, "CUP-1", 1).await;
        customers.push((c, new_key()));
    }

    let checkouts = |shop: &Shop| {
        let url = shop.url("/checkouts");
        customers
            .iter()
            .map(|(c, key)| {
                let req = c
                    .client
                    .post(&url)
                    .header("Idempotency-Key", key)
                    .timeout(Duration::from_secs(10))
                    .send();
                tokio::spawn(req)
            })
            .collect::<Vec<_>>()
    };
    let inflight = checkouts(&shop);
    // Kill once some checkout is done and another is past its hold
    // (money may be moving).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = steps(&shop).await;
        let done = s.iter().any(|(step, _)| step == "done");
        if done
            && s.iter()
                .any(|(step, _)| step == "charge" || step == "commit")
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "none done and another charging: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    orders.start_kill().unwrap();
    orders.wait().await.unwrap();
    let at_kill = steps(&shop).await;
    let cut_off = at_kill.iter().filter(|(step, _)| step != "done").count();
    assert!(cut_off > 0, "the kill came after every checkout was done");
    for r in inflight {
        // Cut off, or answered before the kill: either is fine.
        let _ = r.await.unwrap();
    }

    inventory.set_delay(Duration::ZERO);
    payments.set_delay(Duration::ZERO);
    let _orders = shop.spawn_orders(&settings).await;
    // Every customer asks again with the same key, all at once: the
    // checkout it had, or (if the first request never got in) a new one.
    for r in checkouts(&shop) {
        let status = r.await.unwrap().unwrap().status().as_u16();
        assert!([201, 202, 402, 409, 503].contains(&status), "{status}");
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let s = steps(&shop).await;
        if s.iter().all(|(step, _)| step == "done") {
            break;
        }
        assert!(Instant::now() < end, "checkouts stuck: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut confirmed = 0;
    for (c, _) in &customers {
        let list = shop.orders(c).await;
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "one key, one order: {list}");
        let o = &items[0];
        let (charges, refunds) = (
            shop.movements(c, "charge").await,
            shop.movements(c, "refund").await,
        );
        let balance = shop.balance(c).await;
        match o["state"].as_str().unwrap() {
            "confirmed" => {
                confirmed += 1;
                assert_eq!((charges, refunds), (1, 0), "{o}");
                assert_eq!(balance, BALANCE - o["total_minor"].as_i64().unwrap());
            }
            "failed" => {
                assert_eq!(charges, refunds, "every charge refunded: {o}");
                assert_eq!(balance, BALANCE, "{o}");
            }
            other => panic!("order {o} is {other}"),
        }
    }
    let mut by_step = std::collections::BTreeMap::new();
    for (step, _) in &at_kill {
        *by_step.entry(step.as_str()).or_insert(0) += 1;
    }
    eprintln!("checkouts by step at the kill: {by_step:?}; {confirmed} confirmed in the end");
    assert!(confirmed > 0 && confirmed <= CUPS, "{confirmed} confirmed");
    assert_eq!(
        shop.stock("CUP-1").await,
        (CUPS - confirmed, 0, CUPS - confirmed)
    );
    assert_eq!(
        shop.stock("TEA-1").await,
        (100 - confirmed, 0, 100 - confirmed)
    );
    shop.finish().await;
}
