//! Stock holds against a real server and a real database, each test run on
//! SQLite and on PostgreSQL.

mod common;

use common::{spawn_app, spawn_app_with, Backend, TestApp};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

kit::on_both_backends!(
    a_hold_takes_every_item_or_none,
    committing_sells_the_held_units_once,
    releasing_makes_the_units_available_again,
    a_retried_hold_returns_the_first_one,
    bad_hold_requests_are_refused_with_problems,
    stock_never_drops_below_the_held_units,
    expired_holds_go_back_to_the_stock,
    a_commit_after_the_ttl_is_refused_and_releases_the_hold,
    sixty_four_holds_race_for_ten_units,
    racing_holds_commits_and_releases_keep_held_exact,
    hold_outcomes_and_held_units_are_exported,
    clients_that_hang_up_mid_hold_leave_the_store_writable_and_hold_once,
);

async fn clients_that_hang_up_mid_hold_leave_the_store_writable_and_hold_once(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 1000).await;
    let token = app.issuer.token("u-1", &[]);
    for i in 0..30 {
        let id = format!("hang-{i}");
        let body = json!({"id": id, "items": [{"product_id": "SKU-1", "quantity": 1}]});
        // Gives up after a few milliseconds: the answer is lost somewhere
        // between not sent and committed. A transaction cut off half-way
        // could leave SQLite's write lock held (every later hold a 503).
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_micros(rand::random_range(300..6_000)))
            .build()
            .unwrap();
        let _ = impatient
            .post(app.url("/reservations"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        // The retry with the same id: created now, or the first one replayed.
        let t0 = std::time::Instant::now();
        let (status, r) = hold(&app, body).await;
        assert!(
            status == 201 || status == 200,
            "{id}: {status} after {:?}: {r}",
            t0.elapsed()
        );
    }
    let q: Value = app
        .get("/products/SKU-1/quantity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["held"], 30, "{q}");
    app.stop().await;
}

async fn hold(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.post("/reservations", &body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn finish(app: &TestApp, id: &str, action: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/reservations/{id}/{action}")))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn product(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/products/{id}")).await;
    assert_eq!(res.status(), 200, "product {id}");
    res.json().await.unwrap()
}

/// (quantity, held, available) of a product, from both endpoints (which
/// must agree, and the product's must hold through the read cache).
async fn stock(app: &TestApp, id: &str) -> (i64, i64, i64) {
    let p = product(app, id).await;
    let q: Value = app
        .get(&format!("/products/{id}/quantity"))
        .await
        .json()
        .await
        .unwrap();
    for k in ["quantity", "held", "available"] {
        assert_eq!(p[k], q[k], "{id}: {k} differs between the endpoints");
    }
    let n = |k: &str| p[k].as_i64().unwrap();
    assert_eq!(n("available"), n("quantity") - n("held"));
    (n("quantity"), n("held"), n("available"))
}

async fn a_hold_takes_every_item_or_none(b: Backend) {
    let app = spawn_app(b).await;
    app.create("a", 100, 5).await;
    app.create("b", 100, 2).await;
    app.create("c", 100, 10).await;
    // b is short: nothing at all is held, and the answer names b.
    let (status, p) = hold(
        &app,
        json!({"items": [{"product_id": "c", "quantity": 1}, {"product_id": "a", "quantity": 2},
                         {"product_id": "b", "quantity": 3}]}),
    )
    .await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "https://eshop.dev/problems/insufficient-stock");
    assert_eq!(
        p["shortages"],
        json!([{"product_id": "b", "requested": 3, "available": 2}])
    );
    assert!(p["detail"].as_str().unwrap().contains("\"b\""), "{p}");
    // Unknown products are a 404 naming each of them; nothing held either.
    let (status, p) = hold(
        &app,
        json!({"items": [{"product_id": "a", "quantity": 1}, {"product_id": "zz", "quantity": 1},
                         {"product_id": "yy", "quantity": 1}]}),
    )
    .await;
    assert_eq!(status, 404, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"yy\"") && detail.contains("\"zz\""),
        "{p}"
    );
    for id in ["a", "b", "c"] {
        assert_eq!(
            stock(&app, id).await.1,
            0,
            "{id} was held by a refused hold"
        );
    }
    let res = app
        .post(
            "/reservations",
            &json!({"items": [{"product_id": "c", "quantity": 1}, {"product_id": "a", "quantity": 2},
                             {"product_id": "b", "quantity": 2}]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let r: Value = res.json().await.unwrap();
    assert_eq!(
        location,
        format!("/reservations/{}", r["id"].as_str().unwrap())
    );
    assert_eq!(r["state"], "held");
    assert_eq!(
        r["items"],
        json!([{"product_id": "a", "quantity": 2}, {"product_id": "b", "quantity": 2},
               {"product_id": "c", "quantity": 1}])
    );
    assert!(r["expires_at"].as_str().unwrap() > r["created_at"].as_str().unwrap());
    assert_eq!(stock(&app, "a").await, (5, 2, 3));
    assert_eq!(stock(&app, "b").await, (2, 2, 0));
    assert_eq!(stock(&app, "c").await, (10, 1, 9));
    let got: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(got, r);
    app.stop().await;
}

async fn committing_sells_the_held_units_once(b: Backend) {
    let app = spawn_app(b).await;
    app.create("a", 100, 5).await;
    app.create("b", 100, 4).await;
    let (_, r) = hold(
        &app,
        json!({"id": "order-1", "items": [{"product_id": "a", "quantity": 2},
                                          {"product_id": "b", "quantity": 4}]}),
    )
    .await;
    let (status, c) = finish(&app, "order-1", "commit").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["state"], "committed");
    assert_eq!(c["items"], r["items"]);
    assert_eq!(stock(&app, "a").await, (3, 0, 3));
    assert_eq!(stock(&app, "b").await, (0, 0, 0));
    // A retried commit is answered the same and sells nothing more.
    let (status, again) = finish(&app, "order-1", "commit").await;
    assert_eq!((status, &again["state"]), (200, &json!("committed")));
    assert_eq!(stock(&app, "a").await, (3, 0, 3));
    let (status, p) = finish(&app, "order-1", "release").await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "https://eshop.dev/problems/reservation-not-held");
    let got: Value = app.get("/reservations/order-1").await.json().await.unwrap();
    assert_eq!(got["state"], "committed");
    // The product can go now: nothing is held any more.
    let res = app
        .client
        .delete(app.url("/products/b"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let got: Value = app.get("/reservations/order-1").await.json().await.unwrap();
    assert_eq!(got["items"], r["items"], "lines outlive their product");
    app.stop().await;
}

async fn releasing_makes_the_units_available_again(b: Backend) {
    let app = spawn_app(b).await;
    app.create("a", 100, 5).await;
    let (status, _) = hold(
        &app,
        json!({"id": "r1", "items": [{"product_id": "a", "quantity": 5}]}),
    )
    .await;
    assert_eq!(status, 201);
    let one = json!({"items": [{"product_id": "a", "quantity": 1}]});
    let (status, p) = hold(&app, one.clone()).await;
    assert_eq!(status, 409);
    assert_eq!(p["shortages"][0]["available"], 0);
    let (status, r) = finish(&app, "r1", "release").await;
    assert_eq!((status, &r["state"]), (200, &json!("released")));
    assert_eq!(stock(&app, "a").await, (5, 0, 5));
    let (status, r) = finish(&app, "r1", "release").await;
    assert_eq!((status, &r["state"]), (200, &json!("released")));
    assert_eq!(
        stock(&app, "a").await,
        (5, 0, 5),
        "a second release gives nothing back"
    );
    let (status, p) = finish(&app, "r1", "commit").await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "https://eshop.dev/problems/reservation-not-held");
    assert!(p["detail"].as_str().unwrap().contains("released"), "{p}");
    assert_eq!(hold(&app, one).await.0, 201);
    app.stop().await;
}

async fn a_retried_hold_returns_the_first_one(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    app.create("a", 100, 10).await;
    app.create("b", 100, 10).await;
    let body = json!({"id": "order-7", "items": [{"product_id": "b", "quantity": 1},
                                                 {"product_id": "a", "quantity": 2}]});
    // Eight copies of one request at once (a client retrying hard): one
    // hold is made, every copy gets it back.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move { hold(&app, body).await }));
    }
    let mut created = 0;
    let mut first: Option<Value> = None;
    for t in tasks {
        let (status, r) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status} {r}");
        created += usize::from(status == 201);
        if let Some(f) = &first {
            assert_eq!(f, &r, "every copy sees the same reservation");
        }
        first = Some(r);
    }
    assert_eq!(created, 1);
    assert_eq!(stock(&app, "a").await, (10, 2, 8));
    assert_eq!(stock(&app, "b").await, (10, 1, 9));
    // The same items in another order are the same request.
    let reordered = json!({"id": "order-7", "items": [{"product_id": "a", "quantity": 2},
                                                      {"product_id": "b", "quantity": 1}]});
    let (status, r) = hold(&app, reordered.clone()).await;
    assert_eq!((status, &r), (200, first.as_ref().unwrap()));
    // Other items under the same id: refused, nothing changes.
    let other = json!({"id": "order-7", "items": [{"product_id": "a", "quantity": 3}]});
    let (status, p) = hold(&app, other).await;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["type"], "https://eshop.dev/problems/reservation-mismatch");
    assert_eq!(stock(&app, "a").await, (10, 2, 8));
    // A replay after the commit reports the commit, and holds nothing new.
    assert_eq!(finish(&app, "order-7", "commit").await.0, 200);
    let (status, r) = hold(&app, reordered).await;
    assert_eq!((status, &r["state"]), (200, &json!("committed")));
    assert_eq!(stock(&app, "a").await, (8, 0, 8));
    // Without an id, each hold gets a fresh one.
    let anon = json!({"items": [{"product_id": "a", "quantity": 1}]});
    let (s1, r1) = hold(&app, anon.clone()).await;
    let (s2, r2) = hold(&app, anon).await;
    assert_eq!((s1, s2), (201, 201));
    assert_ne!(r1["id"], r2["id"]);
}

