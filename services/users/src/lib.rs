//! The users service: accounts (sign-up, login), access tokens signed with
//! Ed25519 and the public keys that let every other service check them.

pub mod api;
pub mod clients;
pub mod db;
pub mod error;
pub mod keys;
pub mod limiter;
pub mod openapi;
pub mod password;

use kit::config::{ConfigError, Reader, Source};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8082";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: kit::config::Common,
    pub otlp: Option<kit::otlp::OtlpConfig>,
    pub db: kit::db::DbConfig,
    /// The current signing key (PKCS#8 Ed25519, DER or PEM).
    pub signing_key_file: PathBuf,
    /// Generate `signing_key_file` when it does not exist (only for the
    /// default location under DATA_DIR: a configured file must exist).
    pub generate_key: bool,
    /// The key being retired: still published, no longer signing.
    pub previous_signing_key_file: Option<PathBuf>,
    pub audience: String,
    pub token_ttl: Duration,
    pub admin_emails: Vec<String>,
    pub hash_memory_kib: u32,
    pub hash_iterations: u32,
    pub max_failures_per_account: u32,
    pub max_attempts_per_address: u32,
    pub login_window: Duration,
    /// The shop's services that may get a `service` token (clients.rs).
    pub service_clients: Arc<clients::Clients>,
    pub service_token_ttl: Duration,
}

impl Config {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader::new(src);
        let common = kit::config::Common::from_source(&r, DEFAULT_LISTEN)?;
        let otlp = kit::otlp::OtlpConfig::from_source(&r, "users")?;
        let db = kit::db::DbConfig::from_source(&r, "users")?;
        let (signing_key_file, generate_key) = match r.raw("SIGNING_KEY_FILE") {
            Some(p) => (PathBuf::from(p), false),
            None => {
                let dir = r.string_or("DATA_DIR", "./data");
                (PathBuf::from(dir).join("signing-key.der"), true)
            }
        };
        let admin_emails = r.with_or("ADMIN_EMAILS", Vec::new(), |v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| password::normalise_email(e).map_err(|m| format!("{e:?} {m}")))
                .collect()
        })?;
        let audience = r.string_or("TOKEN_AUDIENCE", "eshop");
        Ok(Self {
            common,
            otlp,
            db,
            signing_key_file,
            generate_key,
            previous_signing_key_file: r.raw("PREVIOUS_SIGNING_KEY_FILE").map(PathBuf::from),
            audience,
            token_ttl: Duration::from_secs(r.int_in("TOKEN_TTL_SECS", 900, 60..=86_400)?),
            admin_emails,
            hash_memory_kib: r.int_in("PASSWORD_HASH_MEMORY_KIB", 19_456, 256..=1_048_576)? as u32,
            hash_iterations: r.int_in("PASSWORD_HASH_ITERATIONS", 2, 1..=10)? as u32,
            max_failures_per_account: r.int_in("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5, 1..=1000)?
                as u32,
            max_attempts_per_address: r.int_in("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", 30, 1..=100_000)?
                as u32,
            login_window: Duration::from_secs(r.int_in("LOGIN_WINDOW_SECS", 300, 1..=86_400)?),
            service_clients: Arc::new(match r.raw("SERVICE_CLIENTS_DIR") {
                Some(dir) => clients::Clients::load(std::path::Path::new(&dir))
                    .map_err(|e| ConfigError::new("SERVICE_CLIENTS_DIR", &dir, e))?,
                None => clients::Clients::default(),
            }),
            service_token_ttl: Duration::from_secs(r.int_in(
                "SERVICE_TOKEN_TTL_SECS",
                300,
                60..=3_600,
            )?),
        })
    }
}

/// A built, listening users service.
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
        if config.generate_key
            && keys::generate_if_missing(&config.signing_key_file).map_err(anyhow::Error::msg)?
        {
            tracing::info!(path = %config.signing_key_file.display(), "generated a new token signing key");
        }
        let keys = keys::Keys::load(
            &config.signing_key_file,
            config.previous_signing_key_file.as_deref(),
        )
        .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
        let store = db::Store::connect(&config.db).await?;
        let hasher = password::Hasher::new(config.hash_memory_kib, config.hash_iterations)
            .map_err(anyhow::Error::msg)?;
        let verifier = kit::auth::Verifier::with_keys(&keys.jwks, config.audience.clone());
        let metrics = api::Metrics::default();
        let state = Arc::new(api::AppState {
            store: store.clone(),
            hasher,
            signer: keys.current,
            jwks: keys.jwks,
            audience: config.audience,
            token_ttl: config.token_ttl,
            admin_emails: config.admin_emails,
            service_clients: config.service_clients,
            service_token_ttl: config.service_token_ttl,
            per_account: limiter::Limiter::new(
                config.max_failures_per_account,
                config.login_window,
            ),
            per_address: limiter::Limiter::new(
                config.max_attempts_per_address,
                config.login_window,
            ),
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
            .openapi(openapi::document())
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
        let res = self.bound.serve("users", &backend, shutdown).await;
        self.store.close().await;
        res
    }
}
