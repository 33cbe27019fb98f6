//! The cart and the order history against the real shop, on both of
//! orders' backends: lines set, changed and removed, the limits, every
//! bad input a 4xx naming its field, prices live or honestly missing, and
//! nobody else's orders.

mod common;

use common::proxy::{Mode, Proxy};
use common::{new_key, problem, Backend, Shop};
use serde_json::{json, Value};

kit::on_both_backends!(
    a_cart_is_set_changed_and_emptied_line_by_line,
    a_cart_holds_at_most_fifty_products,
    every_bad_input_is_a_4xx_problem_naming_the_field,
    the_cart_shows_its_lines_without_prices_when_pricing_is_down,
    orders_are_the_callers_own_newest_first_in_pages,
    one_checkout_is_driven_by_one_driver_at_a_time,
);

async fn a_cart_is_set_changed_and_emptied_line_by_line(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer("ann").await;
    let res = shop.put_item(&ann, "TEA-1", 2).await;
    assert_eq!(res.status(), 201, "a new line");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"product_id": "TEA-1", "quantity": 2})
    );
    // Set, not add.
    let res = shop.put_item(&ann, "TEA-1", 3).await;
    assert_eq!(res.status(), 200, "a changed line");
    shop.add(&ann, "POT-1", 1).await;
    let cart = shop.cart(&ann).await;
    assert_eq!(cart["prices_unavailable"], false, "{cart}");
    let lines = cart["items"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (&lines[0]["product_id"], &lines[0]["quantity"]),
        (&json!("POT-1"), &json!(1))
    );
    assert_eq!(lines[0]["product_name"], "Teapot");
    assert_eq!(lines[0]["availability"]["message"], "Only 2 left");
    // 3 × 12.50 + 20 % tax = 45.00; 30.00 + 20 % = 36.00.
    assert_eq!(lines[1]["unit_price_minor"], 1250);
    assert_eq!(lines[1]["line_total_minor"], 4500);
    assert_eq!(
        (&cart["total_minor"], &cart["currency"]),
        (&json!(8100), &json!("EUR"))
    );

    // Another user's cart is their own.
    let bob = shop.customer("bob").await;
    assert_eq!(shop.cart(&bob).await["items"], json!([]));

    // A product the shop does not sell is not put in a cart.
    let res = shop.put_item(&ann, "NOPE-1", 1).await;
    assert_eq!(res.status(), 404);
    assert!(problem(res).await["detail"]
        .as_str()
        .unwrap()
        .contains("NOPE-1"));

    let del = |p: &str| {
        ann.client
            .delete(shop.url(&format!("/cart/items/{p}")))
            .send()
    };
    assert_eq!(del("TEA-1").await.unwrap().status(), 204);
    assert_eq!(del("TEA-1").await.unwrap().status(), 204, "idempotent");
    let cart = shop.cart(&ann).await;
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    assert_eq!(cart["total_minor"], 3600);
    let m = shop.metrics().await;
    assert!(
        m.contains(r#"orders_cart_updates_total{action="set"} 3"#),
        "{m}"
    );
    assert!(
        m.contains(r#"orders_cart_updates_total{action="remove"} 1"#),
        "{m}"
    );
    shop.finish().await;
}

async fn a_cart_holds_at_most_fifty_products(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer("ann").await;
    for i in 0..51 {
        let res = shop
            .admin
            .post(format!("{}/products", shop.inventory_url()))
            .json(
                &json!({"id": format!("P-{i}"), "name": format!("Product {i}"),
                          "unit_price_minor": 100, "currency": "EUR", "quantity": 5}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    for i in 0..50 {
        shop.add(&ann, &format!("P-{i}"), 1).await;
    }
    let res = shop.put_item(&ann, "P-50", 1).await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        problem(res).await["type"],
        "https://eshop.dev/problems/cart-full"
    );
    // Changing a line already there is fine; so is a product again after
    // one left.
    assert_eq!(shop.put_item(&ann, "P-0", 1000).await.status(), 200);
    let res = ann
        .client
        .delete(shop.url("/cart/items/P-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(shop.put_item(&ann, "P-50", 1).await.status(), 201);
    assert_eq!(shop.cart(&ann).await["items"].as_array().unwrap().len(), 50);
    shop.finish().await;
}

async fn every_bad_input_is_a_4xx_problem_naming_the_field(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer("ann").await;
    let put = |path: &str, body: &str| {
        ann.client
            .put(shop.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    // (path, body, status, the field named)
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/cart/items/-bad", r#"{"quantity": 1}"#, 400, "product_id"),
        ("/cart/items/a%20b", r#"{"quantity": 1}"#, 400, "product_id"),
        (
            &format!("/cart/items/{}", "x".repeat(65)),
            r#"{"quantity": 1}"#,
            400,
            "product_id",
        ),
        ("/cart/items/TEA-1", r#"{"quantity": 0}"#, 422, "quantity"),
        ("/cart/items/TEA-1", r#"{"quantity": -1}"#, 422, "quantity"),
        (
            "/cart/items/TEA-1",
            r#"{"quantity": 1001}"#,
            422,
            "quantity",
        ),
        ("/cart/items/TEA-1", r#"{"quantity": 2.5}"#, 422, "quantity"),
        ("/cart/items/TEA-1", r#"{"quantity": "2"}"#, 422, "quantity"),
        (
            "/cart/items/TEA-1",
            r#"{"quantity": null}"#,
            422,
            "quantity",
        ),
        ("/cart/items/TEA-1", r#"{}"#, 422, "quantity"),
        (
            "/cart/items/TEA-1",
            r#"{"quantity": 1, "price": 0}"#,
            422,
            "price",
        ),
        ("/cart/items/TEA-1", r#"[1]"#, 422, "body"),
    ];
    for (path, body, status, field) in cases {
        let res = put(path, body).await.unwrap();
        assert_eq!(res.status(), *status, "{path} {body}");
        let p = problem(res).await;
        let named: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, [*field], "{path} {body}: {p}");
    }
    // Not JSON at all: 400; not declared JSON: 415.
    assert_eq!(
        put("/cart/items/TEA-1", "{quantity")
            .await
            .unwrap()
            .status(),
        400
    );
    let res = ann
        .client
        .put(shop.url("/cart/items/TEA-1"))
        .body(r#"{"quantity": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);

    // Checkouts: the key header, then the cart.
    let post = |key: Option<&str>| {
        let mut r = ann.client.post(shop.url("/checkouts"));
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send()
    };
    for key in [None, Some("two words"), Some(&*"k".repeat(256))] {
        let res = post(key).await.unwrap();
        assert_eq!(res.status(), 400, "{key:?}");
        assert_eq!(problem(res).await["errors"][0]["field"], "Idempotency-Key");
    }
    let res = post(Some("k-empty")).await.unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(problem(res).await["errors"][0]["field"], "cart");

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("after=0", "after"),
        ("after=abc", "after"),
    ] {
        let res = ann
            .client
            .get(shop.url(&format!("/orders?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{query}");
        assert_eq!(problem(res).await["errors"][0]["field"], field, "{query}");
    }
    // No token, a bad token: 401 with a challenge.
    for res in [
        shop.anonymous.get(shop.url("/cart")).send().await.unwrap(),
        shop.anonymous
            .get(shop.url("/orders"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), 401);
        assert!(res.headers().contains_key("www-authenticate"));
    }
    shop.finish().await;
}

async fn the_cart_shows_its_lines_without_prices_when_pricing_is_down(b: Backend) {
    let mut shop = Shop::services(b).await;
    let pricing = Proxy::start(shop.pricing_addr()).await;
    shop.start_orders(&[("PRICING_URL", &pricing.url)]).await;
    let ann = shop.customer("ann").await;
    shop.add(&ann, "TEA-1", 2).await;
    assert_eq!(shop.cart(&ann).await["total_minor"], 3000);
    pricing.set_mode(Mode::Blackhole);
    let started = std::time::Instant::now();
    let cart = shop.cart(&ann).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "bounded"
    );
    assert_eq!(cart["prices_unavailable"], true, "{cart}");
    assert_eq!(
        cart["items"],
        json!([{"product_id": "TEA-1", "quantity": 2,
        "product_name": null, "unit_price_minor": null, "line_total_minor": null,
        "availability": null}])
    );
    assert_eq!(cart["total_minor"], Value::Null);
    assert!(cart["notice"]
        .as_str()
        .unwrap()
        .contains("pricing is not answering"));
    // Products in two currencies have no one total; said so, not a 500.
    pricing.set_mode(Mode::Forward);
    shop.add(&ann, "YEN-1", 1).await;
    let cart = shop.cart(&ann).await;
    assert_eq!(cart["prices_unavailable"], true);
    assert!(
        cart["notice"]
            .as_str()
            .unwrap()
            .contains("different currencies"),
        "{cart}"
    );
    shop.finish().await;
}

async fn orders_are_the_callers_own_newest_first_in_pages(b: Backend) {
    let shop = Shop::start(b).await;
    let ann = shop.customer_with("ann", 50_000).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        shop.add(&ann, "CUP-1", 1).await;
        let res = shop.checkout(&ann, &new_key()).await;
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let page = |q: String| {
        let c = ann.client.clone();
        let url = shop.url(&format!("/orders?{q}"));
        async move {
            c.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = page("limit=2".into()).await;
    let got: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let after = first["next_after"].as_str().unwrap();
    let second = page(format!("limit=2&after={after}")).await;
    assert_eq!(second["items"][0]["id"], ids[0].as_str());
    assert_eq!(second["next_after"], Value::Null);
    assert_eq!(second["items"][0]["lines"][0]["product_name"], "Cup");

    // Nobody else's: the same 404 as no such order.
    let eve = shop.customer("eve").await;
    for id in [ids[0].as_str(), "o_00000000000000000000000000000000", "bad"] {
        let res = eve
            .client
            .get(shop.url(&format!("/orders/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{id}");
    }
    let none = eve.client.get(shop.url("/orders")).send().await.unwrap();
    assert_eq!(none.json::<Value>().await.unwrap()["items"], json!([]));
    shop.finish().await;
}

/// Two replicas (two stores on one database) and many claims at once: a
/// checkout has one driver, and only its driver moves it.
async fn one_checkout_is_driven_by_one_driver_at_a_time(b: Backend) {
    use orders::db::{Change, Created, Lease};
    use orders::model::Step;
    // No orders process: its recovery loop would be one more claimant.
    let shop = Shop::services(b).await;
    let store = &shop.orders_store;
    store.set_cart_item("u-ann", "TEA-1", 1).await.unwrap();
    let first = Lease::new(60_000);
    let Created::New(order) = store.create_checkout("u-ann", "k-1", &first).await.unwrap() else {
        panic!("not created")
    };
    assert!(
        store
            .claim(&order.id, &Lease::new(60_000))
            .await
            .unwrap()
            .is_none(),
        "leased"
    );
    let intruder = Lease::new(60_000);
    let moved = store
        .advance(&order.id, &intruder, Step::Hold, Change::Held)
        .await
        .unwrap();
    assert!(moved.is_none(), "only the lease's owner moves it");
    store.let_go(&order.id, &first, Some(0)).await.unwrap();
    // Free now: of many claims at once, one wins.
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, id) = (store.clone(), order.id.clone());
        claims.spawn(async move { s.claim(&id, &Lease::new(60_000)).await.unwrap().is_some() });
    }
    let mut won = 0;
    while let Some(r) = claims.join_next().await {
        won += usize::from(r.unwrap());
    }
    assert_eq!(won, 1);
    shop.finish().await;
}
