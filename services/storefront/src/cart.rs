//! The cart, the checkout and the orders, on the orders service's API:
//! the cart and its prices come from orders (which asks pricing), a
//! checkout is orders' saga (hold, price, charge, commit), and an order's
//! page shows what became of it, in words.

use crate::render::{down_message, money, page, redirect, Message};
use crate::session::Visitor;
use crate::upstream::{Call, Reply, Service};
use crate::State;
use axum::extract::{Form, Path, Query, State as AxState};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use kit::html::{self, escape, Part};
use kit::telemetry::RequestContext;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type St = AxState<Arc<State>>;

const CART: &str = include_str!("../templates/cart.html");
const ORDER: &str = include_str!("../templates/order.html");

/// What a redirect to the cart or an order may say (`?m=…`).
#[derive(Debug, Default, Deserialize)]
pub struct Note {
    m: Option<String>,
}

fn note(code: Option<&str>) -> Message {
    let ok = |t: &str| Message::Ok(t.to_owned());
    match code {
        Some("added") => ok("Added to your cart."),
        Some("updated") => ok("Your cart is updated."),
        Some("ordered") => ok("Thank you! Your order is confirmed and paid."),
        Some("pending") => ok("Your order is being processed; this page shows how it stands."),
        other => Message::from_code(other),
    }
}

fn login_first(v: &Visitor) -> Response {
    redirect(v, "/login?m=login-first", &[])
}

/// A money amount of a JSON answer, in words, or "—" when it has none.
fn amount(v: &Value, key: &str, currency: &str) -> String {
    v[key]
        .as_i64()
        .map_or_else(|| "—".to_owned(), |a| money(a, currency))
}

/// The cart page, with `message`; `status` as the outcome that led here.
async fn cart_page(
    s: &State,
    v: &Visitor,
    ctx: &RequestContext,
    status: StatusCode,
    message: Message,
) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(v);
    };
    let reply = match s
        .upstream
        .call(ctx, Service::Orders, Call::get("/cart", Some(&sh.token)))
        .await
    {
        Ok(r) if r.is_success() => r.body,
        Ok(r) => return page(s, v, r.status, "Your cart", Message::Error(r.detail()), ""),
        Err(d) => {
            return page(
                s,
                v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Your cart",
                down_message(d),
                "",
            )
        }
    };
    let items = reply["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        let main = r#"<p id="empty">Your cart is empty. <a href="/">Find something in the catalogue</a>.</p>"#;
        return page(s, v, status, "Your cart", message, main);
    }
    let currency = reply["currency"].as_str().unwrap_or(&s.currency).to_owned();
    let csrf = v.csrf_token(&s.csrf);
    let rows: String = items
        .iter()
        .map(|l| {
            let id = l["product_id"].as_str().unwrap_or_default();
            let name = l["product_name"].as_str().unwrap_or(id);
            let stock = l["availability"]["message"].as_str().unwrap_or("");
            format!(
                r#"<tr id="line-{id}"><td>{name}<br><small class="stock">{stock}</small></td><td><form method="post" action="/cart/items/{id}" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="number" name="quantity" min="0" max="1000" value="{q}" aria-label="Quantity of {name}"><button type="submit">Update</button></form></td><td class="num">{unit}</td><td class="num">{total}</td></tr>"#,
                id = escape(id),
                name = escape(name),
                stock = escape(stock),
                csrf = escape(&csrf),
                q = l["quantity"].as_i64().unwrap_or(0),
                unit = escape(&amount(l, "unit_price_minor", &currency)),
                total = escape(&amount(l, "line_total_minor", &currency)),
            )
        })
        .collect();
    let totals: String = [
        ("Subtotal", "subtotal_minor"),
        ("Discount", "discount_minor"),
        ("Tax", "tax_minor"),
        ("Total", "total_minor"),
    ]
    .iter()
    .map(|(label, key)| {
        format!(
            r#"<tr><th colspan="3">{label}</th><td class="num" id="{key}">{}</td></tr>"#,
            escape(&amount(&reply, key, &currency))
        )
    })
    .collect();
    let notice = reply["notice"]
        .as_str()
        .map(|n| format!(r#"<p class="message error" id="notice">{}</p>"#, escape(n)))
        .unwrap_or_default();
    let lines = format!(
        r#"{notice}<table><thead><tr><th>Product</th><th>Quantity (0 removes)</th><th class="num">Unit price</th><th class="num">Line total</th></tr></thead><tbody>{rows}</tbody><tfoot>{totals}</tfoot></table>"#
    );
    let key = format!("checkout-{:032x}", rand::random::<u128>());
    let main = html::fill(
        CART,
        &[
            ("lines", Part::Markup(&lines)),
            ("csrf", Part::Text(&csrf)),
            ("key", Part::Text(&key)),
            (
                "total",
                Part::Text(&amount(&reply, "total_minor", &currency)),
            ),
        ],
    )
    .expect("templates/cart.html uses exactly these names (tested)");
    page(s, v, status, "Your cart", message, &main)
}

pub async fn cart(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Query(n): Query<Note>,
) -> Response {
    cart_page(&s, &v, &ctx, StatusCode::OK, note(n.m.as_deref())).await
}

#[derive(Debug, Default, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    quantity: String,
}

