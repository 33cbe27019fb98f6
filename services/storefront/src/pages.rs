//! The shop's pages. Each reads what it shows from the services with the
//! shopper's token; each form is checked for its CSRF token before
//! anything is sent on, and answered with a redirect (so a reload does not
//! post it twice) or the same page explaining what to fix.

use crate::render::{down_message, money, page, redirect, Message};
use crate::session::Visitor;
use crate::upstream::{Call, Service};
use crate::State;
use axum::extract::{Form, Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use kit::html::{self, escape, Part};
use kit::telemetry::RequestContext;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type St = AxState<Arc<State>>;

const LOGIN: &str = include_str!("../templates/login.html");
const SIGNUP: &str = include_str!("../templates/signup.html");
const WALLET: &str = include_str!("../templates/wallet.html");
const PRODUCT: &str = include_str!("../templates/product.html");

/// Products the catalogue page shows.
const CATALOGUE_MAX: u32 = 100;

#[derive(Debug, Default, Deserialize)]
pub struct Note {
    m: Option<String>,
}

fn filled(template: &str, parts: &[(&str, Part<'_>)]) -> String {
    html::fill(template, parts).expect("each template uses exactly its page's names (tested)")
}

/// "Add to cart" for a signed-in shopper and a product in stock; a login
/// link for a visitor.
fn buy_form(s: &State, v: &Visitor, id: &str, in_stock: bool) -> String {
    match (&v.shopper, in_stock) {
        (_, false) => String::new(),
        (None, true) => r#"<p><a href="/login">Log in</a> to buy.</p>"#.to_owned(),
        (Some(_), true) => format!(
            r#"<form method="post" action="/cart/add" class="inline"><input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="product_id" value="{id}"><input type="number" name="quantity" value="1" min="1" max="1000" aria-label="Quantity"><button type="submit" id="add-{id}">Add to cart</button></form>"#,
            csrf = escape(&v.csrf_token(&s.csrf)),
            id = escape(id),
        ),
    }
}

/// What a product's stock means to a shopper, and its CSS class.
fn stock_words(p: &Value) -> (&'static str, String) {
    let available = p["available"].as_i64().unwrap_or(0);
    match available {
        ..=0 => ("out_of_stock", "Out of stock".to_owned()),
        1..=5 => ("low_stock", format!("Only {available} left")),
        _ => ("in_stock", "In stock".to_owned()),
    }
}

fn price_of(p: &Value) -> String {
    money(
        p["unit_price_minor"].as_i64().unwrap_or(0),
        p["currency"].as_str().unwrap_or("EUR"),
    )
}

pub async fn catalogue(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Query(n): Query<Note>,
) -> Response {
    let path = format!("/products?limit={CATALOGUE_MAX}");
    let reply = match s
        .upstream
        .call(&ctx, Service::Inventory, Call::get(&path, None))
        .await
    {
        Ok(r) if r.is_success() => r,
        Ok(r) => {
            tracing::warn!(status = %r.status, "inventory refused the product list");
            return page(
                &s,
                &v,
                StatusCode::BAD_GATEWAY,
                "Catalogue",
                Message::Error("The catalogue cannot be shown right now.".into()),
                "",
            );
        }
        Err(d) => {
            return page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Catalogue",
                down_message(d),
                "",
            )
        }
    };
    let items = reply.body["items"].as_array().cloned().unwrap_or_default();
    let main = if items.is_empty() {
        "<p>The shop has no products yet.</p>".to_owned()
    } else {
        let cards: String = items
            .iter()
            .map(|p| {
                let id = p["id"].as_str().unwrap_or_default();
                let (class, words) = stock_words(p);
                let buy = buy_form(&s, &v, id, class != "out_of_stock");
                format!(
                    r#"<li class="product" id="product-{id}"><h2><a href="/products/{id}">{name}</a></h2><p class="price">{price}</p><p class="stock {class}">{words}</p>{buy}</li>"#,
                    id = escape(id),
                    name = escape(p["name"].as_str().unwrap_or_default()),
                    price = escape(&price_of(p)),
                    words = escape(&words),
                )
            })
            .collect();
        format!(r#"<ul class="products">{cards}</ul>"#)
    };
    page(
        &s,
        &v,
        StatusCode::OK,
        "Catalogue",
        Message::from_code(n.m.as_deref()),
        &main,
    )
}

pub async fn product(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> Response {
    // Inventory's id rule: anything else cannot be a product, and is never
    // put into an upstream URL.
    let valid = kit::ids::valid(&id);
    let not_found = |s: &State, v: &Visitor| {
        page(
            s,
            v,
            StatusCode::NOT_FOUND,
            "Not found",
            Message::Error("There is no such product.".into()),
            r#"<p><a href="/">Back to the catalogue</a></p>"#,
        )
    };
    if !valid {
        return not_found(&s, &v);
    }
    let path = format!("/products/{id}");
    let p = match s
        .upstream
        .call(&ctx, Service::Inventory, Call::get(&path, None))
        .await
    {
        Ok(r) if r.is_success() => r.body,
        Ok(_) => return not_found(&s, &v),
        Err(d) => {
            return page(
                &s,
                &v,
                StatusCode::SERVICE_UNAVAILABLE,
                "Product",
                down_message(d),
                "",
            )
        }
    };
    let (class, words) = stock_words(&p);
    let buy = buy_form(&s, &v, &id, class != "out_of_stock");
    let main = filled(
        PRODUCT,
        &[
            ("buy", Part::Markup(&buy)),
            (
                "description",
                Part::Text(p["description"].as_str().unwrap_or_default()),
            ),
            ("price", Part::Text(&price_of(&p))),
            ("stock_class", Part::Text(class)),
            ("stock", Part::Text(&words)),
        ],
    );
    let name = p["name"].as_str().unwrap_or(&id).to_owned();
    page(&s, &v, StatusCode::OK, &name, Message::None, &main)
}

#[derive(Debug, Default, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// The login or sign-up form, keeping the email typed.
fn credentials_page(
    s: &State,
    v: &Visitor,
    status: StatusCode,
    message: Message,
    email: &str,
    signup: bool,
) -> Response {
    let (template, title) = if signup {
        (SIGNUP, "Create an account")
    } else {
        (LOGIN, "Log in")
    };
    let csrf = v.csrf_token(&s.csrf);
    let main = filled(
        template,
        &[("csrf", Part::Text(&csrf)), ("email", Part::Text(email))],
    );
    page(s, v, status, title, message, &main)
}

fn login_page(s: &State, v: &Visitor, status: StatusCode, m: Message, email: &str) -> Response {
    credentials_page(s, v, status, m, email, false)
}

fn signup_page(s: &State, v: &Visitor, status: StatusCode, m: Message, email: &str) -> Response {
    credentials_page(s, v, status, m, email, true)
}

fn expired() -> Message {
    Message::Error("This form has expired; please fill it in again.".into())
}

pub async fn login_form(AxState(s): St, v: Visitor, Query(n): Query<Note>) -> Response {
    login_page(
        &s,
        &v,
        StatusCode::OK,
        Message::from_code(n.m.as_deref()),
        "",
    )
}

pub async fn signup_form(AxState(s): St, v: Visitor) -> Response {
    signup_page(&s, &v, StatusCode::OK, Message::None, "")
}

/// Logs in with `c` and starts the session; `then` is where to go.
async fn start_session(
    s: &State,
    v: &Visitor,
    ctx: &RequestContext,
    c: &Credentials,
    then: &str,
) -> Response {
    let body = json!({"email": c.email, "password": c.password});
    match s
        .upstream
        .call(ctx, Service::Users, Call::post("/tokens", None, body))
        .await
    {
        Ok(r) if r.is_success() => {
            let token = r.body["access_token"].as_str().unwrap_or_default();
            let ttl = r.body["expires_in"].as_u64().unwrap_or(900);
            redirect(v, then, &[v.start_session(token, ttl)])
        }
        Ok(r) if r.status == StatusCode::UNAUTHORIZED => login_page(
            s,
            v,
            StatusCode::UNAUTHORIZED,
            Message::Error("That email and password do not match an account.".into()),
            &c.email,
        ),
        Ok(r) => login_page(s, v, r.status, Message::Error(r.detail()), &c.email),
        Err(d) => login_page(
            s,
            v,
            StatusCode::SERVICE_UNAVAILABLE,
            down_message(d),
            &c.email,
        ),
    }
}

pub async fn login(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Form(c): Form<Credentials>,
) -> Response {
    if !v.form_is_ours(&s.csrf, &c.csrf) {
        return credentials_page(&s, &v, StatusCode::FORBIDDEN, expired(), &c.email, false);
    }
    start_session(&s, &v, &ctx, &c, "/?m=logged-in").await
}

pub async fn signup(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Form(c): Form<Credentials>,
) -> Response {
    if !v.form_is_ours(&s.csrf, &c.csrf) {
        return credentials_page(&s, &v, StatusCode::FORBIDDEN, expired(), &c.email, true);
    }
    let body = json!({"email": c.email, "password": c.password});
    match s
        .upstream
        .call(&ctx, Service::Users, Call::post("/users", None, body))
        .await
    {
        Ok(r) if r.is_success() => start_session(&s, &v, &ctx, &c, "/?m=welcome").await,
        Ok(r) if r.status == StatusCode::CONFLICT => signup_page(
            &s,
            &v,
            StatusCode::CONFLICT,
            Message::Error("An account with this email exists already; log in instead.".into()),
            &c.email,
        ),
        Ok(r) => signup_page(&s, &v, r.status, Message::Error(r.detail()), &c.email),
        Err(d) => signup_page(
            &s,
            &v,
            StatusCode::SERVICE_UNAVAILABLE,
            down_message(d),
            &c.email,
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PlainForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(AxState(s): St, v: Visitor, Form(f): Form<PlainForm>) -> Response {
    if !v.form_is_ours(&s.csrf, &f.csrf) {
        return page(&s, &v, StatusCode::FORBIDDEN, "Log out", expired(), "");
    }
    redirect(&v, "/?m=logged-out", &[v.end_session()])
}

#[derive(Debug, Default, Deserialize)]
pub struct TopUp {
    #[serde(default)]
    csrf: String,
    /// The form's own Idempotency-Key, made when it was shown: posting it
    /// twice (a double click, a reload) adds the money once.
    #[serde(default)]
    key: String,
    #[serde(default)]
    amount: String,
}

fn wallet_page(
    s: &State,
    v: &Visitor,
    status: StatusCode,
    message: Message,
    balance: &str,
    amount: &str,
) -> Response {
    let key = format!("top-up-{:032x}", rand::random::<u128>());
    let main = filled(
        WALLET,
        &[
            ("balance", Part::Text(balance)),
            ("csrf", Part::Text(&v.csrf_token(&s.csrf))),
            ("key", Part::Text(&key)),
            ("currency", Part::Text(&s.currency)),
            ("amount", Part::Text(amount)),
        ],
    );
    page(s, v, status, "Wallet", message, &main)
}

/// The wallet's balance in words, or why it cannot be shown.
async fn balance(
    s: &State,
    ctx: &RequestContext,
    user: &str,
    token: &str,
) -> Result<String, Message> {
    let path = format!("/wallets/{user}");
    match s
        .upstream
        .call(ctx, Service::Payments, Call::get(&path, Some(token)))
        .await
    {
        Ok(r) if r.is_success() => Ok(money(
            r.body["balance_minor"].as_i64().unwrap_or(0),
            r.body["currency"].as_str().unwrap_or(&s.currency),
        )),
        // No wallet until the first top-up.
        Ok(r) if r.status == StatusCode::NOT_FOUND => Ok(money(0, &s.currency)),
        Ok(r) => Err(Message::Error(r.detail())),
        Err(d) => Err(down_message(d)),
    }
}

pub async fn wallet(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Query(n): Query<Note>,
) -> Response {
    let Some(shopper) = &v.shopper else {
        return redirect(&v, "/login?m=login-first", &[]);
    };
    match balance(&s, &ctx, &shopper.claims.sub, &shopper.token).await {
        Ok(b) => wallet_page(
            &s,
            &v,
            StatusCode::OK,
            Message::from_code(n.m.as_deref()),
            &b,
            "",
        ),
        Err(m) => wallet_page(&s, &v, StatusCode::SERVICE_UNAVAILABLE, m, "—", ""),
    }
}

pub async fn top_up(
    AxState(s): St,
    v: Visitor,
    ctx: RequestContext,
    Form(f): Form<TopUp>,
) -> Response {
    let Some(shopper) = &v.shopper else {
        return redirect(&v, "/login?m=login-first", &[]);
    };
    let (user, token) = (shopper.claims.sub.as_str(), shopper.token.as_str());
    let refused = match add_money(&s, &v, &ctx, user, token, &f).await {
        Ok(()) => return redirect(&v, "/wallet?m=topped-up", &[]),
        Err(r) => r,
    };
    let b = balance(&s, &ctx, user, token)
        .await
        .unwrap_or_else(|_| "—".into());
    wallet_page(&s, &v, refused.0, refused.1, &b, &f.amount)
}

/// The top-up, or the status and words to show on the wallet page.
async fn add_money(
    s: &State,
    v: &Visitor,
    ctx: &RequestContext,
    user: &str,
    token: &str,
    f: &TopUp,
) -> Result<(), (StatusCode, Message)> {
    let refuse = |status, words: String| Err((status, Message::Error(words)));
    if !v.form_is_ours(&s.csrf, &f.csrf) {
        return Err((StatusCode::FORBIDDEN, expired()));
    }
    let amount = match kit::money::parse_major(&f.amount, &s.currency) {
        Ok(a) if a > 0 => a,
        Ok(_) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Enter an amount above zero.".into(),
            )
        }
        Err(e) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, format!("Amount: {e}.")),
    };
    let path = format!("/wallets/{user}/top-ups");
    let headers = [("idempotency-key", f.key.as_str())];
    let body = json!({"amount_minor": amount, "currency": s.currency});
    let call = Call::post(&path, Some(token), body).with_headers(&headers);
    match s.upstream.call(ctx, Service::Payments, call).await {
        Ok(r) if r.is_success() => Ok(()),
        Ok(r) => refuse(r.status, r.detail()),
        Err(d) => Err((StatusCode::SERVICE_UNAVAILABLE, down_message(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_takes_exactly_its_pages_parts() {
        filled(
            LOGIN,
            &[("csrf", Part::Text("")), ("email", Part::Text(""))],
        );
        filled(
            SIGNUP,
            &[("csrf", Part::Text("")), ("email", Part::Text(""))],
        );
        filled(
            WALLET,
            &[
                ("balance", Part::Text("")),
                ("csrf", Part::Text("")),
                ("key", Part::Text("")),
                ("currency", Part::Text("")),
                ("amount", Part::Text("")),
            ],
        );
        filled(
            PRODUCT,
            &[
                ("buy", Part::Markup("")),
                ("description", Part::Text("")),
                ("price", Part::Text("")),
                ("stock_class", Part::Text("")),
                ("stock", Part::Text("")),
            ],
        );
    }
}
