//! `POST /quote`: many lines priced at once, for a cart or a checkout.
//!
//! Each line is priced exactly as calculate_price prices it (quote.rs:
//! its own volume discount, tax and half-to-even rounding), and the totals
//! are the sums of the lines, so a basket's total always equals what its
//! lines say. A basket has one currency: products priced in several are a
//! 422, never a sum of euros and yen.

use crate::api::{check_product_id, check_quantity_value, PriceError};
use crate::inventory::FetchError;
use crate::quote::{self, Quote};
use crate::State as AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kit::extract::Json;
use kit::problem::FieldError;
use kit::telemetry::RequestContext;
use kit::Problem;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// Lines one quote may have (a cart is far smaller).
pub const LINES_MAX: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub items: Vec<Line>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Basket {
    pub currency: String,
    pub minor_unit_exponent: u8,
    /// In the order the request listed them.
    pub lines: Vec<Quote>,
    pub subtotal_minor: i64,
    pub discount_minor: i64,
    pub tax_minor: i64,
    pub total_minor: i64,
}

#[derive(Debug)]
pub enum QuoteError {
    /// 422 naming every bad field.
    Invalid(Vec<FieldError>),
    /// 404 naming every unknown product.
    Unknown(Vec<String>),
    /// 422: products priced in more than one currency.
    MixedCurrencies(Vec<String>),
    /// 503 with Retry-After.
    InventoryUnavailable,
}

impl IntoResponse for QuoteError {
    fn into_response(self) -> Response {
        match self {
            QuoteError::Invalid(errors) => Problem::validation(errors).into_response(),
            QuoteError::Unknown(ids) => Problem::new(
                StatusCode::NOT_FOUND,
                format!("no products with the ids {}", ids.join(", ")),
            )
            .typed("unknown-product")
            .into_response(),
            QuoteError::MixedCurrencies(currencies) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "these products are priced in different currencies ({}); quote them separately",
                    currencies.join(", ")
                ),
            )
            .typed("mixed-currencies")
            .into_response(),
            QuoteError::InventoryUnavailable => PriceError::InventoryUnavailable.into_response(),
        }
    }
}

fn validate(req: &QuoteRequest, max_quantity: i64) -> Result<Vec<(String, i64)>, QuoteError> {
    let mut errors = Vec::new();
    if req.items.is_empty() || req.items.len() > LINES_MAX {
        errors.push(FieldError {
            field: "items".into(),
            message: format!("must list 1 to {LINES_MAX} products"),
        });
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(req.items.len());
    for (i, l) in req.items.iter().enumerate() {
        match check_product_id(Some(&l.product_id)) {
            Ok(id) if !seen.insert(id.clone()) => errors.push(FieldError {
                field: format!("items[{i}].product_id"),
                message: format!(
                    "{id:?} is listed twice; list each product once with the total quantity"
                ),
            }),
            Ok(id) => lines.push((id, l.quantity)),
            Err(e) => errors.push(FieldError {
                field: format!("items[{i}].product_id"),
                message: e.message(),
            }),
        }
        if let Err(e) = check_quantity_value(l.quantity, max_quantity) {
            errors.push(FieldError {
                field: format!("items[{i}].quantity"),
                message: e.message(),
            });
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(QuoteError::Invalid(errors))
    }
}

pub async fn post_quote(
    State(state): State<Arc<AppState>>,
    ctx: RequestContext,
    Json(req): Json<QuoteRequest>,
) -> Result<Response, QuoteError> {
    let lines = validate(&req, state.max_quantity)?;
    // All products at once: a cart's quote costs one inventory round trip
    // of latency, not one per line.
    let mut fetches = tokio::task::JoinSet::new();
    for (i, (id, _)) in lines.iter().enumerate() {
        let (inventory, ctx, id) = (state.inventory.clone(), ctx.clone(), id.clone());
        fetches.spawn(async move { (i, inventory.product(&id, &ctx).await) });
    }
    let mut products = vec![None; lines.len()];
    let mut unknown = Vec::new();
    let mut unavailable = false;
    while let Some(done) = fetches.join_next().await {
        let Ok((i, r)) = done else {
            unavailable = true;
            continue;
        };
        match r {
            Ok(p) => products[i] = Some(p),
            Err(FetchError::NotFound) => unknown.push(lines[i].0.clone()),
            Err(FetchError::Unavailable(_)) => unavailable = true,
        }
    }
    if unavailable {
        return Err(QuoteError::InventoryUnavailable);
    }
    if !unknown.is_empty() {
        unknown.sort();
        return Err(QuoteError::Unknown(unknown));
    }
    let products: Vec<_> = products.into_iter().flatten().collect();
    let mut currencies: Vec<String> = products.iter().map(|p| p.currency.clone()).collect();
    currencies.sort();
    currencies.dedup();
    if currencies.len() > 1 {
        return Err(QuoteError::MixedCurrencies(currencies));
    }
    let rules = state.rules();
    let too_large = || {
        QuoteError::Invalid(vec![FieldError {
            field: "items".into(),
            message: "this order is too large to price; use smaller quantities".into(),
        }])
    };
    let mut quotes = Vec::with_capacity(products.len());
    for (p, (_, quantity)) in products.iter().zip(&lines) {
        quotes.push(quote::quote(&p.into(), *quantity, &rules).ok_or_else(too_large)?);
    }
    let basket = total(quotes).ok_or_else(too_large)?;
    // A quote is a price at one moment: never reused by a cache.
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(basket)).into_response())
}

/// The basket's totals: the sums of its lines (checked: an overflow is
/// None, never a wrapped total).
pub fn total(lines: Vec<Quote>) -> Option<Basket> {
    let first = lines.first()?;
    let (currency, exponent) = (first.currency.clone(), first.minor_unit_exponent);
    let sum = |f: fn(&Quote) -> i64| lines.iter().try_fold(0i64, |acc, l| acc.checked_add(f(l)));
    Some(Basket {
        subtotal_minor: sum(|l| l.subtotal_minor)?,
        discount_minor: sum(|l| l.discount_minor)?,
        tax_minor: sum(|l| l.tax_minor)?,
        total_minor: sum(|l| l.total_minor)?,
        currency,
        minor_unit_exponent: exponent,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(items: &[(&str, i64)]) -> QuoteRequest {
        QuoteRequest {
            items: items
                .iter()
                .map(|(p, q)| Line {
                    product_id: (*p).into(),
                    quantity: *q,
                })
                .collect(),
        }
    }

    #[test]
    fn every_bad_line_is_named() {
        let Err(QuoteError::Invalid(e)) = validate(&req(&[("a", 1), ("../x", 0), ("a", 2)]), 10)
        else {
            panic!()
        };
        let fields: Vec<_> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[1].product_id",
                "items[1].quantity",
                "items[2].product_id"
            ]
        );
        assert!(matches!(
            validate(&req(&[]), 10),
            Err(QuoteError::Invalid(_))
        ));
        assert_eq!(validate(&req(&[("b", 2), ("a", 1)]), 10).unwrap().len(), 2);
    }
}
