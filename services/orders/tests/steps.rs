//! The saga step by step: for each call a checkout makes, the service
//! behind it broken (answering 500), silent, slow or stopped, and what the
//! customer is told and where stock and money end. The faults sit in a
//! TCP proxy in front of the real service (common/proxy.rs), or the
//! service is stopped for real.
//!
//! | step   | service   | fault            | customer sees                 | ends                          |
//! |--------|-----------|------------------|-------------------------------|-------------------------------|
//! | hold   | users     | stopped (token)  | 503 "The sign-in service …"   | nothing held, nothing charged |
//! | hold   | inventory | 500              | 503 "Inventory is not …"      | as it started                 |
//! | hold   | inventory | silent           | 503 "Inventory is not …"      | as it started                 |
//! | quote  | pricing   | 500              | 503 "Pricing is not …"        | hold released                 |
//! | quote  | pricing   | slow             | 503 "Pricing is not …"        | hold released                 |
//! | quote  | pricing   | stopped          | 503 "Pricing is not …"        | hold released                 |
//! | charge | payments  | 500              | 202 pending                   | confirmed once payments is back, one charge |
//! | charge | payments  | 500 past the hold| 202 pending, then failed      | charged, refunded, stock back |
//! | commit | inventory | 500              | 202 pending                   | confirmed once inventory is back |
//!
//! Once a charge may have reached payments, orders never guesses: it
//! keeps the checkout pending and asks again with the same keys.

mod common;

use common::proxy::{Mode, Proxy};
use common::{new_key, problem, Backend, Customer, Shop};
use serde_json::Value;
use std::time::Duration;

const BALANCE: i64 = 10_000;
/// One teapot: 30.00 EUR + 20 % tax.
const COST: i64 = 3600;

/// The shop with a proxy in front of each of inventory, pricing and
/// payments (orders calls them through it), and short timeouts; `extra`
/// overrides orders' settings.
struct Faulty {
    shop: Shop,
    inventory: Proxy,
    pricing: Proxy,
    payments: Proxy,
    ann: Customer,
}

impl Faulty {
    /// With a teapot in ann's cart.
    async fn start(extra: &[(&str, &str)]) -> Faulty {
        let f = Self::empty_cart(extra).await;
        f.shop.add(&f.ann, "POT-1", 1).await;
        f
    }

    async fn empty_cart(extra: &[(&str, &str)]) -> Faulty {
        let mut shop = Shop::services(Backend::Sqlite).await;
        let inventory = Proxy::start(shop.inventory_addr()).await;
        let pricing = Proxy::start(shop.pricing_addr()).await;
        let payments = Proxy::start(shop.payments_addr()).await;
        let mut settings = vec![
            ("INVENTORY_URL", inventory.url.as_str()),
            ("PRICING_URL", pricing.url.as_str()),
            ("PAYMENTS_URL", payments.url.as_str()),
            ("UPSTREAM_TIMEOUT_MS", "300"),
            ("CHECKOUT_DEADLINE_MS", "1500"),
        ];
        settings.extend_from_slice(extra);
        shop.start_orders(&settings).await;
        let ann = shop.customer_with("ann", BALANCE).await;
        Faulty {
            shop,
            inventory,
            pricing,
            payments,
            ann,
        }
    }

    async fn checkout(&self) -> reqwest::Response {
        self.shop.checkout(&self.ann, &new_key()).await
    }

    /// The refusal, in the service's words, before any money moved; the
    /// order id.
    async fn refused_unavailable(&self, res: reqwest::Response, detail: &str) -> String {
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        let p = problem(res).await;
        assert_eq!(p["reason"], "service_unavailable");
        assert_eq!(p["detail"], detail);
        assert_eq!(p["order"]["state"], "failed");
        p["order"]["id"].as_str().unwrap().to_owned()
    }

    /// The pending order's id (202, Location, Retry-After).
    async fn pending(&self, res: reqwest::Response) -> String {
        assert_eq!(res.status(), 202);
        assert!(res.headers().contains_key("retry-after"));
        let o: Value = res.json().await.unwrap();
        assert_eq!(o["state"], "pending");
        o["id"].as_str().unwrap().to_owned()
    }

    /// The saga finished its compensations and stock and money are as
    /// they were, seen through the services themselves.
    async fn as_it_started(&self, id: &str, charges: i64) {
        self.shop.saga_done(id, Duration::from_secs(15)).await;
        assert_eq!(self.shop.stock("POT-1").await, (2, 0, 2), "stock back");
        assert_eq!(self.shop.balance(&self.ann).await, BALANCE, "money back");
        assert_eq!(self.shop.movements(&self.ann, "charge").await, charges);
        assert_eq!(self.shop.movements(&self.ann, "refund").await, charges);
        assert_eq!(self.shop.order(&self.ann, id).await["state"], "failed");
        // The cart stays, to try again.
        let cart = self.shop.cart(&self.ann).await;
        assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    }

