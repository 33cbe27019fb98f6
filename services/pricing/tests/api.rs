//! calculate_price against a real inventory: the happy path, every bad
//! input, and inventory stopped or slow.

mod common;

use common::{proxy, slow_proxy, spawn_inventory, spawn_pricing};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn json_get(c: &reqwest::Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_is_calculated_from_the_real_inventory() {
    let inv = spawn_inventory().await;
    let pricing = spawn_pricing(&inv.running.base, &[]).await;
    let c = reqwest::Client::new();
    let q: Value = json_get(
        &c,
        format!(
            "{}/calculate_price?product_id=SKU-1&quantity=12",
            pricing.base
        ),
    )
    .await;
    // 12 × 19.99 = 239.88; 5 % off = 11.994 → 11.99; 227.89 × 20 % = 45.578 → 45.58.
    assert_eq!(q["product_name"], "Green tea");
    assert_eq!(q["subtotal_minor"], 23988);
    assert_eq!(q["discount_minor"], 1199);
    assert_eq!(q["tax_minor"], 4558);
    assert_eq!(q["total_minor"], 27347);
    assert_eq!(q["currency"], "EUR");
    assert_eq!(q["availability"]["status"], "in_stock");
    // The same through the JSON body, and with availability warnings.
    let q: Value = c
        .post(format!("{}/calculate_price", pricing.base))
        .json(&json!({"product_id": "SKU-2", "quantity": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["availability"]["status"], "insufficient");
    assert_eq!(
        q["availability"]["message"],
        "Only 3 left: not enough for 5"
    );
    // Stock a checkout holds is not for sale: 2 of the 3 held, 1 left.
    let res = inv
        .client_with(&[])
        .post(format!("{}/reservations", inv.running.base))
        .json(&json!({"items": [{"product_id": "SKU-2", "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let q: Value = json_get(
        &c,
        format!(
            "{}/calculate_price?product_id=SKU-2&quantity=2",
            pricing.base
        ),
    )
    .await;
    assert_eq!(
        q["availability"]["message"],
        "Only 1 left: not enough for 2"
    );
    let q: Value = json_get(
        &c,
        format!(
            "{}/calculate_price?product_id=SKU-3&quantity=1",
            pricing.base
        ),
    )
    .await;
    assert_eq!(q["availability"]["message"], "Out of stock");
    // A zero-decimal currency keeps integer arithmetic: 3 × ¥1500 = 4500, tax 900.
    let q: Value = json_get(
        &c,
        format!(
            "{}/calculate_price?product_id=YEN-1&quantity=3",
            pricing.base
        ),
    )
    .await;
    assert_eq!(q["minor_unit_exponent"], 0);
    assert_eq!(q["total_minor"], 5400);
    pricing.stop().await;
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_is_404_in_words() {
    let inv = spawn_inventory().await;
    let pricing = spawn_pricing(&inv.running.base, &[]).await;
    let res = reqwest::get(format!(
        "{}/calculate_price?product_id=NOPE&quantity=1",
        pricing.base
    ))
    .await
    .unwrap();
    let p = problem(res, 404).await;
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("could not find a product with ID “NOPE”"));
    let res = reqwest::get(format!("{}/?product_id=NOPE&quantity=1", pricing.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="error""#) && html.contains("could not find a product"));
    // Input that looks like the page's own placeholder stays text: the
    // page is filled in one pass (it used to be chained replaces, which
    // put the outcome's markup inside the input's value attribute).
    let res = reqwest::get(format!(
        "{}/?product_id=%7B%7Boutcome%7D%7D&quantity=1",
        pricing.base
    ))
    .await
    .unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"value="{{outcome}}""#), "{html}");
    assert_eq!(html.matches(r#"id="error""#).count(), 1, "{html}");
    pricing.stop().await;
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_problem_never_a_call_to_inventory() {
    let inv = spawn_inventory().await;
    let pricing = spawn_pricing(&inv.running.base, &[]).await;
    let c = reqwest::Client::new();
    for (query, status) in [
        ("product_id=SKU-1&quantity=0", 422),
        ("product_id=SKU-1&quantity=-3", 422),
        ("product_id=SKU-1&quantity=abc", 422),
        ("product_id=SKU-1&quantity=1.5", 422),
        ("product_id=SKU-1&quantity=10001", 422),
        ("product_id=SKU-1&quantity=99999999999999999999999999", 422),
        ("product_id=SKU-1", 422),
        ("quantity=1", 400),
        ("product_id=&quantity=1", 400),
        ("product_id=..%2Fhealthz&quantity=1", 400),
        ("product_id=%3Cscript%3E&quantity=1", 400),
        ("product_id=%E2%9C%93&quantity=1", 400),
        ("product_id=%FF&quantity=1", 400),
    ] {
        let res = c
            .get(format!("{}/calculate_price?{query}", pricing.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{query}");
        let p: Value = res.json().await.unwrap();
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    for (body, status) in [
        (r#"{"product_id": "SKU-1", "quantity": "3"}"#, 422),
        (r#"{"product_id": "SKU-1"}"#, 422),
        (
            r#"{"product_id": "SKU-1", "quantity": 3, "coupon": "x"}"#,
            422,
        ),
        (r#"{"product_id": 7, "quantity": 3}"#, 422),
        (r#"{"product_id": "SKU-1", "quantity": 1e40}"#, 422),
        (r#"{"product_id": "SKU-1", "quantity": 0}"#, 422),
        (r#"{"product_id": "SKU-1", "#, 400),
    ] {
        let res = c
            .post(format!("{}/calculate_price", pricing.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(res, status).await;
    }
    // Markup typed into the page comes back escaped, not executed.
    let html = c
        .get(format!(
            "{}/?product_id=%3Cscript%3Ealert(1)%3C/script%3E&quantity=1",
            pricing.base
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    pricing.stop().await;
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_inventory_gives_a_prompt_friendly_503() {
    let inv = spawn_inventory().await;
    let pricing = spawn_pricing(&inv.running.base, &[]).await;
    let c = reqwest::Client::new();
    let ready = c
        .get(format!("{}/readyz", pricing.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    inv.running.stop().await;
    let start = Instant::now();
    let res = c
        .get(format!(
            "{}/calculate_price?product_id=SKU-1&quantity=1",
            pricing.base
        ))
        .send()
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(res.headers()["retry-after"], "5");
    let p = problem(res, 503).await;
    assert!(p["detail"].as_str().unwrap().contains("try again"));
    let page = c
        .get(format!("{}/?product_id=SKU-1&quantity=1", pricing.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("inventory is not answering"));
    let ready = c
        .get(format!("{}/readyz", pricing.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    pricing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_inventory_gives_503_within_the_deadline_never_a_hang() {
    let inv = spawn_inventory().await;
    let slow = slow_proxy(inv.running.addr, Duration::from_secs(5)).await;
    let pricing = spawn_pricing(
        &slow,
        &[
            ("INVENTORY_TIMEOUT_MS", "300"),
            ("INVENTORY_DEADLINE_MS", "1000"),
        ],
    )
    .await;
    let start = Instant::now();
    let res = reqwest::get(format!(
        "{}/calculate_price?product_id=SKU-1&quantity=1",
        pricing.base
    ))
    .await
    .unwrap();
    let took = start.elapsed();
    problem(res, 503).await;
    assert!(
        took >= Duration::from_millis(300),
        "retried until the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "bounded by the deadline: {took:?}"
    );
    pricing.stop().await;
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_somewhat_slow_inventory_still_answers() {
    let inv = spawn_inventory().await;
    let slow = slow_proxy(inv.running.addr, Duration::from_millis(100)).await;
    let pricing = spawn_pricing(&slow, &[]).await;
    let res = reqwest::get(format!(
        "{}/calculate_price?product_id=SKU-1&quantity=1",
        pricing.base
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    pricing.stop().await;
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let inv = spawn_inventory().await;
    let slow = proxy(inv.running.addr, Duration::from_millis(400)).await;
    let mut pricing = spawn_pricing(&slow.url, &[("SHUTDOWN_TIMEOUT_MS", "5000")]).await;
    let url = format!(
        "{}/calculate_price?product_id=SKU-1&quantity=1",
        pricing.base
    );
    let in_flight = tokio::spawn(async move { reqwest::get(url).await.unwrap().status() });
    // In flight for sure: pricing has asked inventory (through the slow
    // proxy), not merely been sent the request. A fixed sleep here failed
    // on a loaded machine: the stop came before the client connected.
    let t = std::time::Instant::now();
    while slow.seen.lock().unwrap().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "pricing never called inventory"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stop = pricing.stop_signal().unwrap();
    let _ = stop.send(());
    // The request that was already running completes normally…
    assert_eq!(in_flight.await.unwrap(), 200);
    // …and the server then exits by itself.
    tokio::time::timeout(Duration::from_secs(3), pricing.join())
        .await
        .expect("server exits after draining");
    inv.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_and_trace_travel_to_inventory() {
    let inv = spawn_inventory().await;
    let wire = proxy(inv.running.addr, Duration::ZERO).await;
    let pricing = spawn_pricing(&wire.url, &[]).await;
    let c = reqwest::Client::new();
    let res = c
        .get(format!(
            "{}/calculate_price?product_id=SKU-1&quantity=1",
            pricing.base
        ))
        .header("x-request-id", "trace-me-1")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-1");
    assert_eq!(res.status(), 200);
    let sent = String::from_utf8_lossy(&wire.seen.lock().unwrap()).to_lowercase();
    assert!(sent.contains("x-request-id: trace-me-1"), "{sent}");
    // Same trace, with pricing's own span as the parent (not the caller's).
    assert!(
        sent.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(!sent.contains("00f067aa0ba902b7"), "{sent}");
    // Inventory counted the hop under its own route.
    let m = c
        .get(format!("{}/metrics", inv.running.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"http_requests_total{method="GET",route="/products/{id}",status="200"} 1"#),
        "{m}"
    );
    pricing.stop().await;
    inv.running.stop().await;
}
