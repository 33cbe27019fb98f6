//! `spawn_app`: a real payments service on port 0 with a fresh database
//! (SQLite in a temp dir or a new PostgreSQL database), trusting a key
//! whose public half a tiny JWKS server in the test publishes, as the
//! users service would; tests sign their own tokens with it.

#![allow(dead_code)]

use kit::config::Map;
pub use kit::testing::Backend;
use kit::testing::{Running, TestDb};
use payments::db::Store;
use payments::{Application, Config};
use serde_json::{json, Value};
use std::sync::Arc;

/// The signing key tests mint tokens with (tokens valid 10 minutes), and
/// where its JWKS is served: kit's stand-in for the users service.
pub use kit::testing::Issuer;

pub struct TestApp {
    pub server: Running,
    pub client: reqwest::Client,
    pub issuer: Arc<Issuer>,
    /// A second connection to the service's database, for checks.
    pub store: Store,
    pub db_url: String,
    _db: Option<TestDb>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new(backend, "payments").await;
    let url = db.url.clone();
    spawn_on(&url, Some(db), extra).await
}

/// On a given database (`db` is kept to drop it with the app).
pub async fn spawn_on(url: &str, db: Option<TestDb>, extra: &[(&str, &str)]) -> TestApp {
    let issuer = Arc::new(Issuer::start().await);
    let mut map = Map::new([
        ("DATABASE_URL", url),
        ("USERS_JWKS_URL", issuer.jwks_url.as_str()),
        ("LOG_LEVEL", "warn"),
    ]);
    for (k, v) in extra {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = Config::from_source(&map).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(config.clone(), listener)
        .await
        .unwrap();
    let server = Running::start(app.port(), |stop| app.run(stop));
    let store = Store::connect(&config.db, config.statement_timeout)
        .await
        .unwrap();
    TestApp {
        server,
        client: reqwest::Client::new(),
        issuer,
        store,
        db_url: url.to_owned(),
        _db: db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        self.issuer.token(sub, roles)
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POST with a token and, if given, an Idempotency-Key.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.unwrap()
    }

    /// A top-up by the owner with a fresh key; asserts 201.
    pub async fn top_up(&self, user: &str, amount: i64, currency: &str) -> Value {
        let res = self
            .post(
                &format!("/wallets/{user}/top-ups"),
                &self.token(user, &[]),
                Some(&new_key()),
                &json!({"amount_minor": amount, "currency": currency}),
            )
            .await;
        assert_eq!(res.status(), 201, "topping up {user}");
        res.json().await.unwrap()
    }

    /// A charge by the shop (role service) with `key`.
    pub async fn charge(&self, user: &str, key: &str, amount: i64) -> reqwest::Response {
        self.post(
            &format!("/wallets/{user}/charges"),
            &self.token("shop", &["service"]),
            Some(key),
            &json!({"amount_minor": amount, "currency": "EUR", "reference": "order-1"}),
        )
        .await
    }

    pub async fn balance(&self, user: &str) -> i64 {
        let res = self
            .get(&format!("/wallets/{user}"), &self.token(user, &[]))
            .await;
        assert_eq!(res.status(), 200, "reading {user}'s wallet");
        let w: Value = res.json().await.unwrap();
        w["balance_minor"].as_i64().unwrap()
    }

    /// How many movements of `kind` the ledger holds.
    pub async fn count(&self, kind: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM movements WHERE kind = $1")
            .bind(kind)
            .fetch_one(self.pool())
            .await
            .unwrap()
    }

    fn pool(&self) -> &sqlx::AnyPool {
        self.store.pool()
    }

    /// Asserts the ledger is balanced, then stops the service: every test
    /// ends here.
    pub async fn finish(self) {
        let check = self.store.ledger_check().await.unwrap();
        assert!(check.is_balanced(), "the ledger is not balanced: {check:?}");
        self.store.close().await;
        self.server.stop().await;
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
