//! The whole shop in the test process: real users, inventory, pricing,
//! payments, orders and the storefront, each on port 0 with its own SQLite files,
//! tokens checked against the real users service's keys. And `Browser`, a
//! client that keeps cookies and reads forms as a browser would, for the
//! tests that do not need a real one.

#![allow(dead_code)]

use kit::config::Map;
use kit::testing::Running;
use serde_json::{json, Value};
use std::collections::HashMap;

pub const ADMIN: &str = "admin@shop.test";
pub const PASSWORD: &str = "correct horse battery";
const ORDERS_SECRET: &str = "the orders service's client secret, long enough";

pub struct Shop {
    pub users: Running,
    pub inventory: Running,
    pub pricing: Running,
    pub payments: Running,
    pub orders: Running,
    pub storefront: Running,
    pub admin_token: String,
    _data: tempfile::TempDir,
}

/// A service's settings: its own data directory, `everyone`'s, its own.
fn config(
    data: &std::path::Path,
    everyone: &[(&str, &str)],
    name: &str,
    extra: &[(&str, &str)],
) -> Map {
    let dir = data.join(name);
    let mut m = Map::new([
        ("DATA_DIR", dir.to_str().unwrap()),
        ("LOG_LEVEL", "warn"),
        // Cheap hashing for the suite; the cost is configuration.
        ("PASSWORD_HASH_MEMORY_KIB", "256"),
        ("PASSWORD_HASH_ITERATIONS", "1"),
    ]);
    for (k, v) in everyone.iter().chain(extra) {
        m.0.insert((*k).into(), (*v).into());
    }
    m
}

async fn listener() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

pub async fn start() -> Shop {
    start_with(&[]).await
}

/// With `everyone` set for every service (e.g. trace export).
pub async fn start_with(everyone: &[(&str, &str)]) -> Shop {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let config = |name: &str, extra: &[(&str, &str)]| config(d, everyone, name, extra);

    // Orders proves itself to users with a client secret.
    let clients = d.join("clients");
    std::fs::create_dir_all(&clients).unwrap();
    std::fs::write(clients.join("orders"), ORDERS_SECRET).unwrap();
    let orders_secret = d.join("orders-secret");
    std::fs::write(&orders_secret, ORDERS_SECRET).unwrap();

    let (l, port) = listener().await;
    let c = users::Config::from_source(&config(
        "users",
        &[
            ("ADMIN_EMAILS", ADMIN),
            ("SERVICE_CLIENTS_DIR", clients.to_str().unwrap()),
        ],
    ))
    .unwrap();
    let app = users::Application::build_with_listener(c, l).await.unwrap();
    let users = Running::start(port, |stop| app.run(stop));
    let users_url = users.base.clone();

    let (l, port) = listener().await;
    let c =
        inventory::Config::from_source(&config("inventory", &[("USERS_URL", &users_url)])).unwrap();
    let app = inventory::Application::build_with_listener(c, l)
        .await
        .unwrap();
    let inventory = Running::start(port, |stop| app.run(stop));

    let (l, port) = listener().await;
    let c = pricing::Config::from_source(&config("pricing", &[("INVENTORY_URL", &inventory.base)]))
        .unwrap();
    let app = pricing::Application::build_with_listener(c, l);
    let pricing = Running::start(port, |stop| app.run(stop));

    let (l, port) = listener().await;
    let c =
        payments::Config::from_source(&config("payments", &[("USERS_URL", &users_url)])).unwrap();
    let app = payments::Application::build_with_listener(c, l)
        .await
        .unwrap();
    let payments = Running::start(port, |stop| app.run(stop));

    let (l, port) = listener().await;
    let c = orders::Config::from_source(&config(
        "orders",
        &[
            ("USERS_URL", &users_url),
            ("INVENTORY_URL", &inventory.base),
            ("PRICING_URL", &pricing.base),
            ("PAYMENTS_URL", &payments.base),
            ("SERVICE_SECRET_FILE", orders_secret.to_str().unwrap()),
        ],
    ))
    .unwrap();
    let app = orders::Application::build_with_listener(c, l)
        .await
        .unwrap();
    let orders = Running::start(port, |stop| app.run(stop));

    let extra = [
        ("USERS_URL", users_url.as_str()),
        ("INVENTORY_URL", inventory.base.as_str()),
        ("PRICING_URL", pricing.base.as_str()),
        ("PAYMENTS_URL", payments.base.as_str()),
        ("ORDERS_URL", orders.base.as_str()),
    ];
    let (l, port) = listener().await;
    let c = storefront::Config::from_source(&config("storefront", &extra)).unwrap();
    let app = storefront::Application::build_with_listener(c, l).unwrap();
    let storefront = Running::start(port, |stop| app.run(stop));

    let http = reqwest::Client::new();
    let creds = json!({"email": ADMIN, "password": PASSWORD});
    let res = http
        .post(users.url("/users"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let t: Value = http
        .post(users.url("/tokens"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_token = t["access_token"].as_str().unwrap().to_owned();
    for (id, name, price, qty) in [
        ("SKU-1", "Green tea", 1999, 100),
        ("SKU-2", "Teapot", 4500, 3),
        ("SKU-3", "Tea cup", 900, 0),
        ("SKU-X", "<script>alert('x')</script> & more", 100, 10),
    ] {
        let res = http
            .post(inventory.url("/products"))
            .bearer_auth(&admin_token)
            .json(&json!({"id": id, "name": name, "unit_price_minor": price, "currency": "EUR", "quantity": qty}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{id}");
    }
    Shop {
        users,
        inventory,
        pricing,
        payments,
        orders,
        storefront,
        admin_token,
        _data: data,
    }
}

impl Shop {
    pub async fn stop(self) {
        self.storefront.stop().await;
        self.orders.stop().await;
        self.payments.stop().await;
        self.pricing.stop().await;
        self.inventory.stop().await;
        self.users.stop().await;
    }
}

/// One answer as a browser sees it.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        self.field("csrf")
    }

    /// The `value` of the first input named `name`.
    pub fn field(&self, name: &str) -> String {
        let at = self
            .body
            .find(&format!(r#"name="{name}" value=""#))
            .unwrap_or_else(|| panic!("no field {name} in:\n{}", self.body));
        let rest = &self.body[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// Keeps cookies like a browser; follows no redirects (tests look at them).
pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: HashMap<String, String>,
    /// Raw Set-Cookie lines seen, for the attribute checks.
    pub set_cookies: Vec<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, res: reqwest::Response) -> Page {
        for c in res.headers().get_all("set-cookie") {
            let line = c.to_str().unwrap().to_owned();
            let (kv, attrs) = line.split_once(';').unwrap_or((&line, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
            self.set_cookies.push(line);
        }
        Page {
            status: res.status().as_u16(),
            location: res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(res).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[]).await
    }

    pub async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form.iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        self.read(res).await
    }

    /// Signs up through the form and returns the welcome redirect.
    pub async fn sign_up(&mut self, email: &str) -> Page {
        let form = self.get("/signup").await;
        let csrf = form.csrf();
        self.post(
            "/signup",
            &[("csrf", &csrf), ("email", email), ("password", PASSWORD)],
        )
        .await
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
