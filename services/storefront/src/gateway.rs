//! The public API: `/api/<service>/<path>` is `<path>` on that service, so
//! API clients and load tests have one entry point (seed 002: load testing
//! on the API gateway) and only the storefront is exposed.
//!
//! The caller's own `Authorization` header travels on; the session cookie
//! never does (a page's cookie must not authorise API calls another site
//! could make the browser send). What passes is a fixed list of headers
//! each way, with the request id and trace context of this request; a
//! `Location` the service answers is rewritten under `/api/<service>`.

use crate::upstream::Service;
use crate::State;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use kit::telemetry::RequestContext;
use kit::Problem;
use std::sync::Arc;

/// Request headers passed on to the service.
const REQUEST_HEADERS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    HeaderName::from_static("idempotency-key"),
];

/// Response headers passed back (`Allow`: a 405 without it breaks RFC
/// 9110; schemathesis through the gateway found it missing).
const RESPONSE_HEADERS: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::ALLOW,
    header::ETAG,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    header::CACHE_CONTROL,
    header::CONTENT_SECURITY_POLICY,
    HeaderName::from_static("idempotent-replayed"),
];

pub async fn forward_root(
    s: AxState<Arc<State>>,
    ctx: RequestContext,
    Path(service): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy(&s, &ctx, &service, "", method, &uri, &headers, body).await
}

pub async fn forward(
    s: AxState<Arc<State>>,
    ctx: RequestContext,
    Path((service, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy(&s, &ctx, &service, &path, method, &uri, &headers, body).await
}

#[allow(clippy::too_many_arguments)]
async fn proxy(
    s: &State,
    ctx: &RequestContext,
    service: &str,
    path: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let Some(svc) = Service::parse(service) else {
        let names: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
        return Problem::not_found(format!(
            "no service {service:?} behind /api; there are {}",
            names.join(", ")
        ))
        .into_response();
    };
    // The path as the client sent it (still percent-encoded), so what the
    // service sees is exactly what was asked, and `..` cannot climb out of
    // the service: the prefix is cut, never resolved.
    let prefix = format!("/api/{service}");
    let rest = uri.path().strip_prefix(&prefix).unwrap_or(path);
    let rest = if rest.is_empty() { "/" } else { rest };
    let target = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let mut req = s.upstream.request(ctx, svc, method, &target).body(body);
    for name in &REQUEST_HEADERS {
        for v in headers.get_all(name) {
            req = req.header(name, v);
        }
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(service, error = %e.without_url(), "gateway: the service did not answer");
            let mut res = Problem::unavailable(format!(
                "the {service} service is not answering; try again shortly"
            ))
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
    };
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HeaderMap::new();
    for name in &RESPONSE_HEADERS {
        for v in res.headers().get_all(name) {
            out.append(name, v.clone());
        }
    }
    if let Some(loc) = res
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
    {
        let loc = if loc.starts_with('/') {
            format!("{prefix}{loc}")
        } else {
            loc.to_owned()
        };
        if let Ok(v) = HeaderValue::from_str(&loc) {
            out.insert(header::LOCATION, v);
        }
    }
    let bytes = match res.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(service, error = %e.without_url(), "gateway: the answer broke off");
            return Problem::unavailable(format!("the {service} service's answer broke off"))
                .into_response();
        }
    };
    (status, out, bytes).into_response()
}
