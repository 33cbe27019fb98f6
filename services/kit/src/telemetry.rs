//! JSON logs, request ids and W3C trace context.
//!
//! Every request gets a request id (the caller's `x-request-id` if it is
//! sane, else a fresh one) and a trace context (continuing the caller's
//! `traceparent`, else a new trace). Both are logged on every line of the
//! request and forwarded on outgoing calls, so one calculate_price can be
//! followed across pricing and inventory.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "text" => Ok(Self::Text),
            _ => Err("expected json or text".into()),
        }
    }
}

/// Installs the global subscriber. A second call (tests start many apps in
/// one process) keeps the first.
pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A W3C trace context (<https://www.w3.org/TR/trace-context/>): the trace
/// this request belongs to and this service's span within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace when its `traceparent` is valid;
    /// starts a new one otherwise (as the spec requires for bad headers).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parsed = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let span_id = random_hex::<8>();
        match parsed {
            Some((trace_id, parent, sampled)) => Self {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled,
            },
            None => Self {
                trace_id: random_hex::<16>(),
                span_id,
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// The header to send on calls made while serving this request: same
    /// trace, this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`; rejects all-zero ids and version ff.
pub fn parse_traceparent(s: &str) -> Option<(String, String, bool)> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    if parts.len() < 4 {
        return None;
    }
    let (version, trace, parent, flags) = (parts[0], parts[1], parts[2], parts[3]);
    let hex = |x: &str, n: usize| {
        x.len() == n
            && x.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || (version == "00" && parts.len() != 4) {
        return None;
    }
    if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace.to_owned(), parent.to_owned(), flags & 1 == 1))
}

/// Keeps the caller's request id if it is short printable ASCII (it ends up
/// in logs and headers), otherwise mints one.
pub fn request_id_from(headers: &HeaderMap) -> String {
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(random_hex::<16>)
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    loop {
        rand::rng().fill(&mut bytes[..]);
        if bytes.iter().any(|b| *b != 0) {
            break;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(N * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

/// What a handler needs to call another service on behalf of this request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace: TraceContext,
}

impl RequestContext {
    /// Headers to forward on an outgoing call.
    pub fn outgoing_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::with_capacity(2);
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert(X_REQUEST_ID.clone(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace.traceparent()) {
            h.insert(TRACEPARENT.clone(), v);
        }
        h
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // The observe middleware always inserts it; outside it (unit tests
        // of a bare handler) derive one from the headers.
        Ok(parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_else(|| RequestContext {
                request_id: request_id_from(&parts.headers),
                trace: TraceContext::from_headers(&parts.headers),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let mut h = HeaderMap::new();
        h.insert(
            &TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, "00f067aa0ba902b7");
        assert!(t
            .traceparent()
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        assert!(parse_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        )
        .is_some());
    }

    #[test]
    fn hostile_request_ids_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id_from(&h), "has space");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id_from(&h), "abc-123");
    }
}
