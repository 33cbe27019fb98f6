//! Calls to the shop's services: one pooled client, a timeout per call,
//! the request id and trace context passed on, and one answer for "that
//! service is not answering", which every page turns into the same words.

use axum::http::{HeaderMap, Method, StatusCode};
use kit::telemetry::RequestContext;
use serde_json::Value;
use std::time::Duration;

/// Where each service answers (`http://host:port`, no trailing slash).
#[derive(Debug, Clone)]
pub struct Urls {
    pub users: String,
    pub inventory: String,
    pub pricing: String,
    pub payments: String,
    pub orders: String,
}

/// The services the storefront and its gateway reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Users,
    Inventory,
    Pricing,
    Payments,
    Orders,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Users,
        Service::Inventory,
        Service::Pricing,
        Service::Payments,
        Service::Orders,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Inventory => "inventory",
            Service::Pricing => "pricing",
            Service::Payments => "payments",
            Service::Orders => "orders",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// A service did not answer (refused, timed out, or failed with a 5xx it
/// could not explain): the page says so and asks to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Down(pub Service);

/// A service's answer: its status and its JSON body (Null if none).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    /// The problem+json `detail`, for 4xx answers written for people.
    pub fn detail(&self) -> String {
        self.body["detail"]
            .as_str()
            .unwrap_or("the request was refused")
            .to_owned()
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }
}

/// One outgoing call: the path and query under the service's URL, the
/// shopper's token if any, extra headers (e.g. Idempotency-Key), a JSON
/// body.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub headers: &'a [(&'static str, &'a str)],
    pub body: Option<Value>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str, token: Option<&'a str>) -> Self {
        Self {
            method: Method::GET,
            path,
            token,
            headers: &[],
            body: None,
        }
    }

    pub fn post(path: &'a str, token: Option<&'a str>, body: Value) -> Self {
        Self {
            method: Method::POST,
            path,
            token,
            headers: &[],
            body: Some(body),
        }
    }

    pub fn with_headers(mut self, headers: &'a [(&'static str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }
}

pub struct Upstream {
    http: reqwest::Client,
    urls: Urls,
    timeout: Duration,
}

impl Upstream {
    pub fn new(urls: Urls, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            // Below the services' keep-alive limit, so a request never goes
            // out on a connection the service is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // The gateway passes redirects on to its client.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client without TLS always builds");
        Self {
            http,
            urls,
            timeout,
        }
    }

    pub fn url(&self, s: Service) -> &str {
        match s {
            Service::Users => &self.urls.users,
            Service::Inventory => &self.urls.inventory,
            Service::Pricing => &self.urls.pricing,
            Service::Payments => &self.urls.payments,
            Service::Orders => &self.urls.orders,
        }
    }

    /// A request to `s` carrying this request's id and trace context.
    pub fn request(
        &self,
        ctx: &RequestContext,
        s: Service,
        method: Method,
        path_and_query: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path_and_query}", self.url(s));
        let mut headers = HeaderMap::new();
        for (k, v) in ctx.outgoing_headers().iter() {
            headers.insert(k, v.clone());
        }
        self.http
            .request(method, url)
            .headers(headers)
            .timeout(self.timeout)
    }

    /// Calls `s` and reads its JSON answer. No answer, and 5xx answers
    /// other than an explained 503, are [`Down`].
    pub async fn call(&self, ctx: &RequestContext, s: Service, c: Call<'_>) -> Result<Reply, Down> {
        let mut req = self.request(ctx, s, c.method, c.path);
        if let Some(t) = c.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in c.headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = &c.body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| {
            tracing::warn!(service = s.name(), error = %e.without_url(), "a service did not answer");
            Down(s)
        })?;
        let status = res.status();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        // A 503 with its own words is the service answering that something
        // behind it is away ("Payments is not answering; nothing was
        // charged"): those words are for the shopper. Any other 5xx says
        // nothing they can use.
        let explained = status == StatusCode::SERVICE_UNAVAILABLE && body["detail"].is_string();
        if status.is_server_error() && !explained {
            tracing::warn!(service = s.name(), %status, "a service failed");
            return Err(Down(s));
        }
        Ok(Reply { status, body })
    }
}