    /// Confirmed once, charged once.
    async fn confirmed_once(&self, id: &str) {
        let o = self
            .shop
            .settled(&self.ann, id, Duration::from_secs(15))
            .await;
        assert_eq!(o["state"], "confirmed", "{o}");
        assert_eq!(self.shop.movements(&self.ann, "charge").await, 1);
        assert_eq!(self.shop.movements(&self.ann, "refund").await, 0);
        assert_eq!(self.shop.balance(&self.ann).await, BALANCE - COST);
        assert_eq!(self.shop.stock("POT-1").await, (1, 0, 1));
    }

    async fn finish(self) {
        self.shop.finish().await;
    }
}

/// Refused in `detail`'s words; once every service answers again, the
/// compensations finish and nothing was sold or charged.
async fn refused_then_undone(f: Faulty, detail: &str) {
    let id = f.refused_unavailable(f.checkout().await, detail).await;
    // The release (in case a hold did happen) waits for inventory.
    f.inventory.set_mode(Mode::Forward);
    f.as_it_started(&id, 0).await;
    f.finish().await;
}

const INVENTORY_DOWN: &str = "Inventory is not answering; nothing was charged, try again";
const PRICING_DOWN: &str = "Pricing is not answering; nothing was charged, try again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_with_users_stopped_names_the_sign_in_service() {
    let mut f = Faulty::empty_cart(&[]).await;
    // Orders has checked ann's token (it holds users' keys) but has not
    // needed a token of its own yet.
    assert_eq!(f.shop.cart(&f.ann).await["items"], serde_json::json!([]));
    f.shop.stop_users().await;
    f.shop.add(&f.ann, "POT-1", 1).await;
    let res = f.checkout().await;
    f.refused_unavailable(
        res,
        "The sign-in service (users) is not answering; nothing was charged, try again",
    )
    .await;
    assert_eq!(f.shop.stock("POT-1").await, (2, 0, 2), "nothing held");
    assert_eq!(f.shop.movements(&f.ann, "charge").await, 0);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_with_inventory_broken() {
    let f = Faulty::start(&[]).await;
    f.inventory.set_mode(Mode::Fail);
    refused_then_undone(f, INVENTORY_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_with_inventory_silent() {
    let f = Faulty::start(&[]).await;
    f.inventory.set_mode(Mode::Blackhole);
    refused_then_undone(f, INVENTORY_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_with_pricing_broken_releases_the_hold() {
    let f = Faulty::start(&[]).await;
    f.pricing.set_mode(Mode::Fail);
    refused_then_undone(f, PRICING_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_with_pricing_slow_releases_the_hold() {
    let f = Faulty::start(&[]).await;
    // Slower than the 300 ms each attempt may take.
    f.pricing.set_delay(Duration::from_millis(800));
    refused_then_undone(f, PRICING_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_with_pricing_stopped_releases_the_hold() {
    let mut f = Faulty::start(&[]).await;
    f.shop.stop_pricing().await;
    refused_then_undone(f, PRICING_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_with_payments_broken_waits_for_payments() {
    let f = Faulty::start(&[]).await;
    f.payments.set_mode(Mode::Fail);
    let id = f.pending(f.checkout().await).await;
    // A 500 may follow a charge made: nothing is undone on a guess.
    assert_eq!(f.shop.stock("POT-1").await, (2, 1, 1), "still held");
    assert_eq!(f.shop.balance(&f.ann).await, BALANCE);
    f.shop
        .metric("orders_pending 1", Duration::from_secs(5))
        .await;
    f.payments.set_mode(Mode::Forward);
    f.confirmed_once(&id).await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_with_payments_broken_past_the_hold_is_refunded() {
    let f = Faulty::start(&[("HOLD_TTL_SECS", "1")]).await;
    f.payments.set_mode(Mode::Fail);
    let id = f.pending(f.checkout().await).await;
    // The hold runs out (inventory's sweeper gives the teapot back).
    let given_back = std::time::Instant::now() + Duration::from_secs(5);
    while f.shop.stock("POT-1").await != (2, 0, 2) {
        assert!(
            std::time::Instant::now() < given_back,
            "the hold never ran out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Payments is back: the charge goes through with its key, the commit
    // is refused (the stock went back on sale), the charge is refunded.
    f.payments.set_mode(Mode::Forward);
    let o = f.shop.settled(&f.ann, &id, Duration::from_secs(15)).await;
    assert_eq!(o["reason"], "hold_expired", "{o}");
    assert!(
        o["message"]
            .as_str()
            .unwrap()
            .contains("the 36.00 EUR charged are refunded"),
        "{o}"
    );
    f.as_it_started(&id, 1).await;
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_with_inventory_broken_waits_for_inventory() {
    let f = Faulty::start(&[]).await;
    let inventory = f.inventory.clone();
    // Inventory breaks the moment payments has answered the charge.
    f.payments
        .on_response(move || inventory.set_mode(Mode::Fail));
    let id = f.pending(f.checkout().await).await;
    assert_eq!(f.shop.movements(&f.ann, "charge").await, 1);
    assert_eq!(f.shop.stock("POT-1").await, (2, 1, 1), "held, not sold");
    f.payments.on_response(|| {});
    f.inventory.set_mode(Mode::Forward);
    f.confirmed_once(&id).await;
    f.finish().await;
}
