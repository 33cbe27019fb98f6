//! Concurrency on SQLite and PostgreSQL: many requests at once with shared
//! keys, on one wallet, on one charge. The ledger is checked after each.

mod common;

use common::{new_key, spawn_app, Backend, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

kit::on_both_backends!(
    fifty_charges_with_ten_keys_make_exactly_ten_charges,
    concurrent_top_ups_and_charges_add_up_and_never_overdraw,
    concurrent_refunds_of_one_charge_never_exceed_it,
    clients_that_hang_up_mid_request_and_retry_pay_exactly_once,
);

async fn fifty_charges_with_ten_keys_make_exactly_ten_charges(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    app.top_up("ann", 10_000, "EUR").await;
    let keys: Vec<String> = (0..10).map(|_| new_key()).collect();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, key) = (app.clone(), keys[i % 10].clone());
        tasks.push(tokio::spawn(async move {
            let res = app.charge("ann", &key, 150).await;
            let status = res.status().as_u16();
            let replayed = res.headers().contains_key("idempotent-replayed");
            let body: Value = res.json().await.unwrap();
            (
                key,
                status,
                replayed,
                body["id"].as_str().unwrap_or_default().to_owned(),
            )
        }));
    }
    let mut ids_by_key = std::collections::HashMap::<String, HashSet<String>>::new();
    let mut replays = 0;
    for t in tasks {
        let (key, status, replayed, id) = t.await.unwrap();
        assert_eq!(status, 201, "key {key}");
        replays += usize::from(replayed);
        ids_by_key.entry(key).or_default().insert(id);
    }
    // Every request with a key got the one charge made for it.
    assert_eq!(ids_by_key.len(), 10);
    assert!(
        ids_by_key.values().all(|ids| ids.len() == 1),
        "{ids_by_key:?}"
    );
    assert_eq!(replays, 40);
    assert_eq!(app.count("charge").await, 10);
    assert_eq!(app.balance("ann").await, 10_000 - 10 * 150);
    Arc::into_inner(app).unwrap().finish().await;
}

async fn concurrent_top_ups_and_charges_add_up_and_never_overdraw(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    app.top_up("bob", 1_000, "EUR").await;
    // 8 tasks × 12 rounds: a top-up of 100 and two charges of 90 each
    // round, so charges outrun top-ups and some must be refused.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let (mut topped, mut charged, mut refused) = (0i64, 0i64, 0);
            for _ in 0..12 {
                let t = app
                    .post(
                        "/wallets/bob/top-ups",
                        &app.token("bob", &[]),
                        Some(&new_key()),
                        &json!({"amount_minor": 100, "currency": "EUR"}),
                    )
                    .await;
                assert_eq!(t.status(), 201);
                topped += 100;
                for _ in 0..2 {
                    let res = app.charge("bob", &new_key(), 90).await;
                    match res.status().as_u16() {
                        201 => {
                            let c: Value = res.json().await.unwrap();
                            assert!(c["balance_after_minor"].as_i64().unwrap() >= 0);
                            charged += 90;
                        }
                        409 => refused += 1,
                        s => panic!("charge answered {s}"),
                    }
                }
            }
            (topped, charged, refused)
        }));
    }
    let (mut topped, mut charged, mut refused) = (1_000, 0, 0);
    for t in tasks {
        let (t, c, r) = t.await.unwrap();
        (topped, charged, refused) = (topped + t, charged + c, refused + r);
    }
    assert_eq!(app.balance("bob").await, topped - charged);
    assert_eq!(app.count("charge").await, charged / 90);
    assert_eq!(charged / 90 + refused, 8 * 12 * 2);
    check_history_never_negative(&app, "bob").await;
    Arc::into_inner(app).unwrap().finish().await;
}

/// Each movement's balance_after, replayed in commit order, is the running
/// sum of the movements before it and never below zero.
async fn check_history_never_negative(app: &TestApp, user: &str) {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT kind, amount_minor, balance_after_minor FROM movements WHERE user_id = $1 ORDER BY seq",
    )
    .bind(user)
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    let mut running = 0;
    for (kind, amount, after) in rows {
        running += if kind == "charge" { -amount } else { amount };
        assert_eq!(after, running, "a {kind} of {amount}");
        assert!(after >= 0);
    }
}

async fn concurrent_refunds_of_one_charge_never_exceed_it(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    app.top_up("cat", 1_000, "EUR").await;
    let c: Value = app
        .charge("cat", &new_key(), 1_000)
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/charges/{}/refunds", c["id"].as_str().unwrap());
    // 20 refunds of 70 against 1000: exactly 14 fit.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, path) = (app.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let shop = app.token("shop", &["service"]);
            app.post(&path, &shop, Some(&new_key()), &json!({"amount_minor": 70}))
                .await
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        14,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(app.balance("cat").await, 14 * 70);
    Arc::into_inner(app).unwrap().finish().await;
}

async fn clients_that_hang_up_mid_request_and_retry_pay_exactly_once(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("dan", 10_000, "EUR").await;
    let shop = app.token("shop", &["service"]);
    let body = json!({"amount_minor": 10, "currency": "EUR", "reference": "order-1"});
    let mut replays = 0;
    for i in 0..30 {
        let key = format!("hang-{i}");
        // Gives up after a few milliseconds: the answer is lost somewhere
        // between not sent and fully committed. (A cancelled transaction
        // once left SQLite's write lock held: every later charge was a 503.)
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_micros(rand::random_range(300..6_000)))
            .build()
            .unwrap();
        let _ = impatient
            .post(app.url("/wallets/dan/charges"))
            .bearer_auth(&shop)
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        let t0 = std::time::Instant::now();
        let res = app.charge("dan", &key, 10).await;
        if res.status() != 201 {
            let (status, took) = (res.status(), t0.elapsed());
            panic!(
                "{key}: {status} after {took:?}: {}",
                res.text().await.unwrap()
            );
        }
        replays += usize::from(res.headers().contains_key("idempotent-replayed"));
    }
    assert_eq!(app.count("charge").await, 30);
    assert_eq!(app.balance("dan").await, 10_000 - 30 * 10);
    eprintln!("{b:?}: {replays} of 30 retries replayed a charge whose answer was lost");
    app.finish().await;
}
