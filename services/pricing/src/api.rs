//! calculate_price as JSON, and the input rules the landing page shares.

use crate::inventory::FetchError;
use crate::quote::{self, Quote};
use crate::State as AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kit::extract::{Json, Query};
use kit::telemetry::RequestContext;
use kit::Problem;
use serde::Deserialize;
use std::sync::Arc;

/// Why no price could be given; each variant's doc names its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    /// 400: the product id is missing or could not be an id.
    BadProduct(String),
    /// 422: quantity missing, not a whole number, or out of range.
    BadQuantity(String),
    /// 404
    UnknownProduct(String),
    /// 503 (with Retry-After): inventory down, slow or failing.
    InventoryUnavailable,
}

impl PriceError {
    pub fn status(&self) -> StatusCode {
        match self {
            PriceError::BadProduct(_) => StatusCode::BAD_REQUEST,
            PriceError::BadQuantity(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PriceError::UnknownProduct(_) => StatusCode::NOT_FOUND,
            PriceError::InventoryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A sentence a shopper can act on.
    pub fn message(&self) -> String {
        match self {
            PriceError::BadProduct(m) | PriceError::BadQuantity(m) => m.clone(),
            PriceError::UnknownProduct(id) => {
                format!("We could not find a product with ID “{id}”. Please check the ID and try again.")
            }
            PriceError::InventoryUnavailable => "Prices are unavailable right now because the inventory is not answering. Please try again in a moment.".to_owned(),
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            PriceError::BadProduct(_) => "invalid-product-id",
            PriceError::BadQuantity(_) => "invalid-quantity",
            PriceError::UnknownProduct(_) => "unknown-product",
            PriceError::InventoryUnavailable => "inventory-unavailable",
        }
    }
}

impl IntoResponse for PriceError {
    fn into_response(self) -> Response {
        let mut res = Problem::new(self.status(), self.message())
            .typed(self.slug())
            .into_response();
        if self == PriceError::InventoryUnavailable {
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        }
        res
    }
}

pub use kit::ids::ID_MAX;

/// Same rule as the inventory's ids, checked here so nothing odd is ever
/// put into the inventory URL.
pub fn check_product_id(raw: Option<&str>) -> Result<String, PriceError> {
    let id = raw.map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Err(PriceError::BadProduct("Please enter a product ID.".into()));
    }
    if !kit::ids::valid(id) {
        return Err(PriceError::BadProduct(format!(
            "“{}” is not a product ID: IDs are up to {ID_MAX} letters, digits, dots, dashes or underscores.",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(id.to_owned())
}

pub fn check_quantity(raw: Option<&str>, max: i64) -> Result<i64, PriceError> {
    let q = raw.map(str::trim).unwrap_or("");
    if q.is_empty() {
        return Err(PriceError::BadQuantity("Please enter a quantity.".into()));
    }
    let digits = q.strip_prefix(['+', '-']).unwrap_or(q);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PriceError::BadQuantity(format!(
            "The quantity must be a whole number, like 3 (got “{}”).",
            q.chars().take(20).collect::<String>()
        )));
    }
    // Digits too long for i64 are certainly above any maximum.
    check_quantity_value(q.parse::<i64>().unwrap_or(i64::MAX), max)
}

/// The range rule, for quantities that arrive as numbers (JSON bodies).
pub fn check_quantity_value(n: i64, max: i64) -> Result<i64, PriceError> {
    if n < 1 {
        Err(PriceError::BadQuantity(
            "The quantity must be at least 1.".into(),
        ))
    } else if n > max {
        Err(PriceError::BadQuantity(format!(
            "The quantity must be at most {max}."
        )))
    } else {
        Ok(n)
    }
}

/// Fetches the product and prices `quantity` of it.
pub async fn calculate(
    state: &AppState,
    ctx: &RequestContext,
    product_id: &str,
    quantity: i64,
) -> Result<Quote, PriceError> {
    let p = state
        .inventory
        .product(product_id, ctx)
        .await
        .map_err(|e| match e {
            FetchError::NotFound => PriceError::UnknownProduct(product_id.to_owned()),
            FetchError::Unavailable(_) => PriceError::InventoryUnavailable,
        })?;
    quote::quote(&(&p).into(), quantity, &state.rules()).ok_or_else(|| {
        PriceError::BadQuantity(
            "That order is too large to price; please use a smaller quantity.".into(),
        )
    })
}

#[derive(Debug, Deserialize)]
pub struct PriceQuery {
    pub product_id: Option<String>,
    pub quantity: Option<String>,
}

pub async fn get_price(
    State(state): State<Arc<AppState>>,
    ctx: RequestContext,
    Query(q): Query<PriceQuery>,
) -> Result<axum::Json<Quote>, PriceError> {
    let id = check_product_id(q.product_id.as_deref())?;
    let quantity = check_quantity(q.quantity.as_deref(), state.max_quantity)?;
    Ok(axum::Json(calculate(&state, &ctx, &id, quantity).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    pub product_id: String,
    pub quantity: i64,
}

pub async fn post_price(
    State(state): State<Arc<AppState>>,
    ctx: RequestContext,
    Json(body): Json<PriceRequest>,
) -> Result<axum::Json<Quote>, PriceError> {
    let id = check_product_id(Some(&body.product_id))?;
    let quantity = check_quantity_value(body.quantity, state.max_quantity)?;
    Ok(axum::Json(calculate(&state, &ctx, &id, quantity).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_checked_in_words() {
        assert_eq!(check_quantity(Some("3"), 10), Ok(3));
        assert_eq!(check_quantity(Some(" +3 "), 10), Ok(3));
        for bad in [
            "0",
            "-1",
            "abc",
            "1.5",
            "1e3",
            "",
            "99999999999999999999999",
            "11",
        ] {
            let e = check_quantity(Some(bad), 10).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
        assert!(check_quantity(None, 10)
            .unwrap_err()
            .message()
            .contains("enter a quantity"));
    }

    #[test]
    fn product_ids_cannot_smuggle_paths() {
        for bad in ["../readyz", "a/b", "a?b", "a b", "%2e%2e", "é"] {
            assert_eq!(
                check_product_id(Some(bad)).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
        assert_eq!(check_product_id(Some(" SKU-1 ")), Ok("SKU-1".into()));
    }
}