/// Why a cart form did nothing: the status and the words the cart page
/// shows.
type Refusal = (StatusCode, Message);

fn expired() -> Refusal {
    (
        StatusCode::FORBIDDEN,
        Message::Error("This form has expired; please try again.".into()),
    )
}

/// A quantity typed into a form, `min` (0 removes, on the cart) to 1000.
fn quantity(raw: &str, min: i64) -> Result<i64, Refusal> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|q| (min..=1000).contains(q))
        .ok_or_else(|| {
            let words = if min == 0 {
                "The quantity must be a whole number from 0 (remove) to 1000."
            } else {
                "The quantity must be a whole number from 1 to 1000."
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Message::Error(words.into()),
            )
        })
}

/// A service's refusal (its own words) or its silence.
fn refused(r: Result<Reply, crate::upstream::Down>) -> Refusal {
    match r {
        Ok(r) => (r.status, Message::Error(r.detail())),
        Err(d) => (StatusCode::SERVICE_UNAVAILABLE, down_message(d)),
    }
}

/// How many of `product_id` the cart holds now.
async fn in_cart(
    s: &State,
    ctx: &RequestContext,
    token: &str,
    product_id: &str,
) -> Result<i64, Refusal> {
    match s
        .upstream
        .call(ctx, Service::Orders, Call::get("/cart", Some(token)))
        .await
    {
        Ok(r) if r.is_success() => Ok(r.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["product_id"] == product_id)
            .and_then(|l| l["quantity"].as_i64())
            .unwrap_or(0)),
        other => Err(refused(other)),
    }
}

/// Sets a line to `quantity` (0 removes it; removing what is not there
/// is fine).
async fn set_line(
    s: &State,
    ctx: &RequestContext,
    token: &str,
    id: &str,
    quantity: i64,
) -> Result<(), Refusal> {
    let path = format!("/cart/items/{id}");
    let call = if quantity == 0 {
        Call {
            method: Method::DELETE,
            ..Call::get(&path, Some(token))
        }
    } else {
        Call {
            method: Method::PUT,
            ..Call::post(&path, Some(token), json!({ "quantity": quantity }))
        }
    };
    match s.upstream.call(ctx, Service::Orders, call).await {
        Ok(r) if r.is_success() || (quantity == 0 && r.status == StatusCode::NOT_FOUND) => Ok(()),
        other => Err(refused(other)),
    }
}

/// Answers a cart form: to the cart with `note` when it did its work,
/// else the cart page saying why.
async fn after_form(
    s: &State,
    v: &Visitor,
    ctx: &RequestContext,
    done: Result<(), Refusal>,
    note: &str,
) -> Response {
    match done {
        Ok(()) => redirect(v, &format!("/cart?m={note}"), &[]),
        Err((status, m)) => cart_page(s, v, ctx, status, m).await,
    }
}

