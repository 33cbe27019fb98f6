//! `spawn_app`: a real users service on port 0 with a fresh database
//! (SQLite in a temp dir or a new PostgreSQL database) and its own key.

#![allow(dead_code)]

use kit::config::Map;
pub use kit::testing::Backend;
use kit::testing::{Running, TestDb};
use serde_json::{json, Value};
use users::{Application, Config};

pub struct TestApp {
    pub server: Running,
    pub client: reqwest::Client,
    pub data_dir: tempfile::TempDir,
    _db: TestDb,
}

/// Cheap hashing for the suite (the parameters are configuration; the
/// production cost is measured by bench/services.sh).
pub const FAST_HASH: [(&str, &str); 2] = [
    ("PASSWORD_HASH_MEMORY_KIB", "256"),
    ("PASSWORD_HASH_ITERATIONS", "1"),
];

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    spawn_in(backend, data_dir, extra).await
}

/// With a given DATA_DIR (where the generated signing key lives), to
/// restart a service with the same key.
pub async fn spawn_in(
    backend: Backend,
    data_dir: tempfile::TempDir,
    extra: &[(&str, &str)],
) -> TestApp {
    let db = TestDb::new(backend, "users").await;
    let dir = data_dir.path().to_str().unwrap().to_owned();
    let mut map = Map::new([
        ("DATABASE_URL", db.url.as_str()),
        ("DATA_DIR", dir.as_str()),
        ("LOG_LEVEL", "warn"),
    ]);
    for (k, v) in FAST_HASH.iter().chain(extra) {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = Config::from_source(&map).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(config, listener)
        .await
        .unwrap();
    let server = Running::start(app.port(), |stop| app.run(stop));
    TestApp {
        server,
        client: reqwest::Client::new(),
        data_dir,
        _db: db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Value {
        let res = self
            .post("/users", &json!({"email": email, "password": password}))
            .await;
        assert_eq!(res.status(), 201, "signing up {email}");
        res.json().await.unwrap()
    }

    /// The access token, asserting the login succeeds.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let res = self
            .post("/tokens", &json!({"email": email, "password": password}))
            .await;
        assert_eq!(res.status(), 200, "logging in {email}");
        let v: Value = res.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}
