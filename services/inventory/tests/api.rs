//! The inventory API against a real server and a real database, each test
//! run on SQLite and on PostgreSQL.

mod common;

use common::{spawn_app, spawn_app_with, Backend};
use serde_json::{json, Value};

kit::on_both_backends!(
    a_created_product_can_be_read_back_with_its_etag,
    a_duplicate_id_is_a_conflict,
    listing_pages_through_every_product_in_id_order,
    a_stale_if_match_is_refused_and_a_current_one_accepted,
    a_deleted_product_is_gone,
    quantity_and_price_have_their_own_endpoints,
    stock_never_goes_negative,
    concurrent_stock_moves_lose_no_update,
    concurrent_optimistic_updates_lose_no_update,
    every_bad_input_gets_a_problem_json_4xx,
    health_metrics_and_openapi_are_served,
    stock_levels_are_exported_as_gauges,
    writes_need_an_admin_holds_a_signed_in_caller_and_reads_nobody,
);

async fn writes_need_an_admin_holds_a_signed_in_caller_and_reads_nobody(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 500, 10).await;
    let customer = common::client_as(&app.issuer.token("u-7", &[]));
    let body = json!({"id": "SKU-2", "name": "Tea", "unit_price_minor": 100, "currency": "EUR", "quantity": 1});
    let writes: Vec<(&str, &str, Value)> = vec![
        ("POST", "/products", body.clone()),
        ("PATCH", "/products/SKU-1", json!({"name": "x"})),
        ("DELETE", "/products/SKU-1", Value::Null),
        ("PUT", "/products/SKU-1/quantity", json!({"quantity": 1})),
        (
            "POST",
            "/products/SKU-1/quantity/adjustments",
            json!({"delta": -1}),
        ),
    ];
    let send = |c: &reqwest::Client, method: &str, path: &str, body: &Value| {
        let mut r = c.request(method.parse().unwrap(), app.url(path));
        if !body.is_null() {
            r = r.json(body);
        }
        r.send()
    };
    for (method, path, body) in &writes {
        let r = send(&app.anonymous, method, path, body).await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"eshop\"");
        let r = send(&customer, method, path, body).await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path} as a customer");
    }
    // A token from another key is no admin's, whatever it claims.
    let forged = kit::testing::Issuer::start().await.token("x", &["admin"]);
    let r = send(&common::client_as(&forged), "POST", "/products", &body)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Nothing changed; reads need nothing.
    let r = app
        .anonymous
        .get(app.url("/products/SKU-1/quantity"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["quantity"], 10);
    // Holding stock needs a signed-in caller, not an admin.
    let hold = json!({"items": [{"product_id": "SKU-1", "quantity": 2}]});
    let r = send(&app.anonymous, "POST", "/reservations", &hold)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = send(&customer, "POST", "/reservations", &hold)
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    app.stop().await;
}

