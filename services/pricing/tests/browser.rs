//! The landing page driven in a real headless Chromium through
//! chromedriver (WebDriver), against real pricing and inventory services.

mod common;

use fantoccini::Locator;
use kit::testing_browser::Chromium;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_gets_a_price_and_a_clear_error_in_a_real_browser() {
    let inv = common::spawn_inventory().await;
    let pricing = common::spawn_pricing(&inv.running.base, &[]).await;
    let chromium = Chromium::start().await;
    let c = &chromium.client;

    let total = submit(c, &pricing.base, "SKU-1", "12", "total").await;
    assert_eq!(total.text().await.unwrap(), "EUR 273.47");
    assert_eq!(c.title().await.unwrap(), "eshop · price calculator");
    let name = c.find(Locator::Id("product-name")).await.unwrap();
    assert_eq!(name.text().await.unwrap(), "Green tea");
    // The form keeps what was typed, so the shopper can adjust it.
    let q = c.find(Locator::Id("quantity")).await.unwrap();
    assert_eq!(q.prop("value").await.unwrap().as_deref(), Some("12"));
    if let Ok(dir) = std::env::var("ESHOP_TEST_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(format!("{dir}/landing-result.png"), png).unwrap();
    }

    // An unknown product: the page says so in words.
    let err = submit(c, &pricing.base, "NOPE-9", "1", "error").await;
    let text = err.text().await.unwrap();
    assert!(
        text.contains("could not find a product with ID “NOPE-9”"),
        "{text}"
    );

    // A bad quantity: explained, not a crash.
    let err = submit(c, &pricing.base, "SKU-1", "lots", "error").await;
    assert!(err.text().await.unwrap().contains("whole number"));

    c.clone().close().await.unwrap();
    pricing.stop().await;
    inv.running.stop().await;
}

/// Opens the landing page, types into both fields, clicks "Calculate
/// price" and waits for the element with id `expect` on the next page.
async fn submit(
    c: &fantoccini::Client,
    base: &str,
    product_id: &str,
    quantity: &str,
    expect: &str,
) -> fantoccini::elements::Element {
    c.goto(&format!("{base}/")).await.unwrap();
    for (field, text) in [("product_id", product_id), ("quantity", quantity)] {
        let input = c.find(Locator::Id(field)).await.unwrap();
        input.send_keys(text).await.unwrap();
    }
    c.find(Locator::Id("calculate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(expect))
        .await
        .unwrap()
}