async fn bad_hold_requests_are_refused_with_problems(b: Backend) {
    let app = spawn_app(b).await;
    app.create("a", 100, 10).await;
    let item = |p: &str, q: i64| json!({"product_id": p, "quantity": q});
    let many: Vec<Value> = (0..101).map(|i| item(&format!("p{i}"), 1)).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "listed twice",
            json!({"items": [item("a", 1), item("a", 2)]}),
            "items[1].product_id",
        ),
        (
            "zero quantity",
            json!({"items": [item("a", 0)]}),
            "items[0].quantity",
        ),
        (
            "huge quantity",
            json!({"items": [item("a", 1_000_000_001)]}),
            "items[0].quantity",
        ),
        (
            "bad product id",
            json!({"items": [item("../a", 1)]}),
            "items[0].product_id",
        ),
        ("no items", json!({"items": []}), "items"),
        ("101 items", json!({"items": many}), "items"),
        (
            "ttl zero",
            json!({"items": [item("a", 1)], "ttl_secs": 0}),
            "ttl_secs",
        ),
        (
            "ttl above a day",
            json!({"items": [item("a", 1)], "ttl_secs": 86_401}),
            "ttl_secs",
        ),
        (
            "bad id",
            json!({"id": "a/b", "items": [item("a", 1)]}),
            "id",
        ),
    ];
    for (what, body, field) in cases {
        let (status, p) = hold(&app, body).await;
        assert_eq!(status, 422, "{what}: {p}");
        assert!(
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{what}: {p}"
        );
    }
    for (what, body) in [
        (
            "unknown field",
            json!({"items": [item("a", 1)], "colour": "red"}),
        ),
        ("null id", json!({"id": null, "items": [item("a", 1)]})),
        ("missing items", json!({"ttl_secs": 5})),
    ] {
        assert_eq!(hold(&app, body).await.0, 422, "{what}");
    }
    assert_eq!(app.get("/reservations/..%2Fx").await.status(), 400);
    assert_eq!(app.get("/reservations/nope").await.status(), 404);
    for action in ["commit", "release"] {
        let (status, p) = finish(&app, "nope", action).await;
        assert_eq!(status, 404, "{action}: {p}");
        assert_eq!(finish(&app, ".x", action).await.0, 400, "{action}");
    }
    assert_eq!(stock(&app, "a").await, (10, 0, 10), "nothing was held");
    app.stop().await;
}

