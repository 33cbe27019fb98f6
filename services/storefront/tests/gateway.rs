//! `/api/<service>/…`: the public API through the storefront, against the
//! real services.

mod common;

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_routes_each_service_with_the_callers_own_token() {
    let shop = common::start().await;
    let base = shop.storefront.base.clone();
    let api = |p: &str| format!("{base}/api{p}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Reads pass through as they are.
    let p: Value = http
        .get(api("/inventory/products/SKU-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p["name"], "Green tea");
    let q = http
        .get(api("/pricing/calculate_price?product_id=SKU-1&quantity=12"))
        .send()
        .await
        .unwrap();
    assert_eq!(q.status(), 200);
    assert_eq!(q.json::<Value>().await.unwrap()["total_minor"], 27347);
    // Pricing's landing page, reachable, and its form posts back to itself.
    let landing = http.get(api("/pricing/")).send().await.unwrap();
    assert_eq!(landing.status(), 200);
    let html = landing.text().await.unwrap();
    assert!(
        html.contains(r#"<form method="get" id="price-form">"#),
        "{html}"
    );
    assert_eq!(
        http.get(api("/pricing")).send().await.unwrap().status(),
        200
    );

    // A sign-up and a login through the gateway, then money with the token.
    let creds = json!({"email": "api@example.com", "password": common::PASSWORD});
    assert_eq!(
        http.post(api("/users/users"))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let t: Value = http
        .post(api("/users/tokens"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["access_token"].as_str().unwrap();
    let me: Value = http
        .get(api("/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = me["id"].as_str().unwrap();
    let top_up = || {
        http.post(api(&format!("/payments/wallets/{user}/top-ups")))
            .bearer_auth(token)
            .header("idempotency-key", "gw-1")
            .json(&json!({"amount_minor": 500, "currency": "EUR"}))
            .send()
    };
    let first = top_up().await.unwrap();
    assert_eq!(first.status(), 201);
    let again = top_up().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");

    // The charge's Location comes back under the gateway's prefix.
    let charge = http
        .post(api(&format!("/payments/wallets/{user}/charges")))
        .bearer_auth(token)
        .header("idempotency-key", "gw-c1")
        .json(&json!({"amount_minor": 200, "currency": "EUR", "reference": "order-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(charge.status(), 201);
    let loc = charge.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with("/api/payments/charges/"), "{loc}");
    let c = http
        .get(format!("{base}{loc}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(c.status(), 200);

    // The session cookie never stands in for a token on the API.
    let res = http
        .get(api(&format!("/payments/wallets/{user}")))
        .header("cookie", format!("eshop_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // An unknown service, and no climbing out of one.
    let res = http.get(api("/billing/x")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = http
        .get(api("/inventory/..%2F..%2Fapi/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // A service that is down: a 503 with Retry-After.
    let common::Shop {
        users,
        inventory,
        pricing,
        payments,
        storefront,
        ..
    } = shop;
    payments.stop().await;
    let res = http
        .get(api(&format!("/payments/wallets/{user}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    storefront.stop().await;
    pricing.stop().await;
    inventory.stop().await;
    users.stop().await;
}
