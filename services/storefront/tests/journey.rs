//! Seed 000's journey in a real headless Chromium, on the whole shop
//! (users, inventory, pricing, payments, orders, storefront in this
//! process): sign up, add money, fill the cart, check out, see the order,
//! the new stock and the new balance; and the refusals in words: not
//! enough money, out of stock, payments down.

mod common;

use fantoccini::{elements::Element, Client, Locator};
use kit::testing_browser::Chromium;
use std::time::Duration;

async fn wait_for(c: &Client, id: &str) -> Element {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
}

async fn text(c: &Client, id: &str) -> String {
    wait_for(c, id).await.text().await.unwrap()
}

/// Clicks a form's button and waits for the next page: until the page
/// clicked on is gone (its elements go stale), so what is read next is
/// never the old page's.
async fn click(c: &Client, id: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    wait_for(c, id).await.click().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while old.tag_name().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "#{id} led nowhere");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `path` and types into fields by id, then clicks `button`.
async fn fill_and_submit(
    c: &Client,
    base: &str,
    path: &str,
    fields: &[(&str, &str)],
    button: &str,
) {
    c.goto(&format!("{base}{path}")).await.unwrap();
    for (id, value) in fields {
        let input = wait_for(c, id).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }
    click(c, button).await;
}

/// Sets the quantity of a catalogue card's add form and submits it.
async fn add_to_cart(c: &Client, base: &str, product: &str, quantity: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    let input = c
        .find(Locator::Css(&format!(
            "#product-{product} input[name=quantity]"
        )))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(quantity).await.unwrap();
    click(c, &format!("add-{product}")).await;
    assert_eq!(text(c, "message").await, "Added to your cart.");
}

/// Clicks "Check out" on a freshly loaded cart page; the note after it.
async fn check_out(c: &Client, base: &str) -> String {
    c.goto(&format!("{base}/cart")).await.unwrap();
    click(c, "checkout").await;
    text(c, "message").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_buys_two_products_and_sees_why_when_a_checkout_is_refused() {
    let shop = common::start().await;
    let chromium = Chromium::start().await;
    let c = &chromium.client;
    let base = shop.storefront.base.clone();

    fill_and_submit(
        c,
        &base,
        "/signup",
        &[("email", "dee@example.com"), ("password", common::PASSWORD)],
        "signup",
    )
    .await;
    assert!(text(c, "message").await.contains("Your account is ready"));
    fill_and_submit(c, &base, "/wallet", &[("amount", "100")], "top-up").await;
    assert_eq!(text(c, "balance").await, "100.00 EUR");

    // Two teas (19.99 each) and a teapot (45.00), tax 20 %:
    // 39.98 + 8.00 (7.996) = 47.98; 45.00 + 9.00 = 54.00; total 101.98.
    add_to_cart(c, &base, "SKU-1", "2").await;
    add_to_cart(c, &base, "SKU-2", "1").await;
    c.goto(&format!("{base}/cart")).await.unwrap();
    assert_eq!(text(c, "total_minor").await, "101.98 EUR");
    assert!(text(c, "line-SKU-2").await.contains("Teapot"));

    // Not enough money: said with both amounts, nothing charged.
    let refused = check_out(c, &base).await;
    assert!(
        refused.contains("100.00 EUR") && refused.contains("101.98 EUR"),
        "{refused}"
    );
    assert!(
        refused.to_lowercase().contains("nothing was charged"),
        "{refused}"
    );
    // The cart is still there to try again.
    assert_eq!(text(c, "total_minor").await, "101.98 EUR");

    // More money, and the order goes through.
    fill_and_submit(c, &base, "/wallet", &[("amount", "50")], "top-up").await;
    assert_eq!(text(c, "balance").await, "150.00 EUR");
    let done = check_out(c, &base).await;
    assert_eq!(done, "Thank you! Your order is confirmed and paid.");
    assert_eq!(text(c, "state").await, "Confirmed and paid");
    assert_eq!(text(c, "total").await, "101.98 EUR");
    let order_id = text(c, "order-id").await;

    // The money and the stock moved, and the cart is empty.
    c.goto(&format!("{base}/wallet")).await.unwrap();
    assert_eq!(text(c, "balance").await, "48.02 EUR");
    c.goto(&format!("{base}/products/SKU-2")).await.unwrap();
    assert_eq!(text(c, "stock").await, "Only 2 left");
    c.goto(&format!("{base}/cart")).await.unwrap();
    wait_for(c, "empty").await;
    c.goto(&format!("{base}/orders")).await.unwrap();
    assert!(text(c, "orders").await.contains(&order_id));

    // Three teapots when two are left: refused in words, nothing held.
    add_to_cart(c, &base, "SKU-2", "3").await;
    let refused = check_out(c, &base).await;
    assert!(refused.contains("Only 2 Teapot left"), "{refused}");
    c.goto(&format!("{base}/products/SKU-2")).await.unwrap();
    assert_eq!(
        text(c, "stock").await,
        "Only 2 left",
        "the hold was released"
    );
    if let Ok(dir) = std::env::var("ESHOP_TEST_SCREENSHOTS") {
        c.goto(&format!("{base}/cart")).await.unwrap();
        std::fs::write(
            format!("{dir}/storefront-cart.png"),
            c.screenshot().await.unwrap(),
        )
        .unwrap();
    }

    // Payments down: the checkout says so, and that nothing was charged.
    let common::Shop {
        users,
        inventory,
        pricing,
        payments,
        orders,
        storefront,
        ..
    } = shop;
    payments.stop().await;
    // One teapot, which is in stock, so the saga gets to the charge.
    c.goto(&format!("{base}/cart")).await.unwrap();
    let input = c
        .find(Locator::Css("#line-SKU-2 input[name=quantity]"))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys("1").await.unwrap();
    c.find(Locator::Css("#line-SKU-2 button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text(c, "message").await, "Your cart is updated.");
    let refused = check_out(c, &base).await;
    assert!(
        refused.contains("Payments is not answering; nothing was charged"),
        "{refused}"
    );
    c.goto(&format!("{base}/products/SKU-2")).await.unwrap();
    assert_eq!(
        text(c, "stock").await,
        "Only 2 left",
        "the hold was released"
    );

    c.clone().close().await.unwrap();
    storefront.stop().await;
    orders.stop().await;
    pricing.stop().await;
    inventory.stop().await;
    users.stop().await;
}
