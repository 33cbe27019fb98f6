//! The inventory service: products, their stock and their prices.

pub mod api;
pub mod cache;
pub mod db;
pub mod error;
pub mod model;
pub mod openapi;
pub mod reservation;
pub mod stock_metrics;

use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    /// OTLP trace export; None when no endpoint is configured.
    pub otlp: Option<kit::otlp::OtlpConfig>,
    /// `sqlite://…` (default, a file under DATA_DIR) or `postgres://…`.
    pub database_url: String,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// Read cache size on SQLite (0 = off); ignored on PostgreSQL.
    pub cache_entries: usize,
    /// At or below this many units a product counts as low on stock.
    pub low_stock: i64,
    pub stock_metrics_interval: Duration,
    /// How often expired holds are given back to the stock.
    pub reservation_sweep_interval: Duration,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "inventory")?;
        // DATABASE_URL_FILE: the URL from a file (a mounted Kubernetes
        // Secret), so the password is in no environment a `ps e` shows.
        let from_file = match r.raw("DATABASE_URL_FILE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end().to_owned())
                    .map_err(|e| ConfigError::new("DATABASE_URL_FILE", &path, e))?,
            ),
            None => None,
        };
        let database_url = match from_file.or_else(|| r.raw("DATABASE_URL")) {
            Some(url) => {
                if db::Backend::from_url(&url).is_none() {
                    // Never echo the URL: it may carry a password.
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        "<redacted>",
                        "must start with sqlite: or postgres:",
                    ));
                }
                url
            }
            None => {
                let dir = r.string_or("DATA_DIR", "./data");
                format!(
                    "sqlite://{}/inventory.db?mode=rwc",
                    dir.trim_end_matches('/')
                )
            }
        };
        Ok(Self {
            common,
            otlp,
            database_url,
            db_max_connections: r.int_in("DB_MAX_CONNECTIONS", 8, 1..=256)? as u32,
            db_acquire_timeout: Duration::from_millis(r.int_in(
                "DB_ACQUIRE_TIMEOUT_MS",
                3_000,
                10..=60_000,
            )?),
            cache_entries: r.int_in("CACHE_ENTRIES", 10_000, 0..=10_000_000)? as usize,
            low_stock: r.int_in("LOW_STOCK_THRESHOLD", 5, 0..=1_000_000)? as i64,
            stock_metrics_interval: Duration::from_millis(r.int_in(
                "STOCK_METRICS_INTERVAL_MS",
                5_000,
                100..=3_600_000,
            )?),
            reservation_sweep_interval: Duration::from_millis(r.int_in(
                "RESERVATION_SWEEP_INTERVAL_MS",
                1_000,
                10..=3_600_000,
            )?),
        })
    }
}

/// A built, listening inventory: the database is open and migrated, the
/// port is bound (so tests can bind port 0 and read it back).
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    store: db::Store,
    drain: Duration,
    limits: kit::server::Limits,
    stock: stock_metrics::StockMetrics,
    low_stock: i64,
    stock_interval: Duration,
    sweep_interval: Duration,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = kit::server::bind(config.common.listen_addr).await?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        if let Some(path) = sqlite_dir(&config.database_url) {
            std::fs::create_dir_all(&path)
                .map_err(|e| anyhow::anyhow!("cannot create data directory {path}: {e}"))?;
        }
        let store = db::Store::connect(
            &config.database_url,
            config.db_max_connections,
            config.db_acquire_timeout,
            config.cache_entries,
        )
        .await?;
        let ready_store = store.clone();
        let readiness: kit::health::Readiness = Arc::new(move || {
            let s = ready_store.clone();
            Box::pin(async move {
                match tokio::time::timeout(Duration::from_secs(1), s.ping()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err("database query failed".to_owned()),
                    Err(_) => Err("database did not answer within 1s".to_owned()),
                }
            })
        });
        let stock = stock_metrics::StockMetrics::default();
        let mut app = kit::server::App::new(api::routes(store.clone()));
        stock.register(app.metrics_mut(), store.hold_outcomes());
        let router = app
            .tracer(config.otlp.map(kit::otlp::Tracer::start))
            .readiness(readiness)
            .openapi(openapi::document())
            .into_router();
        Ok(Self {
            listener,
            router,
            store,
            drain: config.common.shutdown_timeout,
            limits: config.common.http,
            stock,
            low_stock: config.low_stock,
            stock_interval: config.stock_metrics_interval,
            sweep_interval: config.reservation_sweep_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> &db::Store {
        &self.store
    }

    /// Serves until `shutdown`, drains, then closes the database cleanly
    /// (SQLite checkpoints its WAL on the last close).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(%addr, backend = ?self.store.backend(), "inventory listening");
        }
        let refresher = self
            .stock
            .spawn(self.store.clone(), self.low_stock, self.stock_interval);
        let sweeper = db::spawn_sweeper(self.store.clone(), self.sweep_interval);
        let res = kit::server::serve_with(
            self.listener,
            self.router,
            shutdown,
            self.drain,
            self.limits,
        )
        .await;
        refresher.abort();
        sweeper.abort();
        // Wait for the abort, so no sweep holds a connection while the
        // pool closes.
        let _ = sweeper.await;
        self.store.close().await;
        res
    }
}

/// `run(listener, shutdown)` in one call, as every eshop service offers.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Application::build_with_listener(config, listener)
        .await?
        .run(shutdown)
        .await?;
    Ok(())
}

/// The directory a `sqlite://DIR/file.db` URL lives in, to create it first.
fn sqlite_dir(url: &str) -> Option<String> {
    let path = url.strip_prefix("sqlite://")?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let dir = std::path::Path::new(path).parent()?;
    let s = dir.to_string_lossy().into_owned();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Map;

    #[test]
    fn database_url_file_wins_over_the_variable_and_is_never_echoed() {
        let dir = std::env::temp_dir().join(format!("inventory-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("database-url");
        std::fs::write(&file, "postgres://u:s3cret@db/inventory\n").unwrap();
        let path = file.to_str().unwrap();
        let c = Config::from_source(&Map::new([
            ("DATABASE_URL_FILE", path),
            ("DATABASE_URL", "sqlite://x.db"),
        ]))
        .unwrap();
        assert_eq!(c.database_url, "postgres://u:s3cret@db/inventory");
        std::fs::write(&file, "mysql://u:s3cret@db/x").unwrap();
        let e = Config::from_source(&Map::new([("DATABASE_URL_FILE", path)])).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let missing = dir.join("absent");
        let e = Config::from_source(&Map::new([(
            "DATABASE_URL_FILE",
            missing.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL_FILE"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
