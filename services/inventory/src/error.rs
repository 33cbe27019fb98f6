//! The inventory's one error type; each variant's doc names its status.

use crate::reservation::{Shortage, State};
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
    /// 409: the change would take stock below the units held (or zero)
    /// or above the maximum.
    #[error("stock change refused")]
    Stock {
        id: String,
        quantity: i64,
        held: i64,
        delta: i64,
    },
    /// 409: setting the stock on hand below the units open holds promised.
    #[error("stock below held units")]
    BelowHeld { id: String, held: i64 },
    /// 409: deleting a product that open holds still promise units of.
    #[error("product has open holds")]
    HasHolds { id: String, held: i64 },
    /// 404: products a hold named do not exist (all of them are named).
    #[error("unknown products {0:?}")]
    UnknownProducts(Vec<String>),
    /// 409: a hold wanted more than is available; nothing was held.
    #[error("insufficient stock")]
    Insufficient(Vec<Shortage>),
    /// 404
    #[error("reservation {0:?} not found")]
    ReservationNotFound(String),
    /// 422: a hold reused an existing reservation's id with other items.
    #[error("reservation {0:?} exists with other items")]
    ReservationMismatch(String),
    /// 409: commit or release of a reservation that is no longer held.
    #[error("reservation {id:?} is {state:?}")]
    NotHeld {
        id: String,
        state: State,
        action: &'static str,
    },
    /// 412: `If-Match` named a version that is no longer current.
    #[error("version mismatch")]
    PreconditionFailed { current: i64 },
    /// 503: concurrent writers kept colliding (a PostgreSQL deadlock or
    /// serialization failure, SQLite's write lock) after a few retries.
    #[error("write contention: {0}")]
    Contention(String),
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
            sqlx::Error::Database(d) if is_contention(d.as_ref()) => {
                Error::Contention(d.to_string())
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
                quantity,
                held,
                delta,
            } => Problem::conflict(format!(
                "cannot change stock of {id:?} by {delta}: {quantity} on hand of which {held} held, \
                 and stock must stay between the held units and {}",
                crate::model::QUANTITY_MAX
            ))
            .typed("insufficient-stock"),
            Error::BelowHeld { id, held } => Problem::conflict(format!(
                "cannot set the stock of {id:?} below the {held} units open reservations hold; \
                 commit or release them first"
            ))
            .typed("stock-held"),
            Error::HasHolds { id, held } => Problem::conflict(format!(
                "cannot delete {id:?}: open reservations hold {held} of its units; \
                 commit or release them first"
            ))
            .typed("stock-held"),
            Error::UnknownProducts(ids) => Problem::not_found(format!(
                "no hold was made: {} {} not exist",
                ids.iter()
                    .map(|i| format!("product {i:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if ids.len() == 1 { "does" } else { "do" }
            ))
            .typed("not-found"),
            Error::Insufficient(short) => Problem::conflict(format!(
                "no hold was made: not enough stock for {}",
                short
                    .iter()
                    .map(|s| format!(
                        "{:?} ({} requested, {} available)",
                        s.product_id, s.requested, s.available
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .typed("insufficient-stock"),
            Error::ReservationNotFound(id) => {
                Problem::not_found(format!("reservation {id:?} does not exist")).typed("not-found")
            }
            Error::ReservationMismatch(id) => Problem::unprocessable(format!(
                "reservation {id:?} already exists with other items; \
                 a retry must send the same items, a new hold needs a new id"
            ))
            .typed("reservation-mismatch"),
            Error::NotHeld { id, state, action } => Problem::conflict(format!(
                "cannot {action} reservation {id:?}: it is {}",
                state.as_str()
            ))
            .typed("reservation-not-held"),
            Error::Contention(_) => Problem::unavailable(
                "too many concurrent changes to the same stock; try again shortly",
            )
            .typed("contention"),
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
            Error::Contention(e) => tracing::warn!(error = %e, "write contention"),
            _ => {}
        }
        let problem = self.to_problem();
        match self {
            // An RFC 9457 extension member: the checkout can tell the
            // shopper what is left of each product without parsing text.
            Error::Insufficient(short) => with_member(problem, "shortages", &short),
            _ => problem.into_response(),
        }
    }
}

fn with_member(
    problem: Problem,
    key: &str,
    value: &impl serde::Serialize,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    let status = problem.status();
    let mut body = serde_json::to_value(&problem).unwrap_or_default();
    body[key] = serde_json::to_value(value).unwrap_or_default();
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kit::problem::CONTENT_TYPE),
    );
    res
}

/// Errors a retry of the whole transaction can cure: PostgreSQL's
/// serialization failure (40001) and deadlock (40P01), SQLite's busy and
/// locked (primary codes 5 and 6, whatever their extended code).
fn is_contention(d: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return matches!(pg.code(), "40001" | "40P01");
    }
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
        return matches!(code & 0xff, 5 | 6);
    }
    false
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
