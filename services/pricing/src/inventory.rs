//! The client for the inventory service: pooled connections, a timeout per
//! attempt, an overall deadline, and a bounded retry for idempotent reads.

use kit::telemetry::RequestContext;
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
    /// What can still be sold: on hand minus what checkouts hold.
    pub available: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("product not found")]
    NotFound,
    /// Down, slow, or failing: the caller should answer 503.
    #[error("inventory unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub struct InventoryClient {
    http: reqwest::Client,
    base: String,
    attempt_timeout: Duration,
    deadline: Duration,
    retries: u32,
}

impl InventoryClient {
    pub fn new(base: &str, attempt_timeout: Duration, deadline: Duration, retries: u32) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(attempt_timeout)
            // Below inventory's keep-alive limit (kit: the header-read
            // timeout, 10 s by default), so pricing never sends on a
            // connection inventory is just closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .expect("a client without TLS always builds");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            attempt_timeout,
            deadline,
            retries,
        }
    }

    /// `id` has been validated by the caller (letters, digits, `._-`), so it
    /// needs no escaping in the path.
    pub async fn product(&self, id: &str, ctx: &RequestContext) -> Result<Product, FetchError> {
        let url = format!("{}/products/{id}", self.base);
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            let left = self.deadline.saturating_sub(start.elapsed());
            let timeout = self.attempt_timeout.min(left);
            let outcome = self.try_once(&url, ctx, timeout).await;
            match outcome {
                Ok(p) => return Ok(p),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(reason)) => {
                    attempt += 1;
                    // Exponential backoff with jitter: 25, 50, 100 ms …
                    let backoff =
                        Duration::from_millis(25 * (1 << attempt.min(6)) / 2 + rand_jitter_ms());
                    if attempt > self.retries || start.elapsed() + backoff >= self.deadline {
                        tracing::warn!(attempts = attempt, %reason, "inventory call failed");
                        return Err(FetchError::Unavailable(reason));
                    }
                    tracing::debug!(attempt, %reason, "retrying inventory call");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    async fn try_once(
        &self,
        url: &str,
        ctx: &RequestContext,
        timeout: Duration,
    ) -> Result<Product, Attempt> {
        let res = self
            .http
            .get(url)
            .headers(ctx.outgoing_headers())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                Attempt::Retry(if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "connection refused or unreachable".to_owned()
                } else {
                    "request failed".to_owned()
                })
            })?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Attempt::Final(FetchError::NotFound));
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Attempt::Retry(format!("inventory answered {status}")));
        }
        if !status.is_success() {
            return Err(Attempt::Final(FetchError::Unavailable(format!(
                "inventory answered {status}"
            ))));
        }
        res.json::<Product>().await.map_err(|e| {
            if e.is_timeout() {
                Attempt::Retry("timed out reading the response".to_owned())
            } else {
                Attempt::Final(FetchError::Unavailable(
                    "inventory sent an unreadable response".to_owned(),
                ))
            }
        })
    }

    /// For /readyz: is inventory up and itself ready?
    pub async fn ready(&self) -> Result<(), String> {
        let res = self
            .http
            .get(format!("{}/readyz", self.base))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .map_err(|_| "inventory unreachable".to_owned())?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("inventory not ready ({})", res.status()))
        }
    }
}

enum Attempt {
    Retry(String),
    Final(FetchError),
}

fn rand_jitter_ms() -> u64 {
    use rand::Rng;
    rand::rng().random_range(0..10)
}
