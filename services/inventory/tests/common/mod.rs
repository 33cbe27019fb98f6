//! `spawn_app`: a real inventory on port 0 with a fresh database (SQLite in
//! a temp dir or a new PostgreSQL database, kit::testing::TestDb) and a
//! token issuer standing in for the users service. `client` sends an
//! admin's token with every request; `anonymous` sends none.

#![allow(dead_code)]

use inventory::{Application, Config};
use kit::config::Map;
pub use kit::testing::Backend;
use kit::testing::{Issuer, Running, TestDb};
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    /// Sends `Authorization: Bearer <an admin's token>`.
    pub client: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub issuer: Issuer,
    server: Running,
    _db: TestDb,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new(backend, "inventory").await;
    let issuer = Issuer::start().await;
    let mut map = Map::new([
        ("DATABASE_URL", db.url.as_str()),
        ("USERS_JWKS_URL", issuer.jwks_url.as_str()),
        ("LOG_LEVEL", "warn"),
    ]);
    for (k, v) in extra {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = Config::from_source(&map).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(config, listener)
        .await
        .unwrap();
    let server = Running::start(app.port(), |stop| app.run(stop));
    TestApp {
        base: server.base.clone(),
        client: client_as(&issuer.token("admin-1", &["admin"])),
        anonymous: reqwest::Client::new(),
        issuer,
        server,
        _db: db,
    }
}

pub use kit::testing::client_as;

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn create(&self, id: &str, price: i64, quantity: i64) -> Value {
        let res = self
            .post(
                "/products",
                &json!({"id": id, "name": format!("Product {id}"), "unit_price_minor": price,
                        "currency": "EUR", "quantity": quantity}),
            )
            .await;
        assert_eq!(res.status(), 201, "creating {id}");
        res.json().await.unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}
