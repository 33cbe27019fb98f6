//! Load for bench/checkout.sh: complete checkouts against running
//! services. Each of CONNECTIONS workers is its own customer (signed up,
//! wallet topped up), so no two workers share a cart; a worker puts one
//! unit of PRODUCT in its cart and checks out, again and again, for
//! DURATION seconds. Prints `checkouts/s p50_ms p99_ms failures` on one
//! line (latency of the `POST /checkouts` alone; the cart line before it
//! is counted in the wall time, not in the latency).
//!
//! Settings from the environment: USERS_URL, PAYMENTS_URL, ORDERS_URL,
//! PRODUCT, DURATION (seconds, default 10), CONNECTIONS (default 32).

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

async fn customer(http: &reqwest::Client, users: &str, payments: &str, n: usize) -> String {
    let creds = json!({"email": format!("bench-{n}@example.com"), "password": "bench password 1"});
    let r = http
        .post(format!("{users}/users"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "sign-up: {}", r.status());
    let t: Value = http
        .post(format!("{users}/tokens"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["access_token"].as_str().expect("a token").to_owned();
    let me: Value = http
        .get(format!("{users}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http
        .post(format!(
            "{payments}/wallets/{}/top-ups",
            me["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .header("idempotency-key", format!("bench-top-up-{n}"))
        .json(&json!({"amount_minor": 1_000_000_000_000i64, "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "top-up: {}", r.status());
    token
}

#[tokio::main]
async fn main() {
    let (users, payments, orders) = (
        env("USERS_URL", ""),
        env("PAYMENTS_URL", ""),
        env("ORDERS_URL", ""),
    );
    let product = env("PRODUCT", "SKU-H");
    let duration = Duration::from_secs(env("DURATION", "10").parse().unwrap());
    let connections: usize = env("CONNECTIONS", "32").parse().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for n in 0..connections {
        tokens.push(customer(&http, &users, &payments, n).await);
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let (http, orders, product) = (http.clone(), orders.clone(), product.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failures, mut i) = (Vec::new(), 0u64, 0u64);
            while start.elapsed() < duration {
                i += 1;
                let r = http
                    .put(format!("{orders}/cart/items/{product}"))
                    .bearer_auth(&token)
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    failures += 1;
                    continue;
                }
                let t0 = Instant::now();
                let r = http
                    .post(format!("{orders}/checkouts"))
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("bench-{w}-{i}"))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => latencies.push(t0.elapsed()),
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let (mut all, mut failures) = (Vec::new(), 0);
    for w in workers {
        let (l, f) = w.await.unwrap();
        all.extend(l);
        failures += f;
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{:.1} {:.2} {:.2} {failures}",
        all.len() as f64 / wall,
        pct(0.50),
        pct(0.99)
    );
}