async fn stock_never_drops_below_the_held_units(b: Backend) {
    let app = spawn_app(b).await;
    app.create("a", 100, 5).await;
    assert_eq!(
        hold(
            &app,
            json!({"id": "r", "items": [{"product_id": "a", "quantity": 3}]})
        )
        .await
        .0,
        201
    );
    let put = |q: i64| {
        app.client
            .put(app.url("/products/a/quantity"))
            .json(&json!({"quantity": q}))
            .send()
    };
    let res = put(2).await.unwrap();
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/stock-held");
    assert!(p["detail"].as_str().unwrap().contains('3'), "{p}");
    let res = app
        .client
        .patch(app.url("/products/a"))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = app
        .post("/products/a/quantity/adjustments", &json!({"delta": -3}))
        .await;
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/insufficient-stock");
    let res = app
        .client
        .delete(app.url("/products/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/stock-held");
    assert_eq!(
        stock(&app, "a").await,
        (5, 3, 2),
        "every refusal left it as it was"
    );
    // Down to exactly the held units is allowed.
    assert_eq!(put(3).await.unwrap().status(), 200);
    assert_eq!(stock(&app, "a").await, (3, 3, 0));
    assert_eq!(finish(&app, "r", "release").await.0, 200);
    let res = app
        .client
        .delete(app.url("/products/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    app.stop().await;
}

/// Polls until `f` holds, for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn expired_holds_go_back_to_the_stock(b: Backend) {
    let app = spawn_app_with(b, &[("RESERVATION_SWEEP_INTERVAL_MS", "50")]).await;
    app.create("a", 100, 5).await;
    let short =
        json!({"id": "r-short", "ttl_secs": 1, "items": [{"product_id": "a", "quantity": 2}]});
    let long = json!({"id": "r-long", "items": [{"product_id": "a", "quantity": 1}]});
    assert_eq!(hold(&app, short).await.0, 201);
    assert_eq!(hold(&app, long).await.0, 201);
    assert_eq!(stock(&app, "a").await, (5, 3, 2));
    eventually("the sweeper expiring r-short", || async {
        let r: Value = app.get("/reservations/r-short").await.json().await.unwrap();
        r["state"] == "expired"
    })
    .await;
    assert_eq!(
        stock(&app, "a").await,
        (5, 1, 4),
        "only the expired hold went back"
    );
    let r: Value = app.get("/reservations/r-long").await.json().await.unwrap();
    assert_eq!(r["state"], "held");
    // Releasing an expired hold is fine (the units are back either way);
    // committing it is not.
    let (status, r) = finish(&app, "r-short", "release").await;
    assert_eq!((status, &r["state"]), (200, &json!("expired")));
    assert_eq!(finish(&app, "r-short", "commit").await.0, 409);
    assert_eq!(stock(&app, "a").await, (5, 1, 4));
    app.stop().await;
}

async fn a_commit_after_the_ttl_is_refused_and_releases_the_hold(b: Backend) {
    // A sweeper that never comes round: the commit itself must notice.
    let app = spawn_app_with(b, &[("RESERVATION_SWEEP_INTERVAL_MS", "3600000")]).await;
    app.create("a", 100, 5).await;
    let body = json!({"id": "late", "ttl_secs": 1, "items": [{"product_id": "a", "quantity": 2}]});
    assert_eq!(hold(&app, body).await.0, 201);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let r: Value = app.get("/reservations/late").await.json().await.unwrap();
    assert_eq!(r["state"], "held", "the sweeper did not run");
    let (status, p) = finish(&app, "late", "commit").await;
    assert_eq!(status, 409, "{p}");
    assert_eq!(p["type"], "https://eshop.dev/problems/reservation-not-held");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let r: Value = app.get("/reservations/late").await.json().await.unwrap();
    assert_eq!(r["state"], "expired");
    assert_eq!(
        stock(&app, "a").await,
        (5, 0, 5),
        "nothing sold, nothing held"
    );
    app.stop().await;
}

async fn sixty_four_holds_race_for_ten_units(b: Backend) {
    // With the read cache (one writer at a time in the process) and without
    // it (SQLite's own write lock queues the transactions).
    for extra in [&[][..], &[("CACHE_ENTRIES", "0")][..]] {
        let app = Arc::new(spawn_app_with(b, extra).await);
        app.create("k", 100, 10).await;
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                hold(&app, json!({"items": [{"product_id": "k", "quantity": 1}]})).await
            }));
        }
        let (mut held, mut refused) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                (201, _) => held += 1,
                (409, p) => {
                    assert_eq!(p["type"], "https://eshop.dev/problems/insufficient-stock");
                    refused += 1;
                }
                (s, p) => panic!("{extra:?}: unexpected {s} {p}"),
            }
        }
        assert_eq!((held, refused), (10, 54), "{extra:?}");
        assert_eq!(stock(&app, "k").await, (10, 10, 0), "{extra:?}");
    }
}

