//! The inventory's one error type; each variant's doc names its status.

use kit::problem::{FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: the body was well-formed JSON but its values break the rules.
    #[error("validation failed")]
    Invalid(Vec<FieldError>),
    /// 400: a malformed path id, query or header.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404
    #[error("product {0:?} not found")]
    NotFound(String),
    /// 409: a product with this id already exists.
    #[error("product {0:?} already exists")]
    AlreadyExists(String),
    /// 409: the change would take stock below zero or above the maximum.
    #[error("stock change refused")]
    Stock {
        id: String,
        available: i64,
        delta: i64,
    },
    /// 412: `If-Match` named a version that is no longer current.
    #[error("version mismatch")]
    PreconditionFailed { current: i64 },
    /// 503: the database did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// 500: anything else; logged, never shown.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Error::Unavailable(e)
            }
            e => Error::Database(e),
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

    pub fn to_problem(&self) -> Problem {
        match self {
            Error::Invalid(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::unprocessable(detail)
                    .typed("validation")
                    .with_errors(errors.clone())
            }
            Error::BadRequest(m) => Problem::bad_request(m.clone()).typed("bad-request"),
            Error::NotFound(id) => {
                Problem::not_found(format!("product {id:?} does not exist")).typed("not-found")
            }
            Error::AlreadyExists(id) => {
                Problem::conflict(format!("product {id:?} already exists")).typed("already-exists")
            }
            Error::Stock {
                id,
                available,
                delta,
            } => Problem::conflict(format!(
                "cannot change stock of {id:?} by {delta}: {available} on hand, and stock must stay between 0 and {}",
                crate::model::QUANTITY_MAX
            ))
            .typed("insufficient-stock"),
            Error::PreconditionFailed { current } => Problem::new(
                axum::http::StatusCode::PRECONDITION_FAILED,
                format!("If-Match does not match the current version (ETag \"{current}\"); fetch the product again"),
            )
            .typed("version-mismatch"),
            Error::Unavailable(_) => {
                Problem::unavailable("the inventory database is not answering; try again shortly")
                    .typed("unavailable")
            }
            Error::Database(_) => Problem::internal(),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        match &self {
            Error::Unavailable(e) | Error::Database(e) => {
                tracing::error!(error = %e, "database failure")
            }
            _ => {}
        }
        self.to_problem().into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
