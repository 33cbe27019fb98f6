//! HTTP routes: the signed-in user's cart (`/cart`), checkouts
//! (`POST /checkouts`, checkout.rs) and order history (`/orders`).
//!
//! Everything here belongs to the caller (the token's `sub`): a cart is
//! its owner's, and another user's order is a 404, like one that does
//! not exist.

mod checkout;

use crate::error::{Error, Result};
use crate::model::{self, check_product_id, is_order_id, CartItem, OrderView};
use crate::saga::Saga;
use crate::upstream::Reply;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use kit::auth::{Caller, Verifier};
use kit::extract::{Json, Path, Query};
use kit::telemetry::RequestContext;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct AppState {
    pub saga: Arc<Saga>,
    /// How long the cart view waits for prices, and a line change for
    /// inventory to confirm the product exists.
    pub lookup_timeout: Duration,
}

type St = State<Arc<AppState>>;

pub fn routes(state: Arc<AppState>, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/cart", get(cart))
        .route(
            "/cart/items/{product_id}",
            put(set_item).delete(remove_item),
        )
        .route("/checkouts", post(checkout::post))
        .route("/orders", get(orders))
        .route("/orders/{order_id}", get(order))
        .layer(axum::Extension(verifier))
        .with_state(state)
}

/// A cart line with its live price, when pricing answered.
#[derive(Debug, Serialize)]
struct CartLine {
    product_id: String,
    quantity: i64,
    product_name: Option<String>,
    unit_price_minor: Option<i64>,
    line_total_minor: Option<i64>,
    /// pricing's `{status, available, message}` ("Only 2 left").
    availability: Option<Value>,
}

#[derive(Debug, Serialize)]
struct CartView {
    items: Vec<CartLine>,
    currency: Option<String>,
    subtotal_minor: Option<i64>,
    discount_minor: Option<i64>,
    tax_minor: Option<i64>,
    total_minor: Option<i64>,
    /// The lines are shown without prices: pricing did not price them.
    prices_unavailable: bool,
    /// Why, in words.
    notice: Option<String>,
}

impl CartView {
    fn unpriced(items: &[CartItem], notice: Option<&str>) -> Self {
        Self {
            items: items
                .iter()
                .map(|i| CartLine {
                    product_id: i.product_id.clone(),
                    quantity: i.quantity,
                    product_name: None,
                    unit_price_minor: None,
                    line_total_minor: None,
                    availability: None,
                })
                .collect(),
            currency: None,
            subtotal_minor: None,
            discount_minor: None,
            tax_minor: None,
            total_minor: None,
            prices_unavailable: notice.is_some(),
            notice: notice.map(str::to_owned),
        }
    }

    /// The lines priced by a quote; None if the quote does not fit them.
    fn priced(items: &[CartItem], quote: &Value) -> Option<Self> {
        let by_id: HashMap<&str, &Value> = quote["lines"]
            .as_array()?
            .iter()
            .filter_map(|l| Some((l["product_id"].as_str()?, l)))
            .collect();
        let mut lines = Vec::with_capacity(items.len());
        for i in items {
            let l = by_id.get(i.product_id.as_str())?;
            lines.push(CartLine {
                product_id: i.product_id.clone(),
                quantity: i.quantity,
                product_name: Some(l["product_name"].as_str()?.to_owned()),
                unit_price_minor: Some(l["unit_price_minor"].as_i64()?),
                line_total_minor: Some(l["total_minor"].as_i64()?),
                availability: Some(l["availability"].clone()),
            });
        }
        Some(Self {
            items: lines,
            currency: Some(quote["currency"].as_str()?.to_owned()),
            subtotal_minor: Some(quote["subtotal_minor"].as_i64()?),
            discount_minor: Some(quote["discount_minor"].as_i64()?),
            tax_minor: Some(quote["tax_minor"].as_i64()?),
            total_minor: Some(quote["total_minor"].as_i64()?),
            prices_unavailable: false,
            notice: None,
        })
    }
}

