//! The whole shop in this process, each service real and on port 0 with
//! a fresh database: users (with an `orders` service client and an
//! admin), inventory with a small catalogue, pricing, payments, and
//! orders on the backend under test (the others on SQLite). Orders can be
//! stopped and started again on the same database, payments on the same
//! port; `proxy.rs` puts faults between orders and a service.

#![allow(dead_code)]

pub mod proxy;

use kit::config::Map;
pub use kit::testing::Backend;
use kit::testing::{client_as, Running, ShutdownSignal, TestDb};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";
const ADMIN: &str = "admin@shop.test";
const SECRET: &str = "the orders service's secret, long enough to pass";

/// (id, name, unit price in cents, currency, stock)
pub const CATALOGUE: [(&str, &str, i64, &str, i64); 5] = [
    ("TEA-1", "Green tea", 1250, "EUR", 100),
    ("POT-1", "Teapot", 3000, "EUR", 2),
    ("CUP-1", "Cup", 500, "EUR", 10),
    ("WHISK-1", "Matcha whisk", 1200, "EUR", 0),
    ("YEN-1", "Sencha", 1500, "JPY", 50),
];

/// A service of the shop and what it needs to come back on its port.
struct Svc {
    running: Option<Running>,
    addr: SocketAddr,
    db_url: String,
}