/// 24 clients each hold a few units of 2-3 of four products (listed in
/// varying order, so PostgreSQL would deadlock if locks were taken in
/// request order), then commit, release, or leave the hold open; others
/// move the stock meanwhile. At the end `held` must be exactly the sum of
/// the open holds' lines, and the stock what was sold and moved.
async fn racing_holds_commits_and_releases_keep_held_exact(b: Backend) {
    let app = Arc::new(spawn_app(b).await);
    let products = ["p0", "p1", "p2", "p3"];
    for p in products {
        app.create(p, 100, 40).await;
    }
    let mut tasks = Vec::new();
    for c in 0..24usize {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..4usize {
                let n = 2 + (c + round) % 2;
                let items: Vec<Value> = (0..n)
                    .map(|i| {
                        let p = products[(c * 3 + round + i * (1 + c % 3)) % 4];
                        json!({"product_id": p, "quantity": 1 + (c + i) % 3})
                    })
                    .collect();
                let mut seen = std::collections::HashSet::new();
                let items: Vec<Value> = items
                    .into_iter()
                    .filter(|it| seen.insert(it["product_id"].as_str().unwrap().to_owned()))
                    .collect();
                let id = format!("c{c}-r{round}");
                let (status, p) = hold(&app, json!({"id": id, "items": items})).await;
                match status {
                    201 => {}
                    409 => continue,
                    s => panic!("hold {id}: {s} {p}"),
                }
                let action = ["commit", "release", "keep"][(c + round) % 3];
                if action != "keep" {
                    let (s, p) = finish(&app, &id, action).await;
                    assert_eq!(s, 200, "{action} {id}: {p}");
                }
                ids.push(id);
            }
            ids
        }));
    }
    // Stock moves racing the holds: receipts only, so none is refused.
    let mover = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let res = app
                    .post(
                        &format!("/products/{}/quantity/adjustments", products[i % 4]),
                        &json!({"delta": 1}),
                    )
                    .await;
                assert_eq!(res.status(), 200);
            }
        })
    };
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    mover.await.unwrap();
    let mut open = [0i64; 4];
    let mut sold = [0i64; 4];
    for id in &ids {
        let r: Value = app
            .get(&format!("/reservations/{id}"))
            .await
            .json()
            .await
            .unwrap();
        for it in r["items"].as_array().unwrap() {
            let k = products
                .iter()
                .position(|p| *p == it["product_id"])
                .unwrap();
            let q = it["quantity"].as_i64().unwrap();
            match r["state"].as_str().unwrap() {
                "held" => open[k] += q,
                "committed" => sold[k] += q,
                "released" => {}
                s => panic!("{id} is {s}"),
            }
        }
    }
    assert!(sold.iter().sum::<i64>() > 0 && open.iter().sum::<i64>() > 0);
    for (k, p) in products.iter().enumerate() {
        let (quantity, held, _) = stock(&app, p).await;
        assert_eq!(held, open[k], "{p}: held");
        assert_eq!(quantity, 40 + 5 - sold[k], "{p}: on hand");
    }
}

