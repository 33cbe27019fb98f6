//! Every bad input is a 4xx problem+json naming what was wrong, on both
//! backends, and moves no money.

mod common;

use common::{new_key, problem, spawn_app, Backend, TestApp};
use serde_json::Value;

kit::on_both_backends!(every_bad_input_is_a_4xx_problem_naming_the_field);

/// (operation, body as sent, the field the answer must name), all 422.
const BODIES: &[(&str, &str, &str)] = &[
    (
        "top-up",
        r#"{"amount_minor": 0, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": -5, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": 100001, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": 10.5, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": 10.0, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": 1e3, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": 1e30, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": "10", "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": null, "currency": "EUR"}"#,
        "amount_minor",
    ),
    (
        "top-up",
        r#"{"amount_minor": true, "currency": "EUR"}"#,
        "amount_minor",
    ),
    ("top-up", r#"{"currency": "EUR"}"#, "amount_minor"),
    (
        "top-up",
        r#"{"amount_minor": 10, "currency": "eur"}"#,
        "currency",
    ),
    (
        "top-up",
        r#"{"amount_minor": 10, "currency": "XAU"}"#,
        "currency",
    ),
    (
        "top-up",
        r#"{"amount_minor": 10, "currency": "EURO"}"#,
        "currency",
    ),
    (
        "top-up",
        r#"{"amount_minor": 10, "currency": 978}"#,
        "currency",
    ),
    ("top-up", r#"{"amount_minor": 10}"#, "currency"),
    (
        "top-up",
        r#"{"amount_minor": 10, "currency": "EUR", "user_id": "eve"}"#,
        "user_id",
    ),
    ("top-up", r#"[10, "EUR"]"#, "body"),
    (
        "charge",
        r#"{"amount_minor": 0, "currency": "EUR", "reference": "o"}"#,
        "amount_minor",
    ),
    (
        "charge",
        r#"{"amount_minor": 1000000000001, "currency": "EUR", "reference": "o"}"#,
        "amount_minor",
    ),
    (
        "charge",
        r#"{"amount_minor": 9223372036854775808, "currency": "EUR", "reference": "o"}"#,
        "amount_minor",
    ),
    (
        "charge",
        r#"{"amount_minor": 0.5, "currency": "EUR", "reference": "o"}"#,
        "amount_minor",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "", "reference": "o"}"#,
        "currency",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR", "reference": ""}"#,
        "reference",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR", "reference": "a\u0000b"}"#,
        "reference",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR", "reference": "a\nb"}"#,
        "reference",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR", "reference": 42}"#,
        "reference",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR", "reference": "o", "balance": 1}"#,
        "balance",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "currency": "EUR"}"#,
        "reference",
    ),
    (
        "charge",
        r#"{"amount_minor": 10, "reference": "o"}"#,
        "currency",
    ),
    ("refund", r#"{"amount_minor": 0}"#, "amount_minor"),
    ("refund", r#"{"amount_minor": -1}"#, "amount_minor"),
    (
        "refund",
        r#"{"amount_minor": 1, "currency": "EUR"}"#,
        "currency",
    ),
    ("refund", r#"{}"#, "amount_minor"),
];

async fn every_bad_input_is_a_4xx_problem_naming_the_field(b: Backend) {
    let app = spawn_app(b).await;
    app.top_up("ann", 5_000, "EUR").await;
    let res = app.charge("ann", &new_key(), 1_000).await;
    let c: Value = res.json().await.unwrap();
    let refunds = format!("/charges/{}/refunds", c["id"].as_str().unwrap());
    let admin = app.token("root", &["admin"]);
    let long_reference = format!(
        r#"{{"amount_minor": 10, "currency": "EUR", "reference": "{}"}}"#,
        "x".repeat(101)
    );
    let cases = BODIES
        .iter()
        .map(|(op, body, field)| (*op, body.to_string(), *field))
        .chain([("charge", long_reference, "reference")]);
    for (op, body, field) in cases {
        let path = match op {
            "top-up" => "/wallets/ann/top-ups",
            "charge" => "/wallets/ann/charges",
            _ => refunds.as_str(),
        };
        let key = new_key();
        let json = "application/json";
        let res = send(&app, path, &admin, Some(key.as_bytes()), json, body.clone()).await;
        assert_eq!(res.status(), 422, "{path} {body}");
        let p = problem(res).await;
        let named: Vec<&str> = p["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {p}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(named.contains(&field), "{path} {body}: {p}");
    }
    bad_keys_and_paths(&app, &admin).await;

    // None of it moved money.
    assert_eq!(app.balance("ann").await, 4_000);
    assert_eq!(app.count("top_up").await, 1);
    assert_eq!(app.count("charge").await, 1);
    app.finish().await;
}

async fn send(
    app: &TestApp,
    path: &str,
    token: &str,
    key: Option<&[u8]>,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    let mut r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        r = r.header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(k).unwrap(),
        );
    }
    r.send().await.unwrap()
}

/// Keys missing or malformed, bodies that are not JSON, bad path values.
async fn bad_keys_and_paths(app: &TestApp, admin: &str) {
    let top = "/wallets/ann/top-ups";
    let body = r#"{"amount_minor": 10, "currency": "EUR"}"#;
    let long = [b'k'; 256];
    for key in [
        None,
        Some(&b""[..]),
        Some(&long[..]),
        Some(b"a b"),
        Some(b"\xc3\xa9"),
    ] {
        let res = send(app, top, admin, key, "application/json", body.into()).await;
        assert_eq!(res.status(), 400, "{key:?}");
        assert_eq!(problem(res).await["errors"][0]["field"], "Idempotency-Key");
    }
    let key = new_key();
    let res = send(
        app,
        top,
        admin,
        Some(key.as_bytes()),
        "application/json",
        "{not json".into(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = send(
        app,
        top,
        admin,
        Some(key.as_bytes()),
        "text/plain",
        body.into(),
    )
    .await;
    assert_eq!(res.status(), 415);
    for bad in [
        "/wallets/a%20b",
        "/wallets/a%2Fb/transactions",
        &format!("/wallets/{}", "u".repeat(129)),
    ] {
        let res = app.get(bad, admin).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(problem(res).await["errors"][0]["field"], "user_id");
    }
    for unknown in [
        "/charges/nope",
        "/charges/ch_XYZ",
        "/charges/ch_00000000000000000000000000000000",
    ] {
        assert_eq!(app.get(unknown, admin).await.status(), 404, "{unknown}");
    }
}
