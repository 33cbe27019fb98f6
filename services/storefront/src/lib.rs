//! The storefront: the shop as people use it, server-rendered HTML that
//! works without JavaScript (sign up, log in, the catalogue, a product,
//! the cart, checkout, orders, the wallet), and the public API gateway (`/api/<service>/…`), so one
//! address serves shoppers, API clients and load tests.
//!
//! It holds no data of its own: every page is built from the services'
//! APIs, called with the shopper's token, which lives in an HttpOnly
//! cookie (sessions.rs).

pub mod cart;
pub mod gateway;
pub mod pages;
pub mod render;
pub mod session;
pub mod upstream;

use axum::routing::{any, get, post};
use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8085";

/// When the session cookies carry `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureCookies {
    /// When the request reached the shop over TLS (`X-Forwarded-Proto:
    /// https` from the load balancer or ingress in front).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    pub otlp: Option<kit::otlp::OtlpConfig>,
    pub upstreams: upstream::Urls,
    pub upstream_timeout: Duration,
    pub jwks_url: String,
    pub audience: String,
    /// The key that signs CSRF tokens (32+ bytes), shared by every
    /// replica; None: a random key made at start, kept in memory.
    pub session_key_file: Option<PathBuf>,
    pub secure_cookies: SecureCookies,
    /// What wallets are topped up in.
    pub currency: String,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "storefront")?;
        let upstreams = upstream::Urls {
            users: r.service_url("USERS_URL", "http://127.0.0.1:8082")?,
            inventory: r.service_url("INVENTORY_URL", "http://127.0.0.1:8081")?,
            pricing: r.service_url("PRICING_URL", "http://127.0.0.1:8080")?,
            payments: r.service_url("PAYMENTS_URL", "http://127.0.0.1:8083")?,
            orders: r.service_url("ORDERS_URL", "http://127.0.0.1:8084")?,
        };
        let jwks_url = format!("{}/.well-known/jwks.json", upstreams.users);
        let session_key_file = r.raw("SESSION_KEY_FILE").map(PathBuf::from);
        let secure_cookies = r.with_or("SECURE_COOKIES", SecureCookies::Auto, |v| match v {
            "auto" => Ok(SecureCookies::Auto),
            "always" => Ok(SecureCookies::Always),
            "never" => Ok(SecureCookies::Never),
            _ => Err("must be auto, always or never".to_owned()),
        })?;
        let currency = r.with_or("SHOP_CURRENCY", "EUR".to_owned(), |v| {
            kit::money::exponent(v)
                .map(|_| v.to_owned())
                .ok_or_else(|| "must be an ISO 4217 code such as EUR".to_owned())
        })?;
        Ok(Self {
            common,
            otlp,
            upstreams,
            upstream_timeout: Duration::from_millis(r.int_in(
                "UPSTREAM_TIMEOUT_MS",
                5_000,
                100..=60_000,
            )?),
            jwks_url,
            audience: r.string_or("TOKEN_AUDIENCE", "eshop"),
            session_key_file,
            secure_cookies,
            currency,
        })
    }
}

/// What handlers share.
pub struct State {
    pub upstream: upstream::Upstream,
    pub verifier: Arc<kit::auth::Verifier>,
    pub csrf: session::CsrfKey,
    pub secure_cookies: SecureCookies,
    pub currency: String,
}

pub struct Application {
    bound: kit::server::Bound,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = kit::server::bind(config.common.listen_addr).await?;
        Self::build_with_listener(config, listener)
    }

    pub fn build_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let csrf = match &config.session_key_file {
            Some(path) => session::CsrfKey::load(path)
                .map_err(|e| anyhow::anyhow!("SESSION_KEY_FILE: {e}"))?,
            None => {
                // One replica: forms shown before a restart expire with it
                // (the shopper fills them in again); sessions do not.
                tracing::info!("no SESSION_KEY_FILE: forms are signed with a key made at start");
                session::CsrfKey::random()
            }
        };
        let state = Arc::new(State {
            upstream: upstream::Upstream::new(config.upstreams, config.upstream_timeout),
            verifier: kit::auth::Verifier::new(config.jwks_url, config.audience),
            csrf,
            secure_cookies: config.secure_cookies,
            currency: config.currency,
        });
        let routes = axum::Router::new()
            .route("/", get(pages::catalogue))
            .route("/products/{id}", get(pages::product))
            .route("/signup", get(pages::signup_form).post(pages::signup))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route("/wallet", get(pages::wallet))
            .route("/wallet/top-up", post(pages::top_up))
            .route("/cart", get(cart::cart))
            .route("/cart/add", post(cart::add))
            .route("/cart/items/{id}", post(cart::update))
            .route("/checkout", post(cart::checkout))
            .route("/orders", get(cart::orders))
            .route("/orders/{id}", get(cart::order))
            .route("/static/shop.css", get(render::stylesheet))
            .route("/api/{service}", any(gateway::forward_root))
            .route("/api/{service}/", any(gateway::forward_root))
            .route("/api/{service}/{*path}", any(gateway::forward))
            .with_state(state);
        let router = kit::server::App::new(routes)
            .tracer(config.otlp.map(kit::otlp::Tracer::start))
            .into_router();
        Ok(Self {
            bound: kit::server::Bound::new(listener, router, &config.common),
        })
    }

    pub fn port(&self) -> u16 {
        self.bound.port()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.bound
            .serve("storefront", "the shop is at /", shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::config::Map;

    #[test]
    fn bad_settings_name_their_variable() {
        for (k, v) in [
            ("ORDERS_URL", "https://orders"),
            ("PAYMENTS_URL", "http://"),
            ("SECURE_COOKIES", "yes"),
            ("SHOP_CURRENCY", "EURO"),
            ("UPSTREAM_TIMEOUT_MS", "5"),
        ] {
            let e = Config::from_source(&Map::new([(k, v)])).unwrap_err();
            assert!(e.to_string().contains(k), "{k}: {e}");
        }
        let c = Config::from_source(&Map::new([("USERS_URL", "http://users:8082/")])).unwrap();
        assert_eq!(c.jwks_url, "http://users:8082/.well-known/jwks.json");
        assert!(c.session_key_file.is_none());
    }
}
