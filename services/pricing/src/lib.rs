//! The pricing service: the shop's landing page and calculate_price, which
//! asks the inventory service for the product and prices the order.

pub mod api;
pub mod basket;
pub mod inventory;
pub mod openapi;
pub mod page;
pub mod quote;

use axum::routing::get;
use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_INVENTORY_URL: &str = "http://127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    /// OTLP trace export; None when no endpoint is configured.
    pub otlp: Option<kit::otlp::OtlpConfig>,
    pub inventory_url: String,
    pub inventory_timeout: Duration,
    pub inventory_deadline: Duration,
    pub inventory_retries: u32,
    pub tiers: Vec<quote::Tier>,
    pub tax_ppm: u32,
    pub low_stock: i64,
    pub max_quantity: i64,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "pricing")?;
        let inventory_url = r.service_url("INVENTORY_URL", DEFAULT_INVENTORY_URL)?;
        let timeout = r.int_in("INVENTORY_TIMEOUT_MS", 800, 10..=60_000)?;
        let deadline = r.int_in("INVENTORY_DEADLINE_MS", 2_000, 10..=120_000)?;
        if deadline < timeout {
            return Err(ConfigError::new(
                "INVENTORY_DEADLINE_MS",
                &deadline.to_string(),
                "must be at least INVENTORY_TIMEOUT_MS",
            ));
        }
        let tiers = r.with_or(
            "DISCOUNT_TIERS",
            quote::parse_tiers("10:5,100:10").expect("default"),
            quote::parse_tiers,
        )?;
        let tax_ppm = r.with_or("TAX_RATE_PERCENT", 200_000, kit::money::parse_percent_ppm)?;
        Ok(Self {
            common,
            otlp,
            inventory_url,
            inventory_timeout: Duration::from_millis(timeout),
            inventory_deadline: Duration::from_millis(deadline),
            inventory_retries: r.int_in("INVENTORY_RETRIES", 2, 0..=5)? as u32,
            tiers,
            tax_ppm,
            low_stock: r.int_in("LOW_STOCK_THRESHOLD", 5, 0..=1_000_000)? as i64,
            max_quantity: r.int_in("MAX_QUANTITY", 10_000, 1..=1_000_000_000)? as i64,
        })
    }
}

/// What handlers share.
pub struct State {
    pub inventory: inventory::InventoryClient,
    pub tiers: Vec<quote::Tier>,
    pub tax_ppm: u32,
    pub low_stock: i64,
    pub max_quantity: i64,
}

impl State {
    /// The money rules every price is computed with.
    pub fn rules(&self) -> quote::Rules<'_> {
        quote::Rules {
            tiers: &self.tiers,
            tax_ppm: self.tax_ppm,
            low_stock: self.low_stock,
        }
    }
}

pub struct Application {
    bound: kit::server::Bound,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = kit::server::bind(config.common.listen_addr).await?;
        Ok(Self::build_with_listener(config, listener))
    }

    pub fn build_with_listener(config: Config, listener: TcpListener) -> Self {
        let client = inventory::InventoryClient::new(
            &config.inventory_url,
            config.inventory_timeout,
            config.inventory_deadline,
            config.inventory_retries,
        );
        let ready_client = client.clone();
        let readiness: kit::health::Readiness = Arc::new(move || {
            let c = ready_client.clone();
            Box::pin(async move { c.ready().await })
        });
        let state = Arc::new(State {
            inventory: client,
            tiers: config.tiers,
            tax_ppm: config.tax_ppm,
            low_stock: config.low_stock,
            max_quantity: config.max_quantity,
        });
        let routes = axum::Router::new()
            .route("/", get(page::landing))
            .route(
                "/calculate_price",
                get(api::get_price).post(api::post_price),
            )
            .route("/quote", axum::routing::post(basket::post_quote))
            .with_state(state.clone());
        let router = kit::server::App::new(routes)
            .tracer(config.otlp.map(kit::otlp::Tracer::start))
            .readiness(readiness)
            .openapi(openapi::document(state.max_quantity))
            .into_router();
        Self {
            bound: kit::server::Bound::new(listener, router, &config.common),
        }
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.bound
            .serve("pricing", "the landing page is at /", shutdown)
            .await
    }
}

/// `run(listener, shutdown)` in one call, as every eshop service offers.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Application::build_with_listener(config, listener)
        .run(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Map;

    #[test]
    fn bad_settings_name_their_variable() {
        for (k, v) in [
            ("INVENTORY_URL", "ftp://x"),
            ("DISCOUNT_TIERS", "10:5,5:10"),
            ("TAX_RATE_PERCENT", "twenty"),
            ("MAX_QUANTITY", "0"),
            ("INVENTORY_DEADLINE_MS", "20"),
        ] {
            let err = Config::from_source(&Map::new([(k, v)])).unwrap_err();
            assert_eq!(err.key, k, "{err}");
        }
    }

    #[test]
    fn defaults_find_the_local_inventory() {
        let c = Config::from_source(&Map::default()).unwrap();
        assert_eq!(c.inventory_url, DEFAULT_INVENTORY_URL);
        assert_eq!(c.common.listen_addr.port(), 8080);
        assert_eq!(c.tax_ppm, 200_000);
    }
}
