//! The shop in a real headless Chromium (WebDriver through chromedriver)
//! against the real services: no JavaScript involved, forms and cookies
//! as a shopper's browser handles them.

mod common;

use fantoccini::Locator;
use kit::testing_browser::Chromium;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_signs_up_and_adds_money_in_a_real_browser() {
    let shop = common::start().await;
    let chromium = Chromium::start().await;
    let c = &chromium.client;
    let base = &shop.storefront.base;
    let wait_for = |id: &'static str| async move {
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id(id))
            .await
            .unwrap()
    };

    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Catalogue · eshop");
    let tea = c.find(Locator::Id("product-SKU-1")).await.unwrap();
    assert!(tea.text().await.unwrap().contains("19.99 EUR"));

    c.goto(&format!("{base}/signup")).await.unwrap();
    c.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("cy@example.com")
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(common::PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Id("signup"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = wait_for("message").await;
    assert!(note.text().await.unwrap().contains("Your account is ready"));

    c.goto(&format!("{base}/wallet")).await.unwrap();
    assert_eq!(wait_for("balance").await.text().await.unwrap(), "0.00 EUR");
    c.find(Locator::Id("amount"))
        .await
        .unwrap()
        .send_keys("40")
        .await
        .unwrap();
    c.find(Locator::Id("top-up"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = wait_for("message").await;
    assert_eq!(note.text().await.unwrap(), "The money is in your wallet.");
    assert_eq!(wait_for("balance").await.text().await.unwrap(), "40.00 EUR");
    if let Ok(dir) = std::env::var("ESHOP_TEST_SCREENSHOTS") {
        std::fs::write(
            format!("{dir}/storefront-wallet.png"),
            c.screenshot().await.unwrap(),
        )
        .unwrap();
    }

    // From a page without a note, so the next note found is the new one.
    c.goto(&format!("{base}/wallet")).await.unwrap();
    c.find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = wait_for("message").await;
    assert_eq!(note.text().await.unwrap(), "You are logged out.");
    c.clone().close().await.unwrap();
    shop.stop().await;
}
