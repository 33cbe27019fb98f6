//! The other side of the users service's `POST /service-tokens`: a service
//! of the shop gets, caches and renews its own token with the role
//! `service`, proving itself with its client secret.

use super::AuthError;
use crate::config::{ConfigError, Reader};
use base64::Engine;
use std::time::{Duration, Instant};

/// A token is renewed when less than this is left of it, so one fetched
/// just before a request never expires on its way.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

pub struct ServiceToken {
    url: String,
    /// `Basic base64(name:secret)`, built once; never logged.
    authorization: String,
    name: String,
    http: std::sync::OnceLock<reqwest::Client>,
    current: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("url", &self.url)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ServiceToken {
    /// `SERVICE_SECRET_FILE` (this service's client secret, e.g. a mounted
    /// Secret) and the users service at `USERS_URL`; `name` is the client
    /// name the users service knows this service by.
    pub fn from_source(r: &Reader, name: &str) -> Result<Self, ConfigError> {
        let path = r.raw("SERVICE_SECRET_FILE").ok_or_else(|| {
            ConfigError::new(
                "SERVICE_SECRET_FILE",
                "",
                "is required: the file holding this service's client secret",
            )
        })?;
        let secret = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new("SERVICE_SECRET_FILE", &path, e))?;
        let users = r.raw("USERS_URL").ok_or_else(|| {
            ConfigError::new(
                "USERS_URL",
                "",
                "is required: where the users service answers",
            )
        })?;
        Ok(Self::new(
            &format!("{}/service-tokens", users.trim_end_matches('/')),
            name,
            secret.trim_end_matches(['\n', '\r']),
        ))
    }

    pub fn new(url: &str, name: &str, secret: &str) -> Self {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"));
        Self {
            url: url.to_owned(),
            authorization: format!("Basic {credentials}"),
            name: name.to_owned(),
            http: std::sync::OnceLock::new(),
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// A valid token for `Authorization: Bearer …`, fetched when there is
    /// none or it is about to expire. Concurrent callers share one fetch.
    pub async fn bearer(&self) -> Result<String, AuthError> {
        let mut current = self.current.lock().await;
        if let Some((token, renew_at)) = current.as_ref() {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let (token, ttl) = self.fetch().await?;
        let renew_at = Instant::now() + ttl.saturating_sub(RENEW_BEFORE).max(ttl / 2);
        *current = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// Forgets the token, e.g. after a service answered 401 with it (the
    /// signing key was rotated out).
    pub async fn forget(&self) {
        *self.current.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Duration), AuthError> {
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("a client with a timeout builds")
        });
        let unavailable =
            |why: String| AuthError::Unavailable(format!("getting a service token: {why}"));
        let r = http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = r.status();
        if !status.is_success() {
            // 401 is a configuration fault (wrong secret), not the caller's:
            // say so in the log, answer 503 upstream.
            if status == reqwest::StatusCode::UNAUTHORIZED {
                tracing::error!(client = %self.name, "the users service refused this service's client secret");
            }
            return Err(unavailable(format!("HTTP {status}")));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let t: Token = r
            .json()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        Ok((t.access_token, Duration::from_secs(t.expires_in)))
    }
}
