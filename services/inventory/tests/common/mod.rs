//! `spawn_app`: a real inventory on port 0 with a fresh database, SQLite in
//! a temp dir or a new PostgreSQL database that is dropped afterwards.

#![allow(dead_code)]

use inventory::{Application, Config};
use kit::config::Map;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server the test setup script starts; overridable for other setups.
pub fn pg_admin_url() -> String {
    std::env::var("ESHOP_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://eshop_test:eshop_test@127.0.0.1:5432/postgres".into())
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    _db: DbGuard,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

enum DbGuard {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let DbGuard::Postgres { admin, name } = self {
            // Drop runs outside async context (or during a panic): use a
            // private runtime on a plain thread so cleanup always happens.
            let (admin, name) = (admin.clone(), name.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut c)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let (url, guard) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
            (url, DbGuard::Sqlite(dir))
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let admin = pg_admin_url();
            let name = format!("eshop_test_{:016x}", rand::random::<u64>());
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL at ESHOP_TEST_PG_URL is not reachable ({e}); run scripts/test-setup.sh")
            });
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut c)
                .await
                .unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), DbGuard::Postgres { admin, name })
        }
    };
    let mut map = Map::new([("DATABASE_URL", url.as_str()), ("LOG_LEVEL", "warn")]);
    for (k, v) in extra {
        map.0.insert((*k).into(), (*v).into());
    }
    let config = Config::from_source(&map).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = Application::build_with_listener(config, listener)
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::new(),
        _db: guard,
        stop: Some(tx),
        handle: Some(handle),
    }
}

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
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Runs each listed `async fn(Backend)` once on SQLite and once on
/// PostgreSQL, so both backends pass the very same suite.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::common::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::common::Backend::Postgres).await }
            )*
        }
    };
}
