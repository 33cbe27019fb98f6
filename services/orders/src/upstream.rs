//! The client for the shop's other services (inventory, pricing,
//! payments), as pricing's inventory client: pooled connections, a timeout
//! per attempt, an overall deadline, bounded retries with backoff.
//!
//! Every call orders makes is safe to repeat (reads, a hold with the
//! order's own reservation id, a charge and a refund with derived
//! Idempotency-Keys, commit and release), so every one is retried on a
//! connection error, a timeout, a 5xx or a 429. What the saga must know
//! when no answer came is whether the request may have arrived:
//! [`Reply::NoAnswer`] says `sent: false` only when no attempt got as far
//! as a connection (then nothing happened over there).

use kit::auth::ServiceToken;
use kit::telemetry::RequestContext;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An attempt is not started with less than this left before the deadline.
const MIN_ATTEMPT: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub enum Reply {
    /// The service answered (2xx, or a 4xx it means).
    Answer { status: u16, body: Value },
    /// No answer worth acting on before the deadline or the last retry.
    /// `who`: the service that did not answer, for messages; "users" when
    /// the shop's own token could not be had (the call never left).
    NoAnswer {
        sent: bool,
        reason: String,
        who: &'static str,
    },
    /// Not even tried: the deadline had passed. Says nothing about the
    /// service, so nothing may be concluded from it.
    OutOfTime,
}

impl Reply {
    /// The problem type's last segment (`insufficient-stock`), if any.
    pub fn problem_type(body: &Value) -> &str {
        body["type"]
            .as_str()
            .and_then(|t| t.rsplit('/').next())
            .unwrap_or("")
    }
}

/// What the service names itself in messages ("Payments is not answering").
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: &'static str,
    base: String,
    http: reqwest::Client,
    attempt_timeout: Duration,
    retries: u32,
    /// The shop's own token (role `service`), for services that need one.
    token: Option<Arc<ServiceToken>>,
}

enum Attempt {
    Done(u16, Value),
    /// Worth another attempt; `sent`: the request may have arrived; `who`
    /// did not answer.
    Retry {
        sent: bool,
        reason: String,
        who: &'static str,
    },
}

impl Upstream {
    pub fn new(
        name: &'static str,
        base: &str,
        attempt_timeout: Duration,
        retries: u32,
        token: Option<Arc<ServiceToken>>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(attempt_timeout)
            // Below the services' keep-alive limit (kit: 10 s by default),
            // so a request never goes out on a connection being closed.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .expect("a client without custom TLS always builds");
        Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            http,
            attempt_timeout,
            retries,
            token,
        }
    }

    /// `method path` with an optional JSON body and Idempotency-Key, retried
    /// until an answer, the last retry, or `deadline`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        ctx: &RequestContext,
        deadline: Instant,
    ) -> Reply {
        let mut sent = false;
        let mut who = self.name;
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_ATTEMPT {
                if attempt == 0 && !renewed {
                    return Reply::OutOfTime;
                }
                return self.no_answer(sent, "no time left before the deadline".into(), who);
            }
            let timeout = self.attempt_timeout.min(left);
            let reason = match self.once(&method, path, body, key, ctx, timeout).await {
                Attempt::Done(401, _) if self.token.is_some() && !renewed => {
                    // Our token was signed with a key since rotated out:
                    // fetch a new one, once, and go again at once.
                    renewed = true;
                    if let Some(t) = &self.token {
                        t.forget().await;
                    }
                    sent = true;
                    continue;
                }
                Attempt::Done(status, body) => return Reply::Answer { status, body },
                Attempt::Retry {
                    sent: s,
                    reason,
                    who: w,
                } => {
                    sent |= s;
                    who = w;
                    reason
                }
            };
            attempt += 1;
            // Exponential backoff with jitter: 25, 50, 100 ms …
            let backoff = Duration::from_millis(
                25 * (1u64 << attempt.min(6)) / 2 + rand::random_range(0..10),
            );
            if attempt > self.retries || Instant::now() + backoff >= deadline {
                return self.no_answer(sent, reason, who);
            }
            tracing::debug!(service = self.name, attempt, %reason, "retrying");
            tokio::time::sleep(backoff).await;
        }
    }

    fn no_answer(&self, sent: bool, reason: String, who: &'static str) -> Reply {
        tracing::warn!(service = self.name, sent, %reason, who, "no answer");
        Reply::NoAnswer { sent, reason, who }
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
        ctx: &RequestContext,
        timeout: Duration,
    ) -> Attempt {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .headers(ctx.outgoing_headers())
            .timeout(timeout);
        if let Some(token) = &self.token {
            match token.bearer().await {
                Ok(t) => req = req.bearer_auth(t),
                // Nothing left for the service: the users service is away.
                Err(e) => {
                    return Attempt::Retry {
                        sent: false,
                        reason: e.to_string(),
                        who: "users",
                    }
                }
            }
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    // No connection, nothing sent; anything later may
                    // have arrived.
                    sent: !e.is_connect(),
                    reason: if e.is_connect() {
                        "connection refused or unreachable".into()
                    } else if e.is_timeout() {
                        "timed out".into()
                    } else {
                        "the connection failed mid-request".into()
                    },
                    who: self.name,
                };
            }
        };
        let status = res.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry {
                sent: true,
                reason: format!("{} answered {status}", self.name),
                who: self.name,
            };
        }
        match res.bytes().await {
            Ok(b) => Attempt::Done(
                status.as_u16(),
                serde_json::from_slice(&b).unwrap_or(Value::Null),
            ),
            Err(_) => Attempt::Retry {
                sent: true,
                reason: "the answer was cut off".into(),
                who: self.name,
            },
        }
    }
}
