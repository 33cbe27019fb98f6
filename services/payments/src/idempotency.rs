//! Idempotency keys: the `Idempotency-Key` header, the fingerprint of the
//! request it names, and the stored response a retry gets back.
//!
//! A key belongs to its caller (the token's `sub`), so two callers can
//! never see each other's answers. The record is written in the same
//! transaction as the movement it answered (see ledger.rs), so a key
//! either has a record and a movement or neither.

use crate::error::{Error, Result};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kit::db::Row;

pub const HEADER: &str = "Idempotency-Key";
/// On a response that is a replay of the one stored under the key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const KEY_MAX: usize = 255;

/// The request's key: 1..=255 visible ASCII characters (no spaces).
pub fn key(headers: &HeaderMap) -> Result<String> {
    let mut values = headers.get_all(HEADER).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return Err(Error::bad_request(
            HEADER,
            "exactly one Idempotency-Key header is required on this request (a unique value per intended payment, reused only to retry it)",
        ));
    };
    let bytes = v.as_bytes();
    if bytes.is_empty() || bytes.len() > KEY_MAX || !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Error::bad_request(
            HEADER,
            format!("must be 1 to {KEY_MAX} visible ASCII characters (no spaces)"),
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// SHA-256 (hex) of the canonical request: method, path and the body's
/// validated values in the order given (one `name=JSON value` line each),
/// so the same request written with other whitespace or key order has the
/// same fingerprint, whatever order a JSON map would keep.
pub fn fingerprint(method: &str, path: &str, fields: &[(&str, serde_json::Value)]) -> String {
    let mut text = format!("{method}\n{path}\n");
    for (name, value) in fields {
        text.push_str(&format!("{name}={value}\n"));
    }
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A response as first sent, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub location: Option<String>,
}

impl Stored {
    pub fn from_row(r: &Row) -> Result<Self, sqlx::Error> {
        Ok(Self {
            status: u16::try_from(r.get::<i64>("status")?).unwrap_or(500),
            content_type: r.get("content_type")?,
            body: r.get("body")?,
            location: r.get("location")?,
        })
    }

    /// A success: `value` as JSON with `status`.
    pub fn json(
        status: StatusCode,
        value: &impl serde::Serialize,
        location: Option<String>,
    ) -> Self {
        Self {
            status: status.as_u16(),
            content_type: "application/json".into(),
            body: serde_json::to_string(value).unwrap_or_default(),
            location,
        }
    }

    /// An outcome that is an error ([`Error::is_outcome`]).
    pub fn problem(e: &Error) -> Self {
        let p = e.to_problem();
        Self {
            status: p.status,
            content_type: kit::problem::CONTENT_TYPE.into(),
            body: serde_json::to_string(&p).unwrap_or_default(),
            location: None,
        }
    }

    pub fn respond(self, replayed: bool) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, self.body).into_response();
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        if let Some(v) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, v);
        }
        if replayed {
            h.insert(REPLAYED, HeaderValue::from_static("true"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_key(v: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_bytes(v).unwrap());
        h
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert_eq!(key(&with_key(b"order-1:try")).unwrap(), "order-1:try");
        assert!(key(&with_key(&[b'k'; KEY_MAX])).is_ok());
        assert!(key(&with_key(&[b'k'; KEY_MAX + 1])).is_err());
        assert!(key(&with_key(b"two words")).is_err());
        assert!(key(&with_key(b"")).is_err());
        assert!(key(&with_key(&[0xc3, 0xa9])).is_err());
        assert!(key(&HeaderMap::new()).is_err());
        let mut two = with_key(b"a");
        two.append(HEADER, HeaderValue::from_static("b"));
        assert!(key(&two).is_err());
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let body = [("amount_minor", 5.into())];
        let a = fingerprint("POST", "/wallets/u1/charges", &body);
        assert_eq!(a.len(), 64);
        assert_eq!(a, fingerprint("POST", "/wallets/u1/charges", &body));
        assert_ne!(a, fingerprint("POST", "/wallets/u2/charges", &body));
        assert_ne!(a, fingerprint("PUT", "/wallets/u1/charges", &body));
        assert_ne!(
            a,
            fingerprint("POST", "/wallets/u1/charges", &[("amount_minor", 6.into())])
        );
    }
}
