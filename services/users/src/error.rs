//! The users service's one error type; each variant's doc names its status.

use axum::http::{header, HeaderValue};
use kit::auth::AuthError;
use kit::problem::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the body's values break the rules (email, password policy).
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: an account with this email exists.
    #[error("email taken")]
    EmailTaken,
    /// 401: unknown email or wrong password, one answer for both.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 401: no such service client, or the wrong secret.
    #[error("invalid client")]
    InvalidClient,
    /// 429 with Retry-After (seconds).
    #[error("too many attempts")]
    RateLimited(u64),
    /// 503: every password-hashing slot stayed busy.
    #[error("busy")]
    Busy,
    /// 401/403/503 from the bearer token.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 503: the database did not answer in time, or gave up waiting on a
    /// lock.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// 500: anything else; logged, never shown.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match kit::db::classify(&e) {
            // A lock or statement timeout is the database's busy: 503 too.
            kit::db::Failure::Unavailable | kit::db::Failure::Busy => Error::Unavailable(e),
            kit::db::Failure::Fault => Error::Database(e),
        }
    }
}

impl From<crate::password::Busy> for Error {
    fn from(_: crate::password::Busy) -> Self {
        Error::Busy
    }
}

impl Error {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Invalid(errors) => Problem::validation(errors.clone()),
            Error::NotFound(what) => Problem::not_found(what.clone()).typed("not-found"),
            Error::EmailTaken => {
                Problem::conflict("an account with this email exists; log in instead")
                    .typed("email-taken")
            }
            Error::InvalidCredentials => Problem::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid email or password",
            )
            .typed("invalid-credentials"),
            Error::InvalidClient => Problem::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unknown service client or wrong secret",
            )
            .typed("invalid-client"),
            Error::RateLimited(secs) => Problem::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("too many login attempts; try again in {secs} s"),
            )
            .typed("rate-limited"),
            Error::Busy => Problem::unavailable("too many logins at once; try again shortly")
                .typed("unavailable"),
            Error::Auth(e) => e.to_problem(),
            Error::Unavailable(_) => {
                Problem::unavailable("the users database is not answering; try again shortly")
                    .typed("unavailable")
            }
            Error::Database(_) => Problem::internal(),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        match self {
            Error::Auth(e) => return e.into_response(),
            Error::Unavailable(ref e) | Error::Database(ref e) => {
                tracing::error!(error = %e, "database failure")
            }
            _ => {}
        }
        let retry = match &self {
            Error::RateLimited(secs) => Some(*secs),
            Error::Busy | Error::Unavailable(_) => Some(1),
            _ => None,
        };
        let mut res = self.to_problem().into_response();
        if let Error::InvalidClient = self {
            // RFC 6749 §5.2: a failed client authentication by HTTP Basic
            // answers with its challenge.
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"eshop services\""),
            );
        }
        if let Some(s) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, s);
        }
        res
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