/// Adds units to the cart (from the catalogue or a product page).
pub async fn add(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Form(f): Form<AddForm>,
) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(&v);
    };
    let done = async {
        if !v.form_is_ours(&s.csrf, &f.csrf) || !kit::ids::valid(&f.product_id) {
            return Err(expired());
        }
        let q = quantity(&f.quantity, 1)?;
        let have = in_cart(&s, &ctx, &sh.token, &f.product_id).await?;
        set_line(&s, &ctx, &sh.token, &f.product_id, (have + q).min(1000)).await
    }
    .await;
    after_form(&s, &v, &ctx, done, "added").await
}

#[derive(Debug, Default, Deserialize)]
pub struct LineForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    quantity: String,
}

/// Changes a line's quantity; 0 removes it.
pub async fn update(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Path(id): Path<String>,
    Form(f): Form<LineForm>,
) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(&v);
    };
    let done = async {
        if !v.form_is_ours(&s.csrf, &f.csrf) || !kit::ids::valid(&id) {
            return Err(expired());
        }
        set_line(&s, &ctx, &sh.token, &id, quantity(&f.quantity, 0)?).await
    }
    .await;
    after_form(&s, &v, &ctx, done, "updated").await
}

#[derive(Debug, Default, Deserialize)]
pub struct CheckoutForm {
    #[serde(default)]
    csrf: String,
    /// The checkout's Idempotency-Key, made when the cart page was shown:
    /// the same form posted twice is the same order.
    #[serde(default)]
    key: String,
}

pub async fn checkout(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Form(f): Form<CheckoutForm>,
) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(&v);
    };
    if !v.form_is_ours(&s.csrf, &f.csrf) {
        let (status, m) = expired();
        return cart_page(&s, &v, &ctx, status, m).await;
    }
    let headers = [("idempotency-key", f.key.as_str())];
    let call = Call::post("/checkouts", Some(&sh.token), json!({})).with_headers(&headers);
    let reply = s.upstream.call(&ctx, Service::Orders, call).await;
    let order_id = match &reply {
        Ok(r) => r.body["id"]
            .as_str()
            .or_else(|| r.body["order"]["id"].as_str())
            .unwrap_or_default()
            .to_owned(),
        Err(_) => String::new(),
    };
    match reply.as_ref().map(|r| r.status) {
        Ok(StatusCode::CREATED) if !order_id.is_empty() => {
            redirect(&v, &format!("/orders/{order_id}?m=ordered"), &[])
        }
        Ok(StatusCode::ACCEPTED) if !order_id.is_empty() => {
            redirect(&v, &format!("/orders/{order_id}?m=pending"), &[])
        }
        // Refused: the saga's own words (out of stock, not enough money,
        // a service down: nothing charged), on the cart, which still holds
        // the products.
        _ => {
            let (status, m) = refused(reply);
            cart_page(&s, &v, &ctx, status, m).await
        }
    }
}

fn state_words(o: &Value) -> String {
    match o["state"].as_str() {
        Some("confirmed") => "Confirmed and paid".to_owned(),
        Some("pending") => "Being processed".to_owned(),
        Some("failed") => format!(
            "Not placed: {}",
            o["message"].as_str().unwrap_or("the checkout failed")
        ),
        _ => "Unknown".to_owned(),
    }
}

pub async fn orders(AxState(s): St, v: Visitor, ctx: RequestContext) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(&v);
    };
    let reply = match s
        .upstream
        .call(
            &ctx,
            Service::Orders,
            Call::get("/orders?limit=50", Some(&sh.token)),
        )
        .await
    {
        Ok(r) if r.is_success() => r.body,
        Ok(r) => {
            return page(
                &s,
                &v,
                r.status,
                "Your orders",
                Message::Error(r.detail()),
                "",
            )
        }
        Err(d) => {
            return page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Your orders",
                down_message(d),
                "",
            )
        }
    };
    let items = reply["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return page(
            &s,
            &v,
            StatusCode::OK,
            "Your orders",
            Message::None,
            r#"<p id="no-orders">You have no orders yet.</p>"#,
        );
    }
    let rows: String = items
        .iter()
        .map(|o| {
            let id = o["id"].as_str().unwrap_or_default();
            let currency = o["currency"].as_str().unwrap_or(&s.currency);
            format!(
                r#"<tr><td><a href="/orders/{id}">{id}</a></td><td>{created}</td><td>{state}</td><td class="num">{total}</td></tr>"#,
                id = escape(id),
                created = escape(o["created_at"].as_str().unwrap_or_default()),
                state = escape(&state_words(o)),
                total = escape(&amount(o, "total_minor", currency)),
            )
        })
        .collect();
    let main = format!(
        r#"<table id="orders"><thead><tr><th>Order</th><th>Placed</th><th>State</th><th class="num">Total</th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    page(&s, &v, StatusCode::OK, "Your orders", Message::None, &main)
}