async fn hold_outcomes_and_held_units_are_exported(b: Backend) {
    let app = spawn_app_with(
        b,
        &[
            ("STOCK_METRICS_INTERVAL_MS", "100"),
            ("RESERVATION_SWEEP_INTERVAL_MS", "50"),
        ],
    )
    .await;
    app.create("a", 100, 10).await;
    let h = |id: &str, q: i64, ttl: i64| json!({"id": id, "ttl_secs": ttl, "items": [{"product_id": "a", "quantity": q}]});
    for (id, q, ttl) in [("c", 1, 60), ("r", 2, 60), ("e", 1, 1), ("o", 3, 60)] {
        assert_eq!(hold(&app, h(id, q, ttl)).await.0, 201);
    }
    assert_eq!(hold(&app, h("x", 50, 60)).await.0, 409);
    assert_eq!(hold(&app, h("o", 3, 60)).await.0, 200, "a replay");
    assert_eq!(finish(&app, "c", "commit").await.0, 200);
    assert_eq!(finish(&app, "c", "commit").await.0, 200);
    assert_eq!(finish(&app, "r", "release").await.0, 200);
    let want = [
        r#"inventory_holds_total{outcome="held"} 4"#,
        r#"inventory_holds_total{outcome="refused"} 1"#,
        r#"inventory_holds_total{outcome="committed"} 1"#,
        r#"inventory_holds_total{outcome="released"} 1"#,
        r#"inventory_holds_total{outcome="expired"} 1"#,
        "inventory_held_units 3",
    ];
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app.get("/metrics").await.text().await.unwrap();
        if want.iter().all(|w| metrics.contains(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in want {
        assert!(metrics.contains(w), "missing {w} in\n{metrics}");
    }
    app.stop().await;
}
