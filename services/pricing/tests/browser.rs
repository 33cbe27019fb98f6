//! The landing page driven in a real headless Chromium through
//! chromedriver (WebDriver), against real pricing and inventory services.

mod common;

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_chromedriver() -> (Driver, u16) {
    let bin = kit::testing::tool("ESHOP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); run scripts/test-setup.sh",
                bin.display()
            )
        });
    let driver = Driver(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (driver, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start on port {port}");
}

async fn browser(port: u16, profile: &std::path::Path) -> fantoccini::Client {
    let chromium = kit::testing::tool("ESHOP_TEST_CHROMIUM", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            // No sandbox as root in CI; no background traffic on a closed network.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--disable-quic", format!("--user-data-dir={}", profile.display())]
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("chromedriver session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_gets_a_price_and_a_clear_error_in_a_real_browser() {
    let inv = common::spawn_inventory().await;
    let pricing = common::spawn_pricing(&inv.running.base, &[]).await;
    let (_driver, port) = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(port, profile.path()).await;

    let total = submit(&c, &pricing.base, "SKU-1", "12", "total").await;
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
    let err = submit(&c, &pricing.base, "NOPE-9", "1", "error").await;
    let text = err.text().await.unwrap();
    assert!(
        text.contains("could not find a product with ID “NOPE-9”"),
        "{text}"
    );

    // A bad quantity: explained, not a crash.
    let err = submit(&c, &pricing.base, "SKU-1", "lots", "error").await;
    assert!(err.text().await.unwrap().contains("whole number"));

    c.close().await.unwrap();
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