pub async fn order(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Path(id): Path<String>,
    Query(n): Query<Note>,
) -> Response {
    let Some(sh) = &v.shopper else {
        return login_first(&v);
    };
    let missing = |s: &State, v: &Visitor| {
        page(
            s,
            v,
            StatusCode::NOT_FOUND,
            "Order",
            Message::Error("You have no such order.".into()),
            "",
        )
    };
    if !kit::ids::valid(&id) {
        return missing(&s, &v);
    }
    let path = format!("/orders/{id}");
    let o = match s
        .upstream
        .call(&ctx, Service::Orders, Call::get(&path, Some(&sh.token)))
        .await
    {
        Ok(r) if r.is_success() => r.body,
        Ok(r) if r.status == StatusCode::NOT_FOUND => return missing(&s, &v),
        Ok(r) => return page(&s, &v, r.status, "Order", Message::Error(r.detail()), ""),
        Err(d) => {
            return page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Order",
                down_message(d),
                "",
            )
        }
    };
    let currency = o["currency"].as_str().unwrap_or(&s.currency).to_owned();
    let rows: String = o["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let pid = l["product_id"].as_str().unwrap_or_default();
            format!(
                r#"<tr><td>{name}</td><td class="num">{q}</td><td class="num">{unit}</td><td class="num">{total}</td></tr>"#,
                name = escape(l["product_name"].as_str().unwrap_or(pid)),
                q = l["quantity"].as_i64().unwrap_or(0),
                unit = escape(&amount(l, "unit_price_minor", &currency)),
                total = escape(&amount(l, "line_total_minor", &currency)),
            )
        })
        .collect();
    let lines = format!(
        r#"<table><thead><tr><th>Product</th><th class="num">Quantity</th><th class="num">Unit price</th><th class="num">Line total</th></tr></thead><tbody>{rows}</tbody><tfoot><tr><th colspan="3">Total</th><td class="num" id="total">{}</td></tr></tfoot></table>"#,
        escape(&amount(&o, "total_minor", &currency))
    );
    let state = o["state"].as_str().unwrap_or("unknown");
    let main = html::fill(
        ORDER,
        &[
            ("id", Part::Text(o["id"].as_str().unwrap_or(&id))),
            (
                "created",
                Part::Text(o["created_at"].as_str().unwrap_or_default()),
            ),
            ("state", Part::Text(state)),
            ("state_words", Part::Text(&state_words(&o))),
            ("lines", Part::Markup(&lines)),
        ],
    )
    .expect("templates/order.html uses exactly these names (tested)");
    page(
        &s,
        &v,
        StatusCode::OK,
        "Your order",
        note(n.m.as_deref()),
        &main,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_take_exactly_their_parts() {
        html::fill(
            CART,
            &[
                ("lines", Part::Markup("")),
                ("csrf", Part::Text("")),
                ("key", Part::Text("")),
                ("total", Part::Text("")),
            ],
        )
        .unwrap();
        html::fill(
            ORDER,
            &[
                ("id", Part::Text("")),
                ("created", Part::Text("")),
                ("state", Part::Text("")),
                ("state_words", Part::Text("")),
                ("lines", Part::Markup("")),
            ],
        )
        .unwrap();
    }

    #[test]
    fn a_failed_order_says_why() {
        let o = json!({"state": "failed", "message": "Only 2 Teapot left"});
        assert_eq!(state_words(&o), "Not placed: Only 2 Teapot left");
    }
}
