//! Who is shopping, and proof that a form came from our own page.
//!
//! **Session.** After a login the shopper's access token (a JWT the users
//! service signed) is kept in the `eshop_session` cookie: HttpOnly (no
//! script can read it), SameSite=Lax (other sites' forms do not carry it),
//! Secure over TLS, expiring with the token. Each request checks it like
//! every service does (kit::auth); an expired one ends the session.
//!
//! **CSRF.** Every form carries a token: the HMAC-SHA256, under a key only
//! the storefront holds, of a random value in the `eshop_csrf` cookie
//! (signed double submit). Another site can make a browser send the
//! cookie, but can neither read it nor compute its HMAC. A browser that
//! says the form came from another site (`Sec-Fetch-Site: cross-site`) is
//! refused as well.

use crate::{SecureCookies, State};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use kit::auth::Claims;
use ring::hmac;
use std::path::Path;
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "eshop_session";
pub const CSRF_COOKIE: &str = "eshop_csrf";

/// The key CSRF tokens are signed with.
pub struct CsrfKey(hmac::Key);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// Reads the key file (32 bytes or more). On Kubernetes every replica
    /// mounts the same Secret, so a form from one replica posts to another.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if bytes.len() < 32 {
            return Err(format!(
                "{}: the key must be at least 32 bytes",
                path.display()
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// A key of this process only.
    pub fn random() -> Self {
        Self(hmac::Key::new(
            hmac::HMAC_SHA256,
            &rand::random::<[u8; 32]>(),
        ))
    }

    pub fn token(&self, seed: &str) -> String {
        hex(hmac::sign(&self.0, seed.as_bytes()).as_ref())
    }

    fn verify(&self, seed: &str, token: &str) -> bool {
        let Some(tag) = unhex(token) else {
            return false;
        };
        // Constant time: how much of a guess matched stays unknown.
        hmac::verify(&self.0, seed.as_bytes(), &tag).is_ok()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A signed-in shopper.
#[derive(Debug, Clone)]
pub struct Shopper {
    /// The access token, sent on to the services.
    pub token: String,
    pub claims: Claims,
}

/// Whoever made this request.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub shopper: Option<Shopper>,
    /// A session cookie was there but its token no longer passes (expired,
    /// or from a retired key): it is cleared, and the page says why.
    pub session_ended: bool,
    csrf_seed: String,
    /// The seed was made for this response (no cookie came in).
    new_seed: bool,
    secure: bool,
    cross_site: bool,
}

impl Visitor {
    pub fn csrf_token(&self, key: &CsrfKey) -> String {
        key.token(&self.csrf_seed)
    }

    /// A form's token is ours, for this browser, and the form was not
    /// posted from another site.
    pub fn form_is_ours(&self, key: &CsrfKey, token: &str) -> bool {
        !self.new_seed && !self.cross_site && key.verify(&self.csrf_seed, token)
    }

    /// The cookies this response must set or clear.
    pub fn cookies(&self) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if self.new_seed {
            out.push(cookie(
                CSRF_COOKIE,
                &self.csrf_seed,
                "Strict",
                None,
                self.secure,
            ));
        }
        if self.session_ended {
            out.push(cookie(SESSION_COOKIE, "", "Lax", Some(0), self.secure));
        }
        out
    }

    /// Sets the session to `token` for `max_age` seconds.
    pub fn start_session(&self, token: &str, max_age: u64) -> HeaderValue {
        cookie(SESSION_COOKIE, token, "Lax", Some(max_age), self.secure)
    }

    pub fn end_session(&self) -> HeaderValue {
        cookie(SESSION_COOKIE, "", "Lax", Some(0), self.secure)
    }
}

fn cookie(
    name: &str,
    value: &str,
    same_site: &str,
    max_age: Option<u64>,
    secure: bool,
) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(s) = max_age {
        c.push_str(&format!("; Max-Age={s}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    // Tokens and seeds are base64url/hex: always a valid header value.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `name`'s value in the request's Cookie headers.
fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<Arc<State>> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<State>,
    ) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let secure = match state.secure_cookies {
            SecureCookies::Always => true,
            SecureCookies::Never => false,
            SecureCookies::Auto => h
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")),
        };
        let (shopper, session_ended) = match read_cookie(h, SESSION_COOKIE) {
            None => (None, false),
            Some(token) => match state.verifier.verify(token).await {
                Ok(claims) => (
                    Some(Shopper {
                        token: token.to_owned(),
                        claims,
                    }),
                    false,
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "session token refused");
                    (None, true)
                }
            },
        };
        let (csrf_seed, new_seed) = match read_cookie(h, CSRF_COOKIE).filter(|s| s.len() == 32) {
            Some(s) => (s.to_owned(), false),
            None => (format!("{:032x}", rand::random::<u128>()), true),
        };
        let cross_site = h
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site");
        Ok(Visitor {
            shopper,
            session_ended,
            csrf_seed,
            new_seed,
            secure,
            cross_site,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_is_bound_to_its_seed_and_key() {
        let dir = std::env::temp_dir().join(format!("storefront-key-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("session.key");
        std::fs::write(&path, [7u8; 32]).unwrap();
        let a = CsrfKey::load(&path).unwrap();
        let again = CsrfKey::load(&path).unwrap();
        let t = a.token("seed-1");
        assert!(
            again.verify("seed-1", &t),
            "the same key in another replica"
        );
        assert!(!a.verify("seed-2", &t), "another browser's seed");
        assert!(!a.verify("seed-1", &t[..t.len() - 2]));
        assert!(!a.verify("seed-1", "zz"));
        assert!(!CsrfKey::random().verify("seed-1", &t), "another key");
        std::fs::write(&path, b"short").unwrap();
        assert!(CsrfKey::load(&path).unwrap_err().contains("32 bytes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x_eshop_session=no; eshop_session=tok; eshop_csrf="),
        );
        assert_eq!(read_cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(read_cookie(&h, CSRF_COOKIE), None);
    }
}
