//! Every bad input is a 4xx problem+json naming what was wrong, on both
//! backends, and moves no money.

mod common;

use common::{new_key, problem, spawn_app, Backend};
use serde_json::{json, Value};

kit::on_both_backends!(every_bad_input_is_a_4xx_problem_naming_the_field);

async fn every_bad_input_is_a_4xx_problem_naming_the_field(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("ann", 5_000, "EUR").await;
    let c: Value = app.charge("ann", &new_key(), 1_000).await.json().await.unwrap();
    let refunds = format!("/charges/{}/refunds", c["id"].as_str().unwrap());
    let top = "/wallets/ann/top-ups";
    let charge = "/wallets/ann/charges";
    let ok_charge = |k: &str, v: Value| {
        let mut b = json!({"amount_minor": 10, "currency": "EUR", "reference": "o-1"});
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = json!({"amount_minor": 10, "currency": "EUR", "reference": "o-1"});
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (top, json!({"amount_minor": 0, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": -5, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": 100_001, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": 10.5, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": 10.0, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": "10", "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": 1e30, "currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": null, "currency": "EUR"}), "amount_minor"),
        (top, json!({"currency": "EUR"}), "amount_minor"),
        (top, json!({"amount_minor": 10, "currency": "eur"}), "currency"),
        (top, json!({"amount_minor": 10, "currency": "XAU"}), "currency"),
        (top, json!({"amount_minor": 10, "currency": "EURO"}), "currency"),
        (top, json!({"amount_minor": 10, "currency": 978}), "currency"),
        (top, json!({"amount_minor": 10}), "currency"),
        (top, json!({"amount_minor": 10, "currency": "EUR", "user_id": "eve"}), "user_id"),
        (top, json!([10, "EUR"]), "body"),
        (charge, ok_charge("amount_minor", json!(0)), "amount_minor"),
        (charge, ok_charge("amount_minor", json!(1_000_000_000_001i64)), "amount_minor"),
        (charge, ok_charge("amount_minor", json!(0.5)), "amount_minor"),
        (charge, ok_charge("currency", json!("")), "currency"),
        (charge, ok_charge("reference", json!("")), "reference"),
        (charge, ok_charge("reference", json!("x".repeat(101))), "reference"),
        (charge, ok_charge("reference", json!("a\u{0}b")), "reference"),
        (charge, ok_charge("reference", json!(42)), "reference"),
        (charge, ok_charge("balance", json!(1)), "balance"),
        (charge, without("reference"), "reference"),
        (charge, without("currency"), "currency"),
        (refunds.as_str(), json!({"amount_minor": 0}), "amount_minor"),
        (refunds.as_str(), json!({"amount_minor": -1}), "amount_minor"),
        (refunds.as_str(), json!({"amount_minor": 1, "currency": "EUR"}), "currency"),
        (refunds.as_str(), json!({}), "amount_minor"),
    ];
    let admin = app.token("root", &["admin"]);
    for (path, body, field) in &cases {
        let res = app.post(path, &admin, Some(&new_key()), body).await;
        assert_eq!(res.status(), 422, "{path} {body}");
        let p = problem(res).await;
        let named: Vec<&str> = p["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {p}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(named.contains(field), "{path} {body}: {p}");
    }

    // Keys: missing, empty, too long, with a space, not ASCII.
    let body = json!({"amount_minor": 10, "currency": "EUR"});
    let long = "k".repeat(256);
    for key in [None, Some(""), Some(long.as_str()), Some("a b")] {
        let res = app.post(top, &admin, key, &body).await;
        assert_eq!(res.status(), 400, "{key:?}");
        assert_eq!(problem(res).await["errors"][0]["field"], "Idempotency-Key");
    }
    let res = app
        .client
        .post(app.url(top))
        .bearer_auth(&admin)
        .header("Idempotency-Key", reqwest::header::HeaderValue::from_bytes(b"\xc3\xa9").unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Not JSON, not declared JSON, a bad user id in the path.
    let raw = |ct: &'static str, text: &'static str| {
        app.client
            .post(app.url(top))
            .bearer_auth(&admin)
            .header("Idempotency-Key", new_key())
            .header("content-type", ct)
            .body(text)
            .send()
    };
    assert_eq!(raw("application/json", "{not json").await.unwrap().status(), 400);
    assert_eq!(raw("text/plain", "{}").await.unwrap().status(), 415);
    let res = app.get("/wallets/a%20b", &admin).await;
    assert_eq!(res.status(), 400);
    assert_eq!(problem(res).await["errors"][0]["field"], "user_id");
    let res = app.get("/charges/nope", &admin).await;
    assert_eq!(res.status(), 404);

    // None of it moved money.
    assert_eq!(app.balance("ann").await, 4_000);
    assert_eq!(app.count("top_up").await, 1);
    assert_eq!(app.count("charge").await, 1);
    app.finish().await;
}
