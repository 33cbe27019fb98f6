//! The storefront's pages and forms against the real shop (users,
//! inventory, pricing, payments in this process), through a client that
//! keeps cookies like a browser.

mod common;

use common::{Browser, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_signs_up_adds_money_once_per_form_and_logs_out() {
    let shop = common::start().await;
    let mut b = Browser::new(&shop.storefront.base);

    // The catalogue, for anyone, in words.
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains("Green tea") && home.body.contains("19.99 EUR"),
        "{}",
        home.body
    );
    assert!(home.body.contains("Only 3 left") && home.body.contains("Out of stock"));
    assert_eq!(
        home.headers["content-security-policy"],
        storefront::render::CSP
    );
    assert_eq!(home.headers["cache-control"], "no-store");

    // Sign up: a session starts, in a cookie no script can read.
    let welcome = b.sign_up("ann@example.com").await;
    assert_eq!(
        (welcome.status, welcome.location.as_deref()),
        (303, Some("/?m=welcome"))
    );
    let session = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("eshop_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain HTTP here: {session}");
    let home = b.get("/?m=welcome").await;
    assert!(home.body.contains("Your account is ready"));
    assert!(home.body.contains(r#"id="logout""#));

    // The wallet: empty, then topped up.
    let wallet = b.get("/wallet").await;
    assert_eq!(wallet.status, 200);
    assert!(
        wallet.body.contains(r#"id="balance">0.00 EUR<"#),
        "{}",
        wallet.body
    );
    let (csrf, key) = (wallet.csrf(), wallet.field("key"));
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("amount", "25.5"),
    ];
    let done = b.post("/wallet/top-up", &form).await;
    assert_eq!(
        (done.status, done.location.as_deref()),
        (303, Some("/wallet?m=topped-up"))
    );
    // The same form posted again (a double click, a reload): added once.
    let again = b.post("/wallet/top-up", &form).await;
    assert_eq!(again.status, 303);
    let wallet = b.get("/wallet?m=topped-up").await;
    assert!(
        wallet.body.contains(r#"id="balance">25.50 EUR<"#),
        "{}",
        wallet.body
    );
    assert!(wallet.body.contains("The money is in your wallet"));

    // Amounts are checked in words before anything is sent on.
    let wallet = b.get("/wallet").await;
    let bad = b
        .post(
            "/wallet/top-up",
            &[
                ("csrf", &wallet.csrf()),
                ("key", &wallet.field("key")),
                ("amount", "12.345"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(
        bad.body.contains("EUR has 2 decimals at most"),
        "{}",
        bad.body
    );
    assert!(
        bad.body.contains(r#"value="12.345""#),
        "what was typed stays"
    );

    // Log out: the session cookie is cleared, the wallet wants a login.
    let home = b.get("/").await;
    let out = b.post("/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(
        (out.status, out.location.as_deref()),
        (303, Some("/?m=logged-out"))
    );
    assert!(!b.cookies.contains_key("eshop_session"));
    let wallet = b.get("/wallet").await;
    assert_eq!(
        (wallet.status, wallet.location.as_deref()),
        (303, Some("/login?m=login-first"))
    );

    // And back in with the password.
    let form = b.get("/login").await;
    let back = b
        .post(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("email", "ANN@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(back.status, 303);
    assert!(b.get("/wallet").await.body.contains("25.50 EUR"));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_from_elsewhere_and_bad_logins_are_refused_in_words() {
    let shop = common::start().await;
    let mut b = Browser::new(&shop.storefront.base);
    let creds = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("email", "nobody@example.com".to_owned()),
            ("password", "wrong password!".to_owned()),
        ]
    };

    // No CSRF cookie yet (the form was never shown to this browser).
    let r = b.post("/login", &pairs(&creds("00"))).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("This form has expired"));

    // The cookie, but a forged token.
    let page = b.get("/login").await;
    let r = b.post("/login", &pairs(&creds(&"ab".repeat(32)))).await;
    assert_eq!(r.status, 403);

    // The right token from another site (the browser says so).
    let ours = creds(&page.csrf());
    let fields = pairs(&ours);
    let r = b
        .post_with("/login", &fields, &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(r.status, 403);

    // Our own form, wrong password: 401 in words, email kept.
    let r = b.post("/login", &fields).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("do not match an account"), "{}", r.body);
    assert!(r.body.contains(r#"value="nobody@example.com""#));

    // A weak password at sign-up: the users service's reason, shown.
    let page = b.get("/signup").await;
    let r = b
        .post(
            "/signup",
            &[
                ("csrf", &page.csrf()),
                ("email", "x@example.com"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("password"), "{}", r.body);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_pages_show_is_escaped_and_unknown_things_are_404() {
    let shop = common::start().await;
    let mut b = Browser::new(&shop.storefront.base);
    let home = b.get("/").await;
    assert!(
        !home.body.contains("<script>"),
        "markup from data is never markup"
    );
    assert!(home
        .body
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    let p = b.get("/products/SKU-X").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("<title>&lt;script&gt;"), "{}", p.body);
    assert_eq!(b.get("/products/NOPE").await.status, 404);
    assert_eq!(b.get("/products/..%2Freadyz").await.status, 404);
    // A redirect's note is a code: text in the URL is never shown.
    let odd = b.get("/?m=%3Cb%3Ehello").await;
    assert!(!odd.body.contains("hello"));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_is_said_in_words() {
    let shop = common::start().await;
    let mut b = Browser::new(&shop.storefront.base);
    b.sign_up("bo@example.com").await;
    let common::Shop {
        users,
        inventory,
        pricing,
        payments,
        storefront,
        ..
    } = shop;
    payments.stop().await;
    let wallet = b.get("/wallet").await;
    assert_eq!(wallet.status, 503);
    assert!(
        wallet
            .body
            .contains("The payments service is not answering"),
        "{}",
        wallet.body
    );
    inventory.stop().await;
    let home = b.get("/").await;
    assert_eq!(home.status, 503);
    assert!(home.body.contains("The inventory service is not answering"));
    storefront.stop().await;
    pricing.stop().await;
    users.stop().await;
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