/// The cart with live prices and availability from pricing; when pricing
/// cannot price it, the lines alone with `prices_unavailable` and why.
async fn cart(State(s): St, caller: Caller, ctx: RequestContext) -> Result<axum::Json<CartView>> {
    let items = s.saga.store.cart(&caller.0.sub).await?;
    if items.is_empty() {
        return Ok(axum::Json(CartView::unpriced(&items, None)));
    }
    let body = json!({"items": items});
    let deadline = Instant::now() + s.lookup_timeout;
    let reply = s
        .saga
        .pricing
        .call(Method::POST, "/quote", Some(&body), None, &ctx, deadline)
        .await;
    let notice = match &reply {
        Reply::Answer { status: 200, body } => match CartView::priced(&items, body) {
            Some(view) => return Ok(axum::Json(view)),
            None => "Prices cannot be shown right now",
        },
        Reply::Answer { status: 404, .. } => {
            "Some products in your cart are no longer sold; remove them to see prices"
        }
        Reply::Answer { status: 422, body }
            if Reply::problem_type(body) == "mixed-currencies" =>
        {
            "The products in your cart are priced in different currencies, so they have no one total; check them out separately"
        }
        _ => "Prices cannot be shown right now: pricing is not answering",
    };
    Ok(axum::Json(CartView::unpriced(&items, Some(notice))))
}

/// Sets a line's quantity (`{"quantity": n}`, 1..=1000): 201 for a new
/// line, 200 for a changed one. A product inventory says does not exist
/// is a 404; when inventory is not answering the line is kept unchecked
/// (checkout checks it anyway).
async fn set_item(
    State(s): St,
    caller: Caller,
    ctx: RequestContext,
    Path(product_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response> {
    check_product_id(&product_id)?;
    let quantity = model::quantity_body(body)?;
    let deadline = Instant::now() + s.lookup_timeout;
    let path = format!("/products/{product_id}");
    let reply = s
        .saga
        .inventory
        .call(Method::GET, &path, None, None, &ctx, deadline)
        .await;
    if let Reply::Answer { status: 404, .. } = reply {
        return Err(Error::NotFound(format!(
            "there is no product {product_id:?} in the shop"
        )));
    }
    let created = s
        .saga
        .store
        .set_cart_item(&caller.0.sub, &product_id, quantity)
        .await?;
    s.saga.metrics.cart_update("set");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({"product_id": product_id, "quantity": quantity})),
    )
        .into_response())
}

/// Removes a line: 204, whether or not the cart had it.
async fn remove_item(
    State(s): St,
    caller: Caller,
    Path(product_id): Path<String>,
) -> Result<StatusCode> {
    check_product_id(&product_id)?;
    if s.saga
        .store
        .remove_cart_item(&caller.0.sub, &product_id)
        .await?
    {
        s.saga.metrics.cart_update("remove");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<OrderView>,
    /// Pass as `after` for the next (older) page; null on the last page.
    next_after: Option<String>,
}

/// The caller's orders, newest first, in keyset pages.
async fn orders(
    State(s): St,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page>> {
    let (limit, after) = model::page_params(q.limit.as_deref(), q.after.as_deref())?;
    // One extra row tells whether an older page exists without a COUNT.
    let mut rows = s.saga.store.orders(&caller.0.sub, after, limit + 1).await?;
    let next_after = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|o| o.seq.to_string())
    } else {
        None
    };
    Ok(axum::Json(Page {
        items: rows.iter().map(|o| o.view()).collect(),
        next_after,
    }))
}

/// One of the caller's orders; anyone else's is a 404, like none at all.
async fn order(
    State(s): St,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<OrderView>> {
    let missing = || Error::NotFound(format!("you have no order {id:?}"));
    if !is_order_id(&id) {
        return Err(missing());
    }
    let o = s
        .saga
        .store
        .order(&id)
        .await?
        .filter(|o| o.user_id == caller.0.sub)
        .ok_or_else(missing)?;
    Ok(axum::Json(o.view()))
}
