//! Extractors whose rejections are problem+json instead of axum's plain text.

use crate::problem::Problem;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// JSON body; malformed JSON is 400, well-formed but wrong shape is 422,
/// a missing `Content-Type: application/json` is 415, too large is 413.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_problem(rej)),
        }
    }
}

fn json_problem(rej: JsonRejection) -> Problem {
    let status = rej.status();
    let detail = match &rej {
        JsonRejection::JsonDataError(e) => {
            format!("request body has the wrong shape: {}", source_text(e))
        }
        JsonRejection::JsonSyntaxError(e) => {
            format!("request body is not valid JSON: {}", source_text(e))
        }
        JsonRejection::MissingJsonContentType(_) => {
            "expected a request body with Content-Type: application/json".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        _ => "request body could not be read".to_owned(),
    };
    Problem::new(status, detail).typed("invalid-body")
}

/// serde's message about the client's own input (field, line, column): useful
/// to the client and free of server internals.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    last
}

/// Query string; anything unparsable is 400.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Problem::bad_request(
                format!("invalid query string: {}", source_text(&e)),
            )
            .typed("invalid-query")),
            Err(_) => Err(Problem::bad_request("invalid query string").typed("invalid-query")),
        }
    }
}

/// Path parameters; anything unparsable (bad percent-encoding, wrong type) is 400.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Problem::bad_request(
                format!("invalid path parameter: {}", e.body_text()),
            )
            .typed("invalid-path")),
            Err(_) => Err(Problem::bad_request("invalid path").typed("invalid-path")),
        }
    }
}