impl Svc {
    fn start<F>(addr: SocketAddr, db: &str, run: impl FnOnce(ShutdownSignal) -> F) -> Svc
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        Svc {
            running: Some(Running::start(addr.port(), run)),
            addr,
            db_url: db.to_owned(),
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub struct Shop {
    users: Svc,
    inventory: Svc,
    pricing: Option<Running>,
    pricing_addr: SocketAddr,
    payments: Svc,
    orders: Option<Running>,
    pub orders_url: String,
    orders_db: TestDb,
    /// A second connection to orders' database, for checks.
    pub orders_store: orders::db::Store,
    pub payments_store: payments::db::Store,
    /// Sends an admin's token (inventory's catalogue and stock).
    pub admin: reqwest::Client,
    pub anonymous: reqwest::Client,
    secret_file: std::path::PathBuf,
    _dirs: Vec<tempfile::TempDir>,
    _dbs: Vec<TestDb>,
}

/// A signed-up, logged-in customer.
pub struct Customer {
    pub id: String,
    pub token: String,
    pub client: reqwest::Client,
}

fn map(pairs: &[(&str, &str)]) -> Map {
    let mut m = Map::new([("LOG_LEVEL", "warn")]);
    for (k, v) in pairs {
        m.0.insert((*k).into(), (*v).into());
    }
    m
}

async fn listener(addr: &str) -> (tokio::net::TcpListener, SocketAddr) {
    let l = kit::server::bind(addr.parse().unwrap()).await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn start_users(dir: &std::path::Path, clients: &std::path::Path, db: &str) -> Svc {
    let (l, addr) = listener("127.0.0.1:0").await;
    let config = users::Config::from_source(&map(&[
        ("DATABASE_URL", db),
        ("DATA_DIR", dir.to_str().unwrap()),
        ("SERVICE_CLIENTS_DIR", clients.to_str().unwrap()),
        ("ADMIN_EMAILS", ADMIN),
        ("PASSWORD_HASH_MEMORY_KIB", "256"),
        ("PASSWORD_HASH_ITERATIONS", "1"),
        ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "100000"),
    ]))
    .unwrap();
    let app = users::Application::build_with_listener(config, l)
        .await
        .unwrap();
    Svc::start(addr, db, |stop| app.run(stop))
}

async fn start_inventory(db: &str, users: &str, addr: &str) -> Svc {
    let (l, addr) = listener(addr).await;
    let config = inventory::Config::from_source(&map(&[
        ("DATABASE_URL", db),
        ("USERS_URL", users),
        ("RESERVATION_SWEEP_INTERVAL_MS", "100"),
    ]))
    .unwrap();
    let app = inventory::Application::build_with_listener(config, l)
        .await
        .unwrap();
    Svc::start(addr, db, |stop| app.run(stop))
}

async fn start_payments(db: &str, users: &str, addr: &str) -> Svc {
    let (l, addr) = listener(addr).await;
    let config =
        payments::Config::from_source(&map(&[("DATABASE_URL", db), ("USERS_URL", users)])).unwrap();
    let app = payments::Application::build_with_listener(config, l)
        .await
        .unwrap();
    Svc::start(addr, db, |stop| app.run(stop))
}

async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    c.post(url).json(body).send().await.unwrap()
}

impl Shop {
    /// Every service but orders (see [`Shop::start_orders`]).
    pub async fn services(backend: Backend) -> Shop {
        let (data, clients) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(clients.path().join("orders"), SECRET).unwrap();
        let secret_file = data.path().join("orders-secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let users_db = TestDb::new(Backend::Sqlite, "users").await;
        let users = start_users(data.path(), clients.path(), &users_db.url).await;
        let users_url = users.base();
        let inv_db = TestDb::new(Backend::Sqlite, "inventory").await;
        let inventory = start_inventory(&inv_db.url, &users_url, "127.0.0.1:0").await;
        let pay_db = TestDb::new(Backend::Sqlite, "payments").await;
        let payments = start_payments(&pay_db.url, &users_url, "127.0.0.1:0").await;
        let (l, addr) = listener("127.0.0.1:0").await;
        let pricing_config = pricing::Config::from_source(&map(&[
            ("INVENTORY_URL", &inventory.base()),
            ("TAX_RATE_PERCENT", "20"),
            ("DISCOUNT_TIERS", "10:5,100:10"),
        ]))
        .unwrap();
        let app = pricing::Application::build_with_listener(pricing_config, l);
        let pricing = Running::start(addr.port(), |stop| app.run(stop));
        let orders_db = TestDb::new(backend, "orders").await;
        let orders_config = kit::db::DbConfig::from_source(
            &kit::config::Reader::new(&map(&[("DATABASE_URL", &orders_db.url)])),
            "orders",
        )
        .unwrap();
        let orders_store = orders::db::Store::connect(&orders_config).await.unwrap();
        let pay_config = payments::Config::from_source(&map(&[
            ("DATABASE_URL", &pay_db.url),
            ("USERS_URL", &users_url),
        ]))
        .unwrap();
        let payments_store =
            payments::db::Store::connect(&pay_config.db, pay_config.statement_timeout)
                .await
                .unwrap();
        let anonymous = reqwest::Client::new();
        let admin = Self::sign_in(&anonymous, &users_url, ADMIN).await;
        let shop = Shop {
            users,
            inventory,
            pricing: Some(pricing),
            pricing_addr: addr,
            payments,
            orders: None,
            orders_url: String::new(),
            orders_db,
            orders_store,
            payments_store,
            admin: client_as(&admin.1),
            anonymous,
            secret_file,
            _dirs: vec![data, clients],
            _dbs: vec![users_db, inv_db, pay_db],
        };
        for (id, name, price, currency, quantity) in CATALOGUE {
            let res = post_json(
                &shop.admin,
                &format!("{}/products", shop.inventory_url()),
                &json!({"id": id, "name": name, "unit_price_minor": price,
                        "currency": currency, "quantity": quantity}),
            )
            .await;
            assert_eq!(res.status(), 201, "creating {id}");
        }
        shop
    }

    /// The whole shop, orders talking to the services directly.
    pub async fn start(backend: Backend) -> Shop {
        let mut shop = Self::services(backend).await;
        shop.start_orders(&[]).await;
        shop
    }

    pub fn inventory_url(&self) -> String {
        self.inventory.base()
    }

    pub fn payments_url(&self) -> String {
        self.payments.base()
    }

    pub fn inventory_addr(&self) -> SocketAddr {
        self.inventory.addr
    }

    pub fn pricing_addr(&self) -> SocketAddr {
        self.pricing_addr
    }

    pub fn payments_addr(&self) -> SocketAddr {
        self.payments.addr
    }

    /// Orders' settings: its database, the services, short intervals;
    /// `extra` overrides them (the services' URLs, to put a proxy in
    /// between).
    fn orders_settings(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = [
            ("DATABASE_URL", self.orders_db.url.clone()),
            ("USERS_URL", self.users.base()),
            (
                "SERVICE_SECRET_FILE",
                self.secret_file.display().to_string(),
            ),
            ("INVENTORY_URL", self.inventory.base()),
            ("PRICING_URL", format!("http://{}", self.pricing_addr)),
            ("PAYMENTS_URL", self.payments.base()),
            ("RECOVERY_INTERVAL_MS", "200".into()),
            ("UPSTREAM_TIMEOUT_MS", "1000".into()),
            ("CHECKOUT_DEADLINE_MS", "4000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).to_owned(), (*v).to_owned()));
        }
        pairs
    }

    /// Orders in this process, on its database.
    pub async fn start_orders(&mut self, extra: &[(&str, &str)]) {
        assert!(self.orders.is_none(), "orders is running already");
        let pairs = self.orders_settings(extra);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let config = orders::Config::from_source(&map(&pairs)).unwrap();
        let (l, addr) = listener("127.0.0.1:0").await;
        let app = orders::Application::build_with_listener(config, l)
            .await
            .unwrap();
        self.orders_url = format!("http://{addr}");
        self.orders = Some(Running::start(addr.port(), |stop| app.run(stop)));
    }

    /// Orders as its own process (the built `orders` binary), on its
    /// database, ready; for killing it with SIGKILL. Killed on drop.
    pub async fn spawn_orders(&mut self, extra: &[(&str, &str)]) -> tokio::process::Child {
        assert!(self.orders.is_none(), "orders is running in this process");
        // A free port, given to the child (nothing else here binds one).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders"));
        cmd.env_clear()
            .envs(self.orders_settings(extra))
            .env("LISTEN_ADDR", &addr)
            .env("LOG_LEVEL", "error")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("starting the orders binary");
        self.orders_url = format!("http://{addr}");
        let ready = Instant::now() + Duration::from_secs(10);
        loop {
            let res = self.anonymous.get(self.url("/readyz")).send().await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return child;
            }
            assert!(
                Instant::now() < ready,
                "orders did not become ready on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop_orders(&mut self) {
        if let Some(o) = self.orders.take() {
            o.stop().await;
        }
    }

    /// Payments goes away: its port refuses connections.
    pub async fn stop_payments(&mut self) {
        if let Some(p) = self.payments.running.take() {
            p.stop().await;
        }
    }

    /// Pricing goes away: its port refuses connections.
    pub async fn stop_pricing(&mut self) {
        if let Some(p) = self.pricing.take() {
            p.stop().await;
        }
    }

    /// Users goes away (sign-in, and the shop's own service tokens).
    pub async fn stop_users(&mut self) {
        if let Some(u) = self.users.running.take() {
            u.stop().await;
        }
    }

    /// Payments back on its port, with its database.
    pub async fn restart_payments(&mut self) {
        assert!(self.payments.running.is_none());
        let url = self.payments.db_url.clone();
        let addr = self.payments.addr.to_string();
        self.payments = start_payments(&url, &self.users.base(), &addr).await;
    }

    async fn sign_in(c: &reqwest::Client, users: &str, email: &str) -> (String, String) {
        let creds = json!({"email": email, "password": PASSWORD});
        let res = post_json(c, &format!("{users}/users"), &creds).await;
        assert_eq!(res.status(), 201, "signing up {email}");
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = post_json(c, &format!("{users}/tokens"), &creds).await;
        assert_eq!(res.status(), 200, "logging in {email}");
        let token = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }

    /// A new customer, signed in.
    pub async fn customer(&self, name: &str) -> Customer {
        let email = format!("{name}-{:08x}@shop.test", rand::random::<u32>());
        let (id, token) = Self::sign_in(&self.anonymous, &self.users.base(), &email).await;
        Customer {
            id,
            client: client_as(&token),
            token,
        }
    }

    /// A customer with `amount` cents of EUR in their wallet.
    pub async fn customer_with(&self, name: &str, amount: i64) -> Customer {
        let c = self.customer(name).await;
        let res = c
            .client
            .post(format!("{}/wallets/{}/top-ups", self.payments_url(), c.id))
            .header("Idempotency-Key", new_key())
            .json(&json!({"amount_minor": amount, "currency": "EUR"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "topping up {name}");
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.orders_url)
    }

    pub async fn put_item(&self, c: &Customer, product: &str, quantity: i64) -> reqwest::Response {
        c.client
            .put(self.url(&format!("/cart/items/{product}")))
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .unwrap()
    }

    /// Puts a line, asserting success.
    pub async fn add(&self, c: &Customer, product: &str, quantity: i64) {
        let res = self.put_item(c, product, quantity).await;
        assert!(
            res.status().is_success(),
            "adding {product}: {}",
            res.status()
        );
    }

    pub async fn cart(&self, c: &Customer) -> Value {
        let res = c.client.get(self.url("/cart")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn checkout(&self, c: &Customer, key: &str) -> reqwest::Response {
        c.client
            .post(self.url("/checkouts"))
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap()
    }

    pub async fn order(&self, c: &Customer, id: &str) -> Value {
        let res = c
            .client
            .get(self.url(&format!("/orders/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "reading order {id}");
        res.json().await.unwrap()
    }

    /// The first page of the customer's orders.
    pub async fn orders(&self, c: &Customer) -> Value {
        let res = c.client.get(self.url("/orders")).send().await.unwrap();
        assert_eq!(res.status(), 200, "listing orders");
        res.json().await.unwrap()
    }

    /// Polls the order until it is no longer pending, or panics.
    pub async fn settled(&self, c: &Customer, id: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            let o = self.order(c, id).await;
            if o["state"] != "pending" {
                return o;
            }
            assert!(Instant::now() < end, "order {id} still pending: {o}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Until the order's saga is done (compensation included), or panics.
    pub async fn saga_done(&self, id: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let step: String = sqlx::query_scalar("SELECT step FROM orders WHERE id = $1")
                .bind(id)
                .fetch_one(self.orders_store.pool())
                .await
                .unwrap();
            if step == "done" {
                return;
            }
            assert!(Instant::now() < end, "order {id} is still at {step}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `{quantity, held, available}` of a product.
    pub async fn stock(&self, product: &str) -> (i64, i64, i64) {
        let v: Value = self
            .anonymous
            .get(format!(
                "{}/products/{product}/quantity",
                self.inventory_url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = |k: &str| v[k].as_i64().unwrap();
        (n("quantity"), n("held"), n("available"))
    }

    pub async fn balance(&self, c: &Customer) -> i64 {
        let v: Value = c
            .client
            .get(format!("{}/wallets/{}", self.payments_url(), c.id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["balance_minor"].as_i64().unwrap()
    }

    /// Movements of `kind` on the customer's wallet.
    pub async fn movements(&self, c: &Customer, kind: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM movements WHERE kind = $1 AND user_id = $2")
            .bind(kind)
            .bind(&c.id)
            .fetch_one(self.payments_store.pool())
            .await
            .unwrap()
    }

    /// Polls /metrics until it has `line`, or panics.
    pub async fn metric(&self, line: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let m = self.metrics().await;
            if m.lines().any(|l| l == line) {
                return;
            }
            assert!(Instant::now() < end, "no {line:?} in\n{m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        self.anonymous
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asserts the payments ledger balances, then stops everything: every
    /// test ends here.
    pub async fn finish(mut self) {
        let check = self.payments_store.ledger_check().await.unwrap();
        assert!(check.is_balanced(), "the ledger is not balanced: {check:?}");
        self.stop_orders().await;
        self.orders_store.close().await;
        self.payments_store.close().await;
        for svc in [&mut self.payments, &mut self.inventory, &mut self.users] {
            if let Some(r) = svc.running.take() {
                r.stop().await;
            }
        }
        if let Some(p) = self.pricing.take() {
            p.stop().await;
        }
    }
}

pub fn new_key() -> String {
    format!("k-{:032x}", rand::random::<u128>())
}

/// The body of a problem+json answer, asserting its content type.
pub async fn problem(res: reqwest::Response) -> Value {
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "status {}",
        res.status()
    );
    res.json().await.unwrap()
}
