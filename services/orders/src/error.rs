//! The orders service's one error type; each variant's doc names its
//! status. A checkout that fails is not an error of the request (it is an
//! order whose state is `failed`): api.rs answers those.

use axum::http::{header, HeaderValue, StatusCode};
use kit::auth::AuthError;
use kit::problem::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the body's values (or the cart) break the rules, one entry
    /// per field.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// 400: a header, path or query parameter is missing or malformed.
    #[error("bad request: {}", .0.message)]
    BadRequest(FieldError),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: the cart already holds the most products it may.
    #[error("the cart is full")]
    CartFull,
    /// 422: an Idempotency-Key already used for a checkout of another cart.
    #[error("idempotency key reused")]
    KeyReuse,
    /// 401/403/503 from the bearer token.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 503: the database is not answering.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// 503: a lock or statement timed out, or transactions kept colliding.
    #[error("database busy: {0}")]
    Busy(#[source] sqlx::Error),
    /// 500: anything else; logged, never shown.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

/// Worth running the whole transaction again: serialization failures and
/// deadlocks.
pub use kit::db::is_retryable;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match kit::db::classify(&e) {
            kit::db::Failure::Unavailable => Error::Unavailable(e),
            kit::db::Failure::Busy => Error::Busy(e),
            kit::db::Failure::Fault => Error::Database(e),
        }
    }
}

impl Error {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> Self {
        Error::BadRequest(FieldError {
            field: field.into(),
            message: message.into(),
        })
    }

    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Invalid(errors) => Problem::validation(errors.clone()),
            Error::BadRequest(e) => Problem::bad_request(format!("{}: {}", e.field, e.message))
                .typed("bad-request")
                .with_errors(vec![e.clone()]),
            Error::NotFound(what) => Problem::not_found(what.clone()).typed("not-found"),
            Error::CartFull => Problem::conflict(format!(
                "the cart already holds {} products, the most it may; remove one first",
                crate::model::CART_LINES_MAX
            ))
            .typed("cart-full"),
            Error::KeyReuse => Problem::unprocessable(
                "this Idempotency-Key was already used to check out another cart; use a new key for a new checkout",
            )
            .typed("idempotency-key-reuse")
            .with_errors(vec![FieldError {
                field: crate::model::KEY_HEADER.into(),
                message: "already names a checkout of another cart".into(),
            }]),
            Error::Auth(e) => e.to_problem(),
            Error::Unavailable(_) => {
                Problem::unavailable("the orders database is not answering; try again shortly")
                    .typed("unavailable")
            }
            Error::Busy(_) => {
                Problem::unavailable("the orders database is busy; try again shortly")
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
            Error::Unavailable(ref e) | Error::Busy(ref e) => {
                tracing::warn!(error = %e, "database unavailable")
            }
            Error::Database(ref e) => tracing::error!(error = %e, "database failure"),
            _ => {}
        }
        let retry = matches!(self, Error::Unavailable(_) | Error::Busy(_));
        let mut res = self.to_problem().into_response();
        if retry {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

/// The status of a problem, for handlers that build their own.
pub fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
