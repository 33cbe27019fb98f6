//! Access tokens, written once for every service: the users service signs
//! them ([`Signer`]), the others verify them ([`Verifier`]) and hand their
//! handlers the caller ([`Caller`]).
//!
//! A token is a JWT signed with Ed25519 (`alg` EdDSA, RFC 8037) carrying
//! `sub` (the user id), `aud`, `iat`, `exp`, `roles` and, in its header,
//! the `kid` of the key that signed it. Verifiers fetch the public keys
//! from the users service's `/.well-known/jwks.json`, keep them, and fetch
//! again when a token names a key they do not know (a rotation), at most
//! once per [`REFETCH_AFTER`] so random `kid`s cannot make them hammer it.
//! Only EdDSA is accepted: `alg: none`, HMAC with the public key as the
//! secret and every other algorithm are refused before any key is used.

mod service;

pub use service::ServiceToken;

use crate::problem::Problem;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::KeyPair;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shortest time between two JWKS fetches caused by unknown keys.
pub const REFETCH_AFTER: Duration = Duration::from_secs(5);
/// Keys are fetched again after this long anyway, so a retired key stops
/// verifying without a restart.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// --- signing ------------------------------------------------------------

/// An Ed25519 private key and its key id.
pub struct Signer {
    kid: String,
    public: Vec<u8>,
    key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

/// The key id of a public key: the first 16 hex digits of its SHA-256, so
/// the same key always has the same id and two keys never share one.
pub fn key_id(public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Signer {
    /// A new random key, as PKCS#8 DER (what [`Signer::from_pkcs8`] reads).
    pub fn generate_pkcs8() -> Result<Vec<u8>, String> {
        let rng = ring::rand::SystemRandom::new();
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| "the system random source failed".to_owned())
    }

    /// An Ed25519 key in PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| format!("not an Ed25519 private key in PKCS#8 DER: {e}"))?;
        let public = pair.public_key().as_ref().to_vec();
        Ok(Self {
            kid: key_id(&public),
            public,
            key: EncodingKey::from_ed_der(der),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (RFC 8037: `OKP`, `Ed25519`, `x`).
    pub fn jwk(&self) -> serde_json::Value {
        public_jwk(&self.kid, &self.public)
    }

    /// A token for `sub` with `roles`, valid for `ttl`.
    pub fn sign(
        &self,
        sub: &str,
        audience: &str,
        roles: &[String],
        ttl: Duration,
    ) -> Result<String, String> {
        let iat = now_secs();
        let claims = Claims {
            sub: sub.to_owned(),
            aud: audience.to_owned(),
            iat,
            exp: iat + ttl.as_secs(),
            roles: roles.to_vec(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }
}

/// A public Ed25519 key as a JWK.
pub fn public_jwk(kid: &str, public: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(public),
    })
}

/// The public key of a PKCS#8 Ed25519 private key (to keep publishing a
/// retired key's public half).
pub fn public_key_of(der: &[u8]) -> Result<Vec<u8>, String> {
    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map(|p| p.public_key().as_ref().to_vec())
        .map_err(|e| format!("not an Ed25519 private key in PKCS#8 DER: {e}"))
}

// --- verifying ----------------------------------------------------------

/// Why a request carries no valid token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401: no `Authorization: Bearer …`.
    #[error("this request needs a bearer token (Authorization: Bearer …)")]
    Missing,
    /// 401: the token is not one we accept; the words say why, without
    /// echoing it.
    #[error("the bearer token is not valid: {0}")]
    Invalid(String),
    /// 403: a valid token without the role the action needs.
    #[error("this action needs the {0:?} role")]
    Forbidden(String),
    /// 503: the keys could not be fetched to check the token.
    #[error("tokens cannot be checked right now: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn to_problem(&self) -> Problem {
        let (status, slug) = match self {
            AuthError::Missing | AuthError::Invalid(_) => {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            }
            AuthError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Problem::new(status, self.to_string()).typed(slug)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut res = self.to_problem().into_response();
        // RFC 6750 §3: say how to authenticate, and why it failed.
        let challenge = match &self {
            AuthError::Missing => Some("Bearer realm=\"eshop\"".to_owned()),
            AuthError::Invalid(_) => {
                Some("Bearer realm=\"eshop\", error=\"invalid_token\"".to_owned())
            }
            AuthError::Forbidden(_) => {
                Some("Bearer realm=\"eshop\", error=\"insufficient_scope\"".to_owned())
            }
            AuthError::Unavailable(_) => None,
        };
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if matches!(self, AuthError::Unavailable(_)) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Checks tokens against the users service's published keys.
pub struct Verifier {
    /// None: the keys given at construction, never fetched (the users
    /// service checking its own tokens).
    jwks_url: Option<String>,
    audience: String,
    /// Built at the first fetch: its TLS roots cost ~2 MB a service that
    /// has verified nothing yet need not hold.
    http: std::sync::OnceLock<reqwest::Client>,
    keys: tokio::sync::RwLock<Keys>,
    /// One fetch at a time; others wait for its result.
    fetching: tokio::sync::Mutex<()>,
    verified: Verified,
}

/// Tokens this verifier has already verified, with their claims, until
/// they expire. A client sends the same token with every request for its
/// lifetime, and checking an Ed25519 signature costs more than the rest of
/// a stock hold (measured: see README, "Performance"). A hit needs the
/// exact token bytes that passed, so it accepts nothing a full check
/// would not; the map is emptied whenever the signing keys are fetched
/// again (a key taken out of the set stops its tokens at once) and when
/// it is full.
#[derive(Default)]
struct Verified(std::sync::Mutex<HashMap<String, Claims>>);

/// Entries before the map starts afresh: about 0.4 MB at most.
const VERIFIED_MAX: usize = 1024;

impl Verified {
    fn get(&self, token: &str, now: u64) -> Option<Claims> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.get(token)?;
        if c.exp + LEEWAY_SECS < now {
            m.remove(token);
            return None;
        }
        Some(c.clone())
    }

    fn put(&self, token: &str, claims: &Claims, now: u64) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= VERIFIED_MAX {
            m.retain(|_, c| c.exp + LEEWAY_SECS >= now);
            if m.len() >= VERIFIED_MAX {
                m.clear();
            }
        }
        m.insert(token.to_owned(), claims.clone());
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Verifier {
    pub fn new(jwks_url: impl Into<String>, audience: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            jwks_url: Some(jwks_url.into()),
            audience: audience.into(),
            http: std::sync::OnceLock::new(),
            keys: Default::default(),
            fetching: Default::default(),
            verified: Default::default(),
        })
    }

    /// A verifier for the keys of a JWK set (`{"keys": [...]}`), which
    /// never fetches.
    pub fn with_keys(jwks: &serde_json::Value, audience: impl Into<String>) -> Arc<Self> {
        let v = Self {
            jwks_url: None,
            audience: audience.into(),
            http: std::sync::OnceLock::new(),
            keys: tokio::sync::RwLock::new(Keys {
                by_kid: parse_jwks(jwks),
                fetched: None,
            }),
            fetching: Default::default(),
            verified: Default::default(),
        };
        Arc::new(v)
    }

    /// The key for `kid`, fetching the set when it is unknown or old.
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if self.jwks_url.is_none() {
            return self
                .keys
                .read()
                .await
                .by_kid
                .get(kid)
                .cloned()
                .ok_or_else(|| AuthError::Invalid("signed by an unknown key".into()));
        }
        {
            let k = self.keys.read().await;
            let fresh = k.fetched.is_some_and(|t| t.elapsed() < KEYS_MAX_AGE);
            if let (Some(key), true) = (k.by_kid.get(kid), fresh) {
                return Ok(key.clone());
            }
        }
        let _one = self.fetching.lock().await;
        {
            let k = self.keys.read().await;
            let recent = k.fetched.is_some_and(|t| t.elapsed() < REFETCH_AFTER);
            if recent {
                return k
                    .by_kid
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| AuthError::Invalid("signed by an unknown key".into()));
            }
        }
        let fetched = self.fetch().await;
        let mut k = self.keys.write().await;
        match fetched {
            Ok(by_kid) => {
                k.by_kid = by_kid;
                k.fetched = Some(Instant::now());
                self.verified.clear();
            }
            // Keys we already have keep working while users is away.
            Err(e) => {
                return k.by_kid.get(kid).cloned().ok_or(AuthError::Unavailable(e));
            }
        }
        k.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("signed by an unknown key".into()))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let url = self.jwks_url.as_deref().unwrap_or_default();
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("a client with a timeout builds")
        });
        let r = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching the signing keys: {}", e.without_url()))?;
        if !r.status().is_success() {
            return Err(format!("fetching the signing keys: HTTP {}", r.status()));
        }
        let set: serde_json::Value = r
            .json()
            .await
            .map_err(|e| format!("the signing keys are not JSON: {}", e.without_url()))?;
        Ok(parse_jwks(&set))
    }

    /// The token's claims if it is one of ours, for our audience, unexpired.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if let Some(claims) = self.verified.get(token, now_secs()) {
            // Only while the keys that verified it are current; once they
            // are due for a refresh, the full check fetches them.
            if self.jwks_url.is_none()
                || self
                    .keys
                    .read()
                    .await
                    .fetched
                    .is_some_and(|t| t.elapsed() < KEYS_MAX_AGE)
            {
                return Ok(claims);
            }
        }
        let claims = self.verify_fully(token).await?;
        self.verified.put(token, &claims, now_secs());
        Ok(claims)
    }

    async fn verify_fully(&self, token: &str) -> Result<Claims, AuthError> {
        let bad = |why: &str| AuthError::Invalid(why.to_owned());
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(bad("not signed with EdDSA"));
        }
        let kid = header.kid.ok_or_else(|| bad("no key id (kid)"))?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "sub", "aud"]);
        v.leeway = LEEWAY_SECS;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            bad(match e.kind() {
                K::ExpiredSignature => "expired",
                K::InvalidAudience => "for another audience",
                K::InvalidSignature => "its signature does not verify",
                _ => "malformed",
            })
        })?;
        if data.claims.iat > now_secs() + LEEWAY_SECS {
            return Err(bad("issued in the future"));
        }
        Ok(data.claims)
    }
}

