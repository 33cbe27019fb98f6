//! The payments service's one error type; each variant's doc names its status.

use axum::http::{header, HeaderValue, StatusCode};
use kit::auth::AuthError;
use kit::problem::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the body's values break the rules, one entry per field.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// 400: a header or path parameter is missing or malformed; names it.
    #[error("bad request: {}", .0.message)]
    BadRequest(FieldError),
    /// 403: a valid caller acting on someone else's wallet.
    #[error("{0}")]
    Forbidden(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: the wallet holds less than the charge.
    #[error("insufficient funds")]
    InsufficientFunds {
        balance_minor: i64,
        currency: String,
    },
    /// 409: the refund would take the charge's refunds above its amount.
    #[error("refund exceeds the charge")]
    RefundExceedsCharge {
        refundable_minor: i64,
        currency: String,
    },
    /// 422: the wallet holds another currency.
    #[error("currency mismatch")]
    CurrencyMismatch { wallet_currency: String },
    /// 422: an Idempotency-Key already used for a different request.
    #[error("idempotency key reused")]
    KeyReuse,
    /// 401/403/503 from the bearer token.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 503: the database is not answering (down, restarting, unreachable,
    /// refusing connections, or no pooled connection within
    /// DB_ACQUIRE_TIMEOUT_MS).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// 503: the database answered but a lock or statement timed out, or
    /// concurrent transactions kept conflicting.
    #[error("database busy: {0}")]
    Busy(#[source] sqlx::Error),
    /// 500: anything else; logged, never shown.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

/// Worth running the whole transaction again: serialization failures and
/// deadlocks (neither is expected at READ COMMITTED with the
/// fixed lock order of ledger.rs, but both are safe to retry).
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

    /// An answer about the money itself (the wallet, the charge, the
    /// funds): the outcome of the request, stored under its
    /// Idempotency-Key like a success, so a retry gets the same answer.
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            Error::NotFound(_)
                | Error::InsufficientFunds { .. }
                | Error::RefundExceedsCharge { .. }
                | Error::CurrencyMismatch { .. }
        )
    }

    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Invalid(errors) => Problem::validation(errors.clone()),
            Error::BadRequest(e) => Problem::bad_request(format!("{}: {}", e.field, e.message))
                .typed("bad-request")
                .with_errors(vec![e.clone()]),
            Error::Forbidden(why) => Problem::new(StatusCode::FORBIDDEN, why).typed("forbidden"),
            Error::NotFound(what) => Problem::not_found(what.clone()).typed("not-found"),
            Error::InsufficientFunds {
                balance_minor,
                currency,
            } => Problem::conflict(format!(
                "insufficient funds: the wallet holds {} {currency} ({balance_minor} minor units)",
                kit::money::format_minor(*balance_minor, currency)
            ))
            .typed("insufficient-funds"),
            Error::RefundExceedsCharge {
                refundable_minor,
                currency,
            } => Problem::conflict(format!(
                "the refunds would exceed the charge: {} {currency} ({refundable_minor} minor units) is left to refund",
                kit::money::format_minor(*refundable_minor, currency)
            ))
            .typed("refund-exceeds-charge"),
            Error::CurrencyMismatch { wallet_currency } => Problem::unprocessable(format!(
                "currency: this wallet holds {wallet_currency}; amounts must be in {wallet_currency}"
            ))
            .typed("currency-mismatch")
            .with_errors(vec![FieldError {
                field: "currency".into(),
                message: format!("must be {wallet_currency}, the wallet's currency"),
            }]),
            Error::KeyReuse => Problem::unprocessable(
                "this Idempotency-Key was already used for a different request; use a new key for a new request",
            )
            .typed("idempotency-key-reuse"),
            Error::Auth(e) => e.to_problem(),
            Error::Unavailable(_) => Problem::unavailable(
                "the payments database is not answering; retry with the same Idempotency-Key",
            )
            .typed("unavailable"),
            Error::Busy(_) => Problem::unavailable(
                "the payments database is busy; retry with the same Idempotency-Key",
            )
            .typed("unavailable"),
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
