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
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    /// OTLP trace export; None when no endpoint is configured.
    pub otlp: Option<kit::otlp::OtlpConfig>,
    /// Where the data lives (kit::db: DATABASE_URL(_FILE), DATA_DIR, …).
    pub db: kit::db::DbConfig,
    /// The users service's public keys, which admin and caller tokens are
    /// checked against: USERS_JWKS_URL, else `$USERS_URL/.well-known/jwks.json`.
    pub jwks_url: String,
    pub audience: String,
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
        let db = kit::db::DbConfig::from_source(&r, "inventory")?;
        let jwks_url = kit::auth::jwks_url(&r)?;
        Ok(Self {
            common,
            otlp,
            db,
            jwks_url,
            audience: r.string_or("TOKEN_AUDIENCE", "eshop"),
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
    bound: kit::server::Bound,
    store: db::Store,
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
        let store = db::Store::connect(&config.db, config.cache_entries).await?;
        let ready_store = store.clone();
        let readiness = kit::health::database(move || {
            let s = ready_store.clone();
            async move { s.ping().await }
        });
        let verifier = kit::auth::Verifier::new(config.jwks_url, config.audience);
        let stock = stock_metrics::StockMetrics::default();
        let mut app =
            kit::server::App::new(api::routes(store.clone()).layer(axum::Extension(verifier)));
        stock.register(app.metrics_mut(), store.hold_outcomes());
        let router = app
            .tracer(config.otlp.map(kit::otlp::Tracer::start))
            .readiness(readiness)
            .openapi(openapi::document())
            .into_router();
        Ok(Self {
            bound: kit::server::Bound::new(listener, router, &config.common),
            store,
            stock,
            low_stock: config.low_stock,
            stock_interval: config.stock_metrics_interval,
            sweep_interval: config.reservation_sweep_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
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
        let refresher = self
            .stock
            .spawn(self.store.clone(), self.low_stock, self.stock_interval);
        let sweeper = db::spawn_sweeper(self.store.clone(), self.sweep_interval);
        let backend = format!("database: {:?}", self.store.backend());
        let res = self.bound.serve("inventory", &backend, shutdown).await;
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
