//! The payments service (seed 004's "EasyPay"): a wallet per user, topped
//! up by its owner and charged by the shop at checkout, on a double-entry
//! ledger. Every money-moving request carries an Idempotency-Key, so a
//! client that lost an answer (a database outage, a network cut) retries
//! without ever paying twice.

pub mod api;
pub mod body;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod ledger;
pub mod openapi;

use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

/// The largest amount any one charge or refund may move (minor units), so
/// sums stay far inside 64 bits.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    pub otlp: Option<kit::otlp::OtlpConfig>,
    pub db: kit::db::DbConfig,
    /// Where the users service publishes its token keys.
    pub jwks_url: String,
    pub audience: String,
    /// The largest single top-up, in minor units of any currency.
    pub max_top_up_minor: i64,
    /// PostgreSQL: how long one statement, or a wait for a row lock (a
    /// concurrent request with the same key or on the same wallet), may
    /// take before the request is answered 503.
    pub statement_timeout: Duration,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "payments")?;
        let db = kit::db::DbConfig::from_source(&r, "payments")?;
        let jwks_url = kit::auth::jwks_url(&r)?;
        Ok(Self {
            common,
            otlp,
            db,
            jwks_url,
            audience: r.string_or("TOKEN_AUDIENCE", "eshop"),
            max_top_up_minor: r.int_in("MAX_TOP_UP_MINOR", 100_000, 1..=AMOUNT_MAX as u64)? as i64,
            statement_timeout: Duration::from_millis(r.int_in(
                "DB_STATEMENT_TIMEOUT_MS",
                5_000,
                100..=600_000,
            )?),
        })
    }
}

/// A built, listening payments service.
pub struct Application {
    bound: kit::server::Bound,
    store: db::Store,
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
        let store = db::Store::connect(&config.db, config.statement_timeout).await?;
        let verifier = kit::auth::Verifier::new(config.jwks_url, config.audience);
        let metrics = api::Metrics::default();
        let state = Arc::new(api::AppState {
            store: store.clone(),
            max_top_up_minor: config.max_top_up_minor,
            metrics: metrics.clone(),
        });
        let ready_store = store.clone();
        let readiness = kit::health::database(move || {
            let s = ready_store.clone();
            async move { s.ping().await }
        });
        let mut app = kit::server::App::new(api::routes(state, verifier));
        metrics.register(app.metrics_mut());
        let router = app
            .tracer(config.otlp.map(kit::otlp::Tracer::start))
            .readiness(readiness)
            .openapi(openapi::document(config.max_top_up_minor))
            .into_router();
        Ok(Self {
            bound: kit::server::Bound::new(listener, router, &config.common),
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let backend = format!("database: {:?}", self.store.backend());
        let res = self.bound.serve("payments", &backend, shutdown).await;
        self.store.close().await;
        res
    }
}
