//! The payments API on SQLite and on real PostgreSQL: wallets, charges,
//! refunds, who may do what, idempotency. Every test ends with the ledger
//! checked (`finish`).

mod common;

use common::{new_key, problem, spawn_app, Backend};
use serde_json::{json, Value};

kit::on_both_backends!(
    top_ups_charges_and_refunds_move_the_balance_and_the_history_shows_them,
    a_charge_above_the_balance_is_a_409_naming_it_and_moves_nothing,
    refunds_may_be_partial_but_never_exceed_the_charge,
    only_the_owner_the_shop_or_an_admin_may_touch_a_wallet,
    requests_without_a_valid_token_are_401,
    the_idempotency_key_is_required_and_a_retry_gets_the_first_answer,
    a_wallet_keeps_the_currency_of_its_first_top_up,
    the_history_pages_newest_first_without_gaps,
    metrics_count_movements_by_outcome,
    the_ledger_check_notices_a_tampered_ledger,
);

async fn top_ups_charges_and_refunds_move_the_balance_and_the_history_shows_them(b: Backend) {
    let app = spawn_app(b).await;
    let ann = app.token("ann", &[]);
    assert_eq!(app.get("/wallets/ann", &ann).await.status(), 404);

    let t = app.top_up("ann", 10_000, "EUR").await;
    assert_eq!(
        (&t["kind"], &t["amount_minor"], &t["balance_after_minor"]),
        (&json!("top_up"), &json!(10_000), &json!(10_000))
    );
    let w: Value = app.get("/wallets/ann", &ann).await.json().await.unwrap();
    assert_eq!(
        w,
        json!({"user_id": "ann", "currency": "EUR", "balance_minor": 10_000, "balance": "100.00"})
    );

    let res = app.charge("ann", &new_key(), 2_550).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let c: Value = res.json().await.unwrap();
    let id = c["id"].as_str().unwrap();
    assert_eq!(location, format!("/charges/{id}"));
    assert_eq!(
        (
            &c["kind"],
            &c["reference"],
            &c["refunded_minor"],
            &c["balance_after_minor"]
        ),
        (
            &json!("charge"),
            &json!("order-1"),
            &json!(0),
            &json!(7_450)
        )
    );
    assert_eq!(app.balance("ann").await, 7_450);

    let shop = app.token("shop", &["service"]);
    let r = app
        .post(
            &format!("/charges/{id}/refunds"),
            &shop,
            Some(&new_key()),
            &json!({"amount_minor": 550}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r: Value = r.json().await.unwrap();
    assert_eq!(
        (&r["kind"], &r["charge_id"]),
        (&json!("refund"), &json!(id))
    );
    assert_eq!(app.balance("ann").await, 8_000);
    let c: Value = app.get(&location, &ann).await.json().await.unwrap();
    assert_eq!(c["refunded_minor"], 550);

    let h: Value = app
        .get("/wallets/ann/transactions", &ann)
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refund", "charge", "top_up"]);
    assert_eq!(h["next_after"], Value::Null);
    app.finish().await;
}

async fn a_charge_above_the_balance_is_a_409_naming_it_and_moves_nothing(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("bob", 1_000, "EUR").await;
    let res = app.charge("bob", &new_key(), 1_001).await;
    assert_eq!(res.status(), 409);
    let p = problem(res).await;
    assert_eq!(p["type"], "https://eshop.dev/problems/insufficient-funds");
    assert!(p["detail"].as_str().unwrap().contains("10.00 EUR"), "{p}");
    assert_eq!(app.balance("bob").await, 1_000);
    assert_eq!(app.count("charge").await, 0);
    // Exactly the balance is fine, and leaves zero.
    assert_eq!(app.charge("bob", &new_key(), 1_000).await.status(), 201);
    assert_eq!(app.balance("bob").await, 0);
    assert_eq!(app.charge("bob", &new_key(), 1).await.status(), 409);
    // No wallet at all: 404.
    assert_eq!(app.charge("nobody", &new_key(), 1).await.status(), 404);
    app.finish().await;
}

async fn refunds_may_be_partial_but_never_exceed_the_charge(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("cat", 5_000, "EUR").await;
    let c: Value = app
        .charge("cat", &new_key(), 3_000)
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/charges/{}/refunds", c["id"].as_str().unwrap());
    let shop = app.token("shop", &["service"]);
    let refund = |amount: i64| {
        let (path, shop) = (path.clone(), shop.clone());
        let app = &app;
        async move {
            app.post(
                &path,
                &shop,
                Some(&new_key()),
                &json!({"amount_minor": amount}),
            )
            .await
        }
    };
    assert_eq!(refund(1_000).await.status(), 201);
    assert_eq!(refund(1_500).await.status(), 201);
    let over = refund(501).await;
    assert_eq!(over.status(), 409);
    let p = problem(over).await;
    assert_eq!(
        p["type"],
        "https://eshop.dev/problems/refund-exceeds-charge"
    );
    assert!(
        p["detail"].as_str().unwrap().contains("(500 minor units)"),
        "{p}"
    );
    assert_eq!(refund(500).await.status(), 201);
    assert_eq!(refund(1).await.status(), 409);
    assert_eq!(app.balance("cat").await, 5_000);
    assert_eq!(app.count("refund").await, 3);
    let unknown = format!("/charges/ch_{:032x}/refunds", 7);
    let res = app
        .post(
            &unknown,
            &shop,
            Some(&new_key()),
            &json!({"amount_minor": 1}),
        )
        .await;
    assert_eq!(res.status(), 404);
    app.finish().await;
}

async fn only_the_owner_the_shop_or_an_admin_may_touch_a_wallet(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("dan", 5_000, "EUR").await;
    let eve = app.token("eve", &[]);
    let shop = app.token("shop", &["service"]);
    let admin = app.token("root", &["admin"]);
    let top_up = json!({"amount_minor": 100, "currency": "EUR"});
    let charge = json!({"amount_minor": 100, "currency": "EUR", "reference": "o"});

    let res = app.get("/wallets/dan", &eve).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        problem(res).await["type"],
        "https://eshop.dev/problems/forbidden"
    );
    assert_eq!(
        app.get("/wallets/dan/transactions", &eve).await.status(),
        403
    );
    for (path, body) in [
        ("/wallets/dan/top-ups", &top_up),
        ("/wallets/dan/charges", &charge),
    ] {
        let res = app.post(path, &eve, Some(&new_key()), body).await;
        assert_eq!(res.status(), 403, "{path}");
    }
    // The shop reads and charges but does not top up; an admin does all.
    assert_eq!(app.get("/wallets/dan", &shop).await.status(), 200);
    let res = app
        .post("/wallets/dan/top-ups", &shop, Some(&new_key()), &top_up)
        .await;
    assert_eq!(res.status(), 403);
    let res = app
        .post("/wallets/dan/charges", &shop, Some(&new_key()), &charge)
        .await;
    assert_eq!(res.status(), 201);
    let c: Value = res.json().await.unwrap();
    let res = app
        .post("/wallets/dan/top-ups", &admin, Some(&new_key()), &top_up)
        .await;
    assert_eq!(res.status(), 201);
    // The owner charges itself but does not refund; a stranger does not
    // even see the charge.
    let dan = app.token("dan", &[]);
    let res = app
        .post("/wallets/dan/charges", &dan, Some(&new_key()), &charge)
        .await;
    assert_eq!(res.status(), 201);
    let refunds = format!("/charges/{}/refunds", c["id"].as_str().unwrap());
    let res = app
        .post(
            &refunds,
            &dan,
            Some(&new_key()),
            &json!({"amount_minor": 1}),
        )
        .await;
    assert_eq!(res.status(), 403);
    let charge_path = format!("/charges/{}", c["id"].as_str().unwrap());
    assert_eq!(app.get(&charge_path, &dan).await.status(), 200);
    assert_eq!(app.get(&charge_path, &eve).await.status(), 404);
    assert_eq!(app.balance("dan").await, 5_000 - 100 + 100 - 100);
    app.finish().await;
}

async fn requests_without_a_valid_token_are_401(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("fay", 100, "EUR").await;
    let res = app
        .client
        .get(app.url("/wallets/fay"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer realm=\"eshop\"");
    for bad in [
        "not.a.jwt",
        &common::Issuer::start().await.token("fay", &[]),
    ] {
        let res = app.get("/wallets/fay", bad).await;
        assert_eq!(res.status(), 401, "{bad}");
        assert_eq!(
            problem(res).await["type"],
            "https://eshop.dev/problems/unauthorized"
        );
    }
    let res = app
        .client
        .post(app.url("/wallets/fay/charges"))
        .header("Idempotency-Key", "k1")
        .json(&json!({"amount_minor": 1, "currency": "EUR", "reference": "o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Health, metrics and the document need none.
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let res = app.client.get(app.url(open)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{open}");
    }
    assert_eq!(app.balance("fay").await, 100);
    app.finish().await;
}

async fn the_idempotency_key_is_required_and_a_retry_gets_the_first_answer(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("gus", 5_000, "EUR").await;
    let shop = app.token("shop", &["service"]);
    let body = json!({"amount_minor": 700, "currency": "EUR", "reference": "order-9"});

    let res = app.post("/wallets/gus/charges", &shop, None, &body).await;
    assert_eq!(res.status(), 400);
    let p = problem(res).await;
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key", "{p}");

    let first = app
        .post("/wallets/gus/charges", &shop, Some("order-9"), &body)
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_location = first.headers()["location"].clone();
    let first_body = first.bytes().await.unwrap();
    // The same body, written differently: the same request.
    let res = app
        .client
        .post(app.url("/wallets/gus/charges"))
        .bearer_auth(&shop)
        .header("Idempotency-Key", "order-9")
        .header("content-type", "application/json")
        .body(r#"{ "reference": "order-9", "currency": "EUR", "amount_minor": 700 }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.headers()["location"], first_location);
    assert_eq!(res.bytes().await.unwrap(), first_body);
    assert_eq!(app.balance("gus").await, 4_300);

    let other = json!({"amount_minor": 701, "currency": "EUR", "reference": "order-9"});
    let res = app
        .post("/wallets/gus/charges", &shop, Some("order-9"), &other)
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        problem(res).await["type"],
        "https://eshop.dev/problems/idempotency-key-reuse"
    );
    // The same key on another route is another request too.
    let res = app
        .post(
            "/wallets/gus/top-ups",
            &app.token("gus", &[]),
            Some("order-9"),
            &json!({"amount_minor": 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(
        res.status(),
        201,
        "keys are per caller: gus's order-9 is not the shop's"
    );

    // A refused charge is an answer too: its retry is refused the same way
    // even after a top-up (a new attempt takes a new key).
    let big = json!({"amount_minor": 9_000, "currency": "EUR", "reference": "order-10"});
    let res = app
        .post("/wallets/gus/charges", &shop, Some("order-10"), &big)
        .await;
    assert_eq!(res.status(), 409);
    let refused = res.bytes().await.unwrap();
    app.top_up("gus", 9_000, "EUR").await;
    let res = app
        .post("/wallets/gus/charges", &shop, Some("order-10"), &big)
        .await;
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (409, "true")
    );
    assert_eq!(res.bytes().await.unwrap(), refused);
    assert_eq!(app.count("charge").await, 1);
    app.finish().await;
}

async fn a_wallet_keeps_the_currency_of_its_first_top_up(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("hal", 1_000, "JPY").await;
    let hal = app.token("hal", &[]);
    let w: Value = app.get("/wallets/hal", &hal).await.json().await.unwrap();
    assert_eq!(
        (&w["currency"], &w["balance"]),
        (&json!("JPY"), &json!("1000"))
    );
    let res = app
        .post(
            "/wallets/hal/top-ups",
            &hal,
            Some(&new_key()),
            &json!({"amount_minor": 5, "currency": "EUR"}),
        )
        .await;
    assert_eq!(res.status(), 422);
    let p = problem(res).await;
    assert_eq!(p["type"], "https://eshop.dev/problems/currency-mismatch");
    assert_eq!(p["errors"][0]["field"], "currency");
    let res = app.charge("hal", &new_key(), 5).await; // in EUR
    assert_eq!(res.status(), 422);
    assert_eq!(app.balance("hal").await, 1_000);
    app.finish().await;
}

async fn the_history_pages_newest_first_without_gaps(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("ivy", 10_000, "EUR").await;
    for i in 1..=6 {
        assert_eq!(app.charge("ivy", &new_key(), i).await.status(), 201);
    }
    let ivy = app.token("ivy", &[]);
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let p: Value = app
            .get(&format!("/wallets/ivy/transactions?limit=3{q}"), &ivy)
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["amount_minor"].as_i64().unwrap()),
        );
        after = p["next_after"].as_str().map(str::to_owned);
        if after.is_none() {
            break;
        }
    }
    assert_eq!(seen, [6, 5, 4, 3, 2, 1, 10_000]);
    for bad in ["limit=0", "limit=101", "limit=x", "after=-1", "after=abc"] {
        let res = app
            .get(&format!("/wallets/ivy/transactions?{bad}"), &ivy)
            .await;
        assert_eq!(res.status(), 400, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert_eq!(problem(res).await["errors"][0]["field"], field, "{bad}");
    }
    app.finish().await;
}

async fn metrics_count_movements_by_outcome(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("jo", 1_000, "EUR").await;
    assert_eq!(app.charge("jo", "m1", 400).await.status(), 201);
    assert_eq!(app.charge("jo", "m1", 400).await.status(), 201);
    assert_eq!(app.charge("jo", "m2", 5_000).await.status(), 409);
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"payments_charges_total{outcome="succeeded"} 1"#,
        r#"payments_charges_total{outcome="insufficient_funds"} 1"#,
        r#"payments_idempotent_replays_total{operation="charge"} 1"#,
        r#"payments_top_ups_total{outcome="succeeded"} 1"#,
        r#"payments_charged_minor_total{currency="EUR"} 400"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    app.finish().await;
}

async fn the_ledger_check_notices_a_tampered_ledger(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.top_up("kim", 500, "EUR").await;
    assert_eq!(app.charge("kim", &new_key(), 200).await.status(), 201);
    assert!(app.store.ledger_check().await.unwrap().is_balanced());
    let exec = |sql: &'static str, arg: String| {
        let pool = app.store.pool().clone();
        async move { sqlx::query(sql).bind(arg).execute(&pool).await.unwrap() }
    };
    // A balance changed without an entry.
    exec(
        "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
        "wallet:kim".into(),
    )
    .await;
    let c = app.store.ledger_check().await.unwrap();
    assert_eq!((c.wrong_balances, c.unbalanced_movements), (1, 0), "{c:?}");
    exec(
        "UPDATE accounts SET balance = balance - 1 WHERE id = $1",
        "wallet:kim".into(),
    )
    .await;
    // An entry changed without its other half.
    let id = t["id"].as_str().unwrap().to_owned();
    exec(
        "UPDATE entries SET amount = amount + 1 WHERE movement_id = $1 AND amount > 0",
        id.clone(),
    )
    .await;
    let c = app.store.ledger_check().await.unwrap();
    assert_eq!((c.wrong_balances, c.unbalanced_movements), (1, 1), "{c:?}");
    exec(
        "UPDATE entries SET amount = amount - 1 WHERE movement_id = $1 AND amount > 0",
        id,
    )
    .await;
    app.finish().await;
}