async fn stock_levels_are_exported_as_gauges(b: Backend) {
    let app = spawn_app_with(
        b,
        &[
            ("STOCK_METRICS_INTERVAL_MS", "100"),
            ("LOW_STOCK_THRESHOLD", "5"),
        ],
    )
    .await;
    for (id, qty) in [("a", 0), ("b", 3), ("c", 5), ("d", 6), ("e", 100)] {
        app.create(id, 10, qty).await;
    }
    let want = [
        r#"inventory_products{stock="out_of_stock"} 1"#,
        r#"inventory_products{stock="low"} 2"#,
        r#"inventory_products{stock="in_stock"} 2"#,
        "inventory_stock_units 114",
    ];
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = app.get("/metrics").await.text().await.unwrap();
        if want.iter().all(|w| metrics.contains(w)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for w in want {
        assert!(metrics.contains(w), "missing {w} in\n{metrics}");
    }
    app.stop().await;
}

async fn a_created_product_can_be_read_back_with_its_etag(b: Backend) {
    let app = spawn_app(b).await;
    let res = app
        .post(
            "/products",
            &json!({"id": "SKU-1", "name": "Grüner Tee 🍵", "description": "loose leaf\nfine",
                    "unit_price_minor": 1999, "currency": "EUR", "quantity": 7}),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/products/SKU-1");
    assert_eq!(res.headers()["etag"], "\"1\"");
    let res = app.get("/products/SKU-1").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["name"], "Grüner Tee 🍵");
    assert_eq!(p["description"], "loose leaf\nfine");
    assert_eq!(p["unit_price_minor"], 1999);
    assert_eq!(p["currency"], "EUR");
    assert_eq!(p["quantity"], 7);
    assert_eq!(p["version"], 1);
    assert_eq!(p["created_at"], p["updated_at"]);
    app.stop().await;
}

async fn a_duplicate_id_is_a_conflict(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 1).await;
    let res = app
        .post(
            "/products",
            &json!({"id": "SKU-1", "name": "again", "unit_price_minor": 1, "currency": "USD"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/already-exists");
    // The original is untouched.
    let p: Value = app.get("/products/SKU-1").await.json().await.unwrap();
    assert_eq!(p["unit_price_minor"], 100);
    app.stop().await;
}

async fn listing_pages_through_every_product_in_id_order(b: Backend) {
    let app = spawn_app(b).await;
    // Mixed case and punctuation: byte order must be the same on both backends.
    let mut ids: Vec<String> = (0..23).map(|i| format!("p{:02}", (i * 7) % 23)).collect();
    ids.extend(["A-1", "a.1", "Z_9", "0"].map(String::from));
    for id in &ids {
        app.create(id, 10, 1).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(a) => format!("/products?limit=10&after={a}"),
            None => "/products?limit=10".to_owned(),
        };
        let page: Value = app.get(&path).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match page["next_after"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort(); // byte order
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    app.stop().await;
}

async fn a_stale_if_match_is_refused_and_a_current_one_accepted(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 1).await;
    let patch = |etag: &'static str, body: Value| {
        app.client
            .patch(app.url("/products/SKU-1"))
            .header("if-match", etag)
            .json(&body)
            .send()
    };
    let res = patch("\"1\"", json!({"unit_price_minor": 150}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
    // A second writer still holding version 1 must not overwrite.
    let res = patch("\"1\"", json!({"unit_price_minor": 999}))
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("\"2\""));
    // Weak tags never match (strong comparison); lists and * do.
    assert_eq!(
        patch("W/\"2\"", json!({"name": "x"}))
            .await
            .unwrap()
            .status(),
        412
    );
    assert_eq!(
        patch("\"7\", \"2\"", json!({"name": "x"}))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        patch("*", json!({"name": "y"})).await.unwrap().status(),
        200
    );
    let p: Value = app.get("/products/SKU-1").await.json().await.unwrap();
    assert_eq!(p["unit_price_minor"], 150);
    assert_eq!(p["name"], "y");
    assert_eq!(p["version"], 4);
    app.stop().await;
}

async fn a_deleted_product_is_gone(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 1).await;
    let del = |etag: Option<&'static str>| {
        let mut r = app.client.delete(app.url("/products/SKU-1"));
        if let Some(e) = etag {
            r = r.header("if-match", e);
        }
        r.send()
    };
    assert_eq!(del(Some("\"9\"")).await.unwrap().status(), 412);
    assert_eq!(del(Some("\"1\"")).await.unwrap().status(), 204);
    assert_eq!(app.get("/products/SKU-1").await.status(), 404);
    assert_eq!(del(None).await.unwrap().status(), 404);
    app.stop().await;
}

async fn quantity_and_price_have_their_own_endpoints(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 2599, 3).await;
    let q: Value = app
        .get("/products/SKU-1/quantity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        q,
        json!({"id": "SKU-1", "quantity": 3, "held": 0, "available": 3, "version": 1})
    );
    let p: Value = app.get("/products/SKU-1/price").await.json().await.unwrap();
    assert_eq!(
        p,
        json!({"id": "SKU-1", "unit_price_minor": 2599, "currency": "EUR"})
    );
    let res = app
        .client
        .put(app.url("/products/SKU-1/quantity"))
        .header("if-match", "\"1\"")
        .json(&json!({"quantity": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let q: Value = res.json().await.unwrap();
    assert_eq!(q["quantity"], 40);
    assert_eq!(app.get("/products/NOPE/price").await.status(), 404);
    assert_eq!(app.get("/products/NOPE/quantity").await.status(), 404);
    app.stop().await;
}

async fn stock_never_goes_negative(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 5).await;
    let res = app
        .post(
            "/products/SKU-1/quantity/adjustments",
            &json!({"delta": -6}),
        )
        .await;
    assert_eq!(res.status(), 409);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://eshop.dev/problems/insufficient-stock");
    let res = app
        .post(
            "/products/SKU-1/quantity/adjustments",
            &json!({"delta": -5}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let q: Value = app
        .get("/products/SKU-1/quantity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["quantity"], 0);
    let res = app
        .post(
            "/products/SKU-1/quantity/adjustments",
            &json!({"delta": 1_000_000_001i64}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .post(
            "/products/SKU-1/quantity/adjustments",
            &json!({"delta": 1_000_000_000i64}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .post("/products/SKU-1/quantity/adjustments", &json!({"delta": 1}))
        .await;
    assert_eq!(res.status(), 409, "above the maximum");
    app.stop().await;
}

async fn concurrent_stock_moves_lose_no_update(b: Backend) {
    let app = std::sync::Arc::new(spawn_app(b).await);
    app.create("SKU-1", 100, 1000).await;
    // 32 clients × 10 moves each, mixing receipts and sales.
    let mut tasks = Vec::new();
    for c in 0..32i64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut sum = 0;
            for i in 0..10i64 {
                let delta = if (c + i) % 3 == 0 {
                    -(i % 4 + 1)
                } else {
                    i % 5 + 1
                };
                let res = app
                    .post(
                        "/products/SKU-1/quantity/adjustments",
                        &json!({"delta": delta}),
                    )
                    .await;
                assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
                sum += delta;
            }
            sum
        }));
    }
    let mut expected = 1000;
    for t in tasks {
        expected += t.await.unwrap();
    }
    let q: Value = app
        .get("/products/SKU-1/quantity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["quantity"], expected);
    assert_eq!(q["version"], 1 + 320);
}

async fn concurrent_optimistic_updates_lose_no_update(b: Backend) {
    let app = std::sync::Arc::new(spawn_app(b).await);
    app.create("SKU-1", 100, 0).await;
    // Read-modify-write with If-Match, retrying on 412: the pattern a client
    // without the atomic endpoint would use.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..5 {
                loop {
                    let res = app.get("/products/SKU-1/quantity").await;
                    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
                    let q: Value = res.json().await.unwrap();
                    let res = app
                        .client
                        .put(app.url("/products/SKU-1/quantity"))
                        .header("if-match", etag)
                        .json(&json!({"quantity": q["quantity"].as_i64().unwrap() + 1}))
                        .send()
                        .await
                        .unwrap();
                    match res.status().as_u16() {
                        200 => break,
                        412 => conflicts += 1,
                        s => panic!("unexpected {s}"),
                    }
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q: Value = app
        .get("/products/SKU-1/quantity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["quantity"], 40);
}

async fn every_bad_input_gets_a_problem_json_4xx(b: Backend) {
    let app = spawn_app(b).await;
    app.create("SKU-1", 100, 1).await;
    let valid = json!({"id": "X1", "name": "n", "unit_price_minor": 1, "currency": "EUR"});
    let with = |k: &str, v: Value| {
        let mut o = valid.clone();
        o[k] = v;
        o
    };
    let without = |k: &str| {
        let mut o = valid.clone();
        o.as_object_mut().unwrap().remove(k);
        o
    };
    let raw_cases: Vec<(&str, &str, &str, u16)> = vec![
        ("malformed JSON", "application/json", "{\"id\": ", 400),
        ("not an object", "application/json", "[1,2]", 422),
        ("wrong content type", "text/plain", "{}", 415),
        (
            "trailing garbage",
            "application/json",
            r#"{"id":"T","name":"n","unit_price_minor":1,"currency":"EUR"} x"#,
            400,
        ),
    ];
    for (what, ct, body, status) in raw_cases {
        let res = app
            .client
            .post(app.url("/products"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(res, status, what).await;
    }
    let json_cases: Vec<(&str, Value, u16)> = vec![
        (
            "price as string",
            with("unit_price_minor", json!("100")),
            422,
        ),
        ("price as float", with("unit_price_minor", json!(1.5)), 422),
        ("negative price", with("unit_price_minor", json!(-1)), 422),
        ("huge price", with("unit_price_minor", json!(1e30)), 422),
        (
            "price beyond i64",
            with("unit_price_minor", json!(u64::MAX)),
            422,
        ),
        (
            "price above max",
            with("unit_price_minor", json!(1_000_000_000_001i64)),
            422,
        ),
        ("negative quantity", with("quantity", json!(-1)), 422),
        ("missing name", without("name"), 422),
        ("missing currency", without("currency"), 422),
        ("null name", with("name", json!(null)), 422),
        ("empty name", with("name", json!("")), 422),
        ("blank name", with("name", json!("   ")), 422),
        ("long name", with("name", json!("n".repeat(201))), 422),
        ("NUL in name", with("name", json!("a\u{0}b")), 422),
        ("lowercase currency", with("currency", json!("eur")), 422),
        ("unknown currency", with("currency", json!("XXX")), 422),
        (
            "path traversal id",
            with("id", json!("../../etc/passwd")),
            422,
        ),
        ("unicode id", with("id", json!("prodüct")), 422),
        ("id with slash", with("id", json!("a/b")), 422),
        ("long id", with("id", json!("x".repeat(65))), 422),
        ("unknown field", with("colour", json!("red")), 422),
    ];
    for (what, body, status) in json_cases {
        let res = app.post("/products", &body).await;
        assert_problem(res, status, what).await;
    }
    let huge = json!({"id": "big", "name": "n", "unit_price_minor": 1, "currency": "EUR",
                      "description": "d".repeat(100_000)});
    assert_problem(app.post("/products", &huge).await, 413, "oversized body").await;

    let get_cases: Vec<(&str, &str, u16)> = vec![
        ("encoded traversal", "/products/..%2F..%2Fetc%2Fpasswd", 400),
        ("dot-file id", "/products/.hidden", 400),
        ("non-ascii id", "/products/%C3%A9", 400),
        ("bad utf-8 in path", "/products/%FF", 400),
        ("limit zero", "/products?limit=0", 400),
        ("limit huge", "/products?limit=99999999999999999999", 400),
        ("limit text", "/products?limit=ten", 400),
        ("bad cursor", "/products?after=../x", 400),
        ("unknown path", "/nothing/here", 404),
    ];
    for (what, path, status) in get_cases {
        assert_problem(app.get(path).await, status, what).await;
    }
    let res = app
        .client
        .patch(app.url("/products/SKU-1"))
        .header("if-match", "no-quotes")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "malformed If-Match").await;
    let res = app
        .client
        .patch(app.url("/products/SKU-1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "empty update").await;
    let res = app
        .client
        .put(app.url("/products/SKU-1"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let allow = res.headers().get("allow").cloned();
    assert_problem(res, 405, "unsupported method").await;
    assert!(allow.is_some(), "405 names the allowed methods");
    // None of that changed the product.
    let p: Value = app.get("/products/SKU-1").await.json().await.unwrap();
    assert_eq!(p["version"], 1);
    app.stop().await;
}

async fn assert_problem(res: reqwest::Response, status: u16, what: &str) {
    assert_eq!(res.status().as_u16(), status, "{what}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["status"], status, "{what}");
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}"
    );
}

async fn health_metrics_and_openapi_are_served(b: Backend) {
    let app = spawn_app(b).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.get("/products/NOPE").await;
    let res = app
        .client
        .get(app.url("/products"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains(r#"http_requests_total{method="GET",route="/products/{id}",status="404"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"http_request_duration_seconds_count{method="GET",route="/products"} 1"#));
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    // Every documented path answers something other than 404-for-no-route.
    for path in doc["paths"].as_object().unwrap().keys() {
        let concrete = path.replace("{id}", "SKU-404");
        let res = app.get(&concrete).await;
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("no resource at"),
            "{path} is documented but not routed"
        );
    }
    app.stop().await;
}