/// Where a service that checks tokens finds the users service's keys:
/// `USERS_JWKS_URL`, else `$USERS_URL/.well-known/jwks.json` (eshop sets
/// `USERS_URL` from the catalogue's calls). Required: a service that checks
/// tokens with no keys would refuse every caller.
pub fn jwks_url(r: &crate::config::Reader) -> Result<String, crate::config::ConfigError> {
    use crate::config::ConfigError;
    let (key, url) = match (r.raw("USERS_JWKS_URL"), r.raw("USERS_URL")) {
        (Some(u), _) => ("USERS_JWKS_URL", u),
        (None, Some(u)) => (
            "USERS_URL",
            format!("{}/.well-known/jwks.json", u.trim_end_matches('/')),
        ),
        (None, None) => {
            return Err(ConfigError::new(
                "USERS_URL",
                "",
                "is required (or USERS_JWKS_URL): tokens are checked against the users service's keys, e.g. http://users:8082",
            ))
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::new(
            key,
            &url,
            "must be an http:// or https:// URL",
        ));
    }
    Ok(url)
}

/// The Ed25519 keys of a JWK set by kid; anything else in it is ignored.
fn parse_jwks(set: &serde_json::Value) -> HashMap<String, DecodingKey> {
    let mut out = HashMap::new();
    for k in set["keys"].as_array().into_iter().flatten() {
        if k["kty"] != "OKP" || k["crv"] != "Ed25519" {
            continue;
        }
        let (Some(kid), Some(x)) = (k["kid"].as_str(), k["x"].as_str()) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_ed_components(x) {
            out.insert(kid.to_owned(), key);
        }
    }
    out
}

/// The caller of a request, from a verified bearer token. Needs the
/// router to carry the [`Verifier`] (`.layer(Extension(verifier))`).
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// 403 unless the caller has `role`.
    pub fn require(&self, role: &str) -> Result<(), AuthError> {
        if self.0.has_role(role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(role.to_owned()))
        }
    }
}

/// A caller with the `admin` role (403 for anyone else): for handlers only
/// administrators may call, e.g. changing the catalogue or the stock.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let c = Caller::from_request_parts(parts, state).await?;
        c.require("admin")?;
        Ok(Admin(c.0))
    }
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let h = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let s = h
        .to_str()
        .map_err(|_| AuthError::Invalid("not ASCII".into()))?;
    let (scheme, token) = s.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts
            .extensions
            .get::<Arc<Verifier>>()
            .cloned()
            .ok_or_else(|| AuthError::Unavailable("no token verifier configured".into()))?;
        let token = bearer(parts)?;
        Ok(Caller(verifier.verify(token).await?))
    }
}

#[cfg(test)]
mod tests;
