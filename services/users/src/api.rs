//! HTTP routes: sign-up (POST /users), login (POST /tokens), the caller's
//! account (GET /me), role grants (PUT/DELETE /users/{id}/roles/{role},
//! admins only), the shop's own services' tokens (POST /service-tokens) and
//! the public keys (GET /.well-known/jwks.json).

use crate::db::{Store, User};
use crate::error::{Error, Result};
use crate::limiter::Limiter;
use crate::password::{check_password, normalise_email, Hasher};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use kit::auth::{Caller, Signer, Verifier};
use kit::extract::{Json, Path};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The roles a grant may name.
pub const ROLES: [&str; 1] = ["admin"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Logins and sign-ups by outcome, for the dashboard.
#[derive(Clone, Default)]
pub struct Metrics {
    pub logins: Family<Outcome, Counter>,
    pub signups: Family<Outcome, Counter>,
}

impl Metrics {
    pub fn register(&self, m: &mut kit::metrics::Metrics) {
        let r = m.registry_mut();
        r.register(
            "users_logins",
            "Login attempts by outcome (success, invalid, rate_limited, busy)",
            self.logins.clone(),
        );
        r.register(
            "users_signups",
            "Sign-ups by outcome (created, taken, invalid)",
            self.signups.clone(),
        );
    }

    fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&Outcome { outcome }).inc();
    }

    fn signup(&self, outcome: &'static str) {
        self.signups.get_or_create(&Outcome { outcome }).inc();
    }
}

pub struct AppState {
    pub store: Store,
    pub hasher: Arc<Hasher>,
    pub signer: Signer,
    pub jwks: serde_json::Value,
    pub audience: String,
    pub token_ttl: Duration,
    /// Emails that are admins from the start (ADMIN_EMAILS): the first
    /// admin, who can then grant the role to others.
    pub admin_emails: Vec<String>,
    pub service_clients: Arc<crate::clients::Clients>,
    pub service_token_ttl: Duration,
    pub per_account: Limiter,
    pub per_address: Limiter,
    pub metrics: Metrics,
}

type St = State<Arc<AppState>>;

pub fn routes(state: Arc<AppState>, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/users", post(sign_up))
        .route("/tokens", post(login))
        .route("/service-tokens", post(service_token))
        .route("/me", get(me))
        .route("/users/{id}/roles/{role}", put(grant).delete(revoke))
        .route("/.well-known/jwks.json", get(jwks))
        .layer(axum::Extension(verifier))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

/// The account as its owner sees it, with the roles its tokens carry.
fn account(s: &AppState, mut u: User) -> User {
    if s.admin_emails.contains(&u.email) && !u.roles.iter().any(|r| r == "admin") {
        u.roles.push("admin".into());
    }
    u
}

async fn sign_up(State(s): St, Json(c): Json<Credentials>) -> Result<Response> {
    let checked = normalise_email(&c.email)
        .map_err(|m| Error::field("email", m))
        .and_then(|email| {
            check_password(&c.password, &email)
                .map(|()| email)
                .map_err(|m| Error::field("password", m))
        });
    let email = match checked {
        Ok(e) => e,
        Err(e) => {
            s.metrics.signup("invalid");
            return Err(e);
        }
    };
    let hash = s.hasher.hash(c.password).await?;
    match s.store.create(&email, &hash).await {
        Ok(u) => {
            s.metrics.signup("created");
            Ok((StatusCode::CREATED, axum::Json(account(&s, u))).into_response())
        }
        Err(Error::EmailTaken) => {
            s.metrics.signup("taken");
            Err(Error::EmailTaken)
        }
        Err(e) => Err(e),
    }
}

async fn login(
    State(s): St,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Json(c): Json<Credentials>,
) -> Result<Response> {
    let address = peer.map(|p| p.0 .0.ip().to_string()).unwrap_or_default();
    // A malformed address is simply an unknown account: same answer.
    let email = normalise_email(&c.email).unwrap_or_default();
    let limited = s
        .per_address
        .check(&address)
        .and_then(|()| s.per_account.check(&email));
    if let Err(secs) = limited {
        s.metrics.login("rate_limited");
        return Err(Error::RateLimited(secs));
    }
    s.per_address.hit(&address);
    let found = if email.is_empty() {
        None
    } else {
        s.store.by_email(&email).await?
    };
    let (user, stored) = match found {
        Some((u, h)) => (Some(u), Some(h)),
        None => (None, None),
    };
    let ok = match s.hasher.verify(c.password, stored).await {
        Ok(ok) => ok,
        Err(busy) => {
            s.metrics.login("busy");
            return Err(busy.into());
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        s.per_account.hit(&email);
        s.metrics.login("invalid");
        return Err(Error::InvalidCredentials);
    };
    s.per_account.reset(&email);
    let user = account(&s, user);
    let token = s
        .signer
        .sign(&user.id, &s.audience, &user.roles, s.token_ttl)
        .map_err(|e| {
            tracing::error!(error = %e, "signing a token failed");
            Error::Busy
        })?;
    s.metrics.login("success");
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.token_ttl.as_secs(),
    });
    // RFC 6749 §5.1: a response carrying a token is never cached.
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

/// A token with the role `service` for one of the shop's services, proven
/// by its client secret (HTTP Basic). Failures count against the caller's
/// address like failed logins.
async fn service_token(
    State(s): St,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let address = peer.map(|p| p.0 .0.ip().to_string()).unwrap_or_default();
    if let Err(secs) = s.per_address.check(&address) {
        return Err(Error::RateLimited(secs));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(client) = s.service_clients.authenticate(authorization) else {
        s.per_address.hit(&address);
        return Err(Error::InvalidClient);
    };
    let roles = ["service".to_owned()];
    let token = s
        .signer
        .sign(
            &format!("service:{client}"),
            &s.audience,
            &roles,
            s.service_token_ttl,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "signing a token failed");
            Error::Busy
        })?;
    tracing::info!(client, "issued a service token");
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.service_token_ttl.as_secs(),
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

async fn me(State(s): St, caller: Caller) -> Result<axum::Json<User>> {
    let u = s
        .store
        .by_id(&caller.0.sub)
        .await?
        .ok_or_else(|| Error::NotFound("this account no longer exists".into()))?;
    Ok(axum::Json(account(&s, u)))
}

async fn set_role(s: &AppState, caller: &Caller, id: &str, role: &str, on: bool) -> Result<User> {
    caller.require("admin")?;
    if !ROLES.contains(&role) {
        return Err(Error::NotFound(format!(
            "no role {role:?}; roles: {}",
            ROLES.join(", ")
        )));
    }
    let u = s
        .store
        .set_role(id, role, on)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user {id:?}")))?;
    Ok(account(s, u))
}

async fn grant(
    State(s): St,
    caller: Caller,
    Path((id, role)): Path<(String, String)>,
) -> Result<axum::Json<User>> {
    set_role(&s, &caller, &id, &role, true)
        .await
        .map(axum::Json)
}

async fn revoke(
    State(s): St,
    caller: Caller,
    Path((id, role)): Path<(String, String)>,
) -> Result<axum::Json<User>> {
    set_role(&s, &caller, &id, &role, false)
        .await
        .map(axum::Json)
}

async fn jwks(State(s): St) -> Response {
    // Short caching: a rotation reaches verifiers within minutes.
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(s.jwks.clone()),
    )
        .into_response()
}
