//! The orders service: a cart per signed-in user, the checkout saga that
//! turns it into an order (hold the stock, quote, charge the wallet,
//! commit the hold; undo what was done when something refuses), the
//! recovery loop that finishes checkouts a crash or an outage left
//! half-way, and the order history.

pub mod api;
pub mod db;
pub mod error;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod recovery;
pub mod saga;
pub mod upstream;

use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8084";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    pub otlp: Option<kit::otlp::OtlpConfig>,
    pub db: kit::db::DbConfig,
    /// Where the users service publishes its token keys.
    pub jwks_url: String,
    pub audience: String,
    /// This service's own token (role `service`), for inventory and
    /// payments: `SERVICE_SECRET_FILE` and `USERS_URL`.
    pub service_token: Arc<kit::auth::ServiceToken>,
    pub inventory_url: String,
    pub pricing_url: String,
    pub payments_url: String,
    /// One call to another service, one attempt.
    pub upstream_timeout: Duration,
    pub upstream_retries: u32,
    /// How long `POST /checkouts` (and each recovery drive) drives a saga.
    pub checkout_deadline: Duration,
    pub recovery_interval: Duration,
    pub hold_ttl_secs: i64,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "orders")?;
        let db = kit::db::DbConfig::from_source(&r, "orders")?;
        let jwks_url = kit::auth::jwks_url(&r)?;
        let service_token = Arc::new(kit::auth::ServiceToken::from_source(&r, "orders")?);
        let upstream_timeout =
            Duration::from_millis(r.int_in("UPSTREAM_TIMEOUT_MS", 3_000, 10..=60_000)?);
        let checkout_deadline =
            Duration::from_millis(r.int_in("CHECKOUT_DEADLINE_MS", 10_000, 100..=120_000)?);
        if checkout_deadline < upstream_timeout {
            return Err(ConfigError::new(
                "CHECKOUT_DEADLINE_MS",
                &checkout_deadline.as_millis().to_string(),
                "must be at least UPSTREAM_TIMEOUT_MS",
            ));
        }
        Ok(Self {
            common,
            otlp,
            db,
            jwks_url,
            audience: r.string_or("TOKEN_AUDIENCE", "eshop"),
            service_token,
            inventory_url: r.service_url("INVENTORY_URL", "http://127.0.0.1:8081")?,
            pricing_url: r.service_url("PRICING_URL", "http://127.0.0.1:8080")?,
            payments_url: r.service_url("PAYMENTS_URL", "http://127.0.0.1:8083")?,
            upstream_timeout,
            upstream_retries: r.int_in("UPSTREAM_RETRIES", 2, 0..=5)? as u32,
            checkout_deadline,
            recovery_interval: Duration::from_millis(r.int_in(
                "RECOVERY_INTERVAL_MS",
                2_000,
                10..=3_600_000,
            )?),
            hold_ttl_secs: r.int_in("HOLD_TTL_SECS", 900, 1..=86_400)? as i64,
        })
    }
}

/// A built, listening orders service.
pub struct Application {
    bound: kit::server::Bound,
    saga: Arc<saga::Saga>,
    recovery_interval: Duration,
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
        let store = db::Store::connect(&config.db).await?;
        let verifier = kit::auth::Verifier::new(config.jwks_url, config.audience);
        let (timeout, retries) = (config.upstream_timeout, config.upstream_retries);
        let token = Some(config.service_token.clone());
        let metrics = metrics::Metrics::default();
        let saga = Arc::new(saga::Saga {
            store: store.clone(),
            inventory: upstream::Upstream::new(
                "inventory",
                &config.inventory_url,
                timeout,
                retries,
                token.clone(),
            ),
            pricing: upstream::Upstream::new(
                "pricing",
                &config.pricing_url,
                timeout,
                retries,
                None,
            ),
            payments: upstream::Upstream::new(
                "payments",
                &config.payments_url,
                timeout,
                retries,
                token,
            ),
            metrics: metrics.clone(),
            hold_ttl_secs: config.hold_ttl_secs,
            deadline: config.checkout_deadline,
            // Past the deadline by one more attempt and a margin: a live
            // driver always lets go (or moves on, renewing it) before then.
            lease_ms: (config.checkout_deadline + timeout + Duration::from_secs(2)).as_millis()
                as i64,
            retry_base: config.recovery_interval,
        });
        let state = Arc::new(api::AppState {
            saga: saga.clone(),
            lookup_timeout: timeout,
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
            .openapi(openapi::document())
            .into_router();
        Ok(Self {
            bound: kit::server::Bound::new(listener, router, &config.common),
            saga,
            recovery_interval: config.recovery_interval,
        })
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    /// The store, for tests that look at the saga's state.
    pub fn store(&self) -> &db::Store {
        &self.saga.store
    }

    /// Serves until `shutdown`, with the recovery loop beside it (its
    /// first sweep right away, for what a previous run left behind); then
    /// drains and closes the database. A recovery drive cut short here is
    /// left leased: the next run (or another replica) takes it over once
    /// the lease runs out.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let recovery = recovery::spawn(self.saga.clone(), self.recovery_interval);
        let backend = format!("database: {:?}", self.saga.store.backend());
        let res = self.bound.serve("orders", &backend, shutdown).await;
        recovery.abort();
        let _ = recovery.await;
        self.saga.store.close().await;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Map;

    #[test]
    fn bad_settings_stop_the_service_naming_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s".repeat(40)).unwrap();
        let secret = secret.to_str().unwrap();
        let base = [
            ("USERS_URL", "http://users:8082"),
            ("SERVICE_SECRET_FILE", secret),
        ];
        let with = |k: &str, v: &str| {
            let mut m = Map::new(base);
            m.0.insert(k.into(), v.into());
            m
        };
        let c = Config::from_source(&Map::new(base)).unwrap();
        assert_eq!(c.common.listen_addr.port(), 8084);
        assert_eq!(c.payments_url, "http://127.0.0.1:8083");
        assert_eq!(c.jwks_url, "http://users:8082/.well-known/jwks.json");
        for (k, v) in [
            ("INVENTORY_URL", "ftp://x"),
            ("PAYMENTS_URL", "http:///path"),
            ("CHECKOUT_DEADLINE_MS", "50"),
            ("UPSTREAM_RETRIES", "9"),
            ("HOLD_TTL_SECS", "0"),
            ("SERVICE_SECRET_FILE", "/nonexistent/secret"),
        ] {
            let err = Config::from_source(&with(k, v)).unwrap_err();
            assert_eq!(err.key, k, "{err}");
        }
        let err = Config::from_source(&Map::new([("USERS_URL", "http://users")])).unwrap_err();
        assert_eq!(err.key, "SERVICE_SECRET_FILE");
    }
}
