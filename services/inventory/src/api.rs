//! HTTP routes. Seed operation → endpoint:
//! add_product → POST /products, list_products → GET /products,
//! update_product → PATCH /products/{id}, delete_product → DELETE
//! /products/{id}, get_quantity → GET /products/{id}/quantity,
//! get_price → GET /products/{id}/price. Stock holds for the checkout:
//! POST /reservations, GET /reservations/{id}, POST
//! /reservations/{id}/commit and /release.
//!
//! Reads are open. Changing the catalogue or the stock needs a token with
//! the `admin` role; holding, committing and releasing stock needs a
//! signed-in caller (a customer's token, or the checkout's on their
//! behalf), so nobody anonymous can lock the shop's stock.

use crate::db::{Expect, Store};
use crate::error::{Error, Result};
use crate::model::{
    self, check_id, check_path_id, AdjustQuantity, NewProduct, Product, ProductChanges, SetQuantity,
};
use crate::reservation::{self, NewReservation, Reservation};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kit::auth::{Admin, Caller};
use kit::extract::{Json, Path, Query};
use serde::{Deserialize, Serialize};

pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/products", post(create).get(list))
        .route("/products/{id}", get(get_one).patch(update).delete(delete))
        .route(
            "/products/{id}/quantity",
            get(get_quantity).put(set_quantity),
        )
        .route("/products/{id}/quantity/adjustments", post(adjust_quantity))
        .route("/products/{id}/price", get(get_price))
        .route("/reservations", post(hold))
        .route("/reservations/{id}", get(get_reservation))
        .route("/reservations/{id}/commit", post(commit))
        .route("/reservations/{id}/release", post(release))
        .with_state(store)
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

fn with_etag(p: Product, status: StatusCode) -> Response {
    let tag = etag(p.version);
    let mut res = (status, axum::Json(p)).into_response();
    res.headers_mut().insert(header::ETAG, tag);
    res
}

/// `If-Match` as RFC 9110 defines it: absent → unconditional; `*` → any
/// current version; a list of strong tags → one of them must be current.
/// Weak tags never match (strong comparison), so they yield 412.
enum Precondition {
    None,
    Tags(Vec<i64>),
}

fn precondition(headers: &HeaderMap) -> Result<Precondition> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(Precondition::None);
    };
    let s = raw
        .to_str()
        .map_err(|_| Error::BadRequest("If-Match must be visible ASCII".into()))?
        .trim();
    // An empty field is an empty list (RFC 9110 `#` rule): no condition.
    if s == "*" || s.is_empty() {
        return Ok(Precondition::None);
    }
    let tags = parse_entity_tags(s).ok_or_else(|| {
        Error::BadRequest(format!(
            "If-Match must be * or a list of quoted entity tags like \"3\", got {:?}",
            s.chars().take(80).collect::<String>()
        ))
    })?;
    // Only strong tags holding one of our versions can ever match.
    Ok(Precondition::Tags(
        tags.into_iter()
            .filter(|(weak, _)| !weak)
            .filter_map(|(_, t)| t.parse::<i64>().ok())
            .collect(),
    ))
}

/// `1#entity-tag` with optional whitespace around commas; commas inside the
/// quotes belong to the tag.
fn parse_entity_tags(s: &str) -> Option<Vec<(bool, &str)>> {
    let mut tags = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        rest = rest.strip_prefix('"')?;
        let end = rest.find('"')?;
        tags.push((weak, &rest[..end]));
        rest = rest[end + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    (!tags.is_empty()).then_some(tags)
}

/// Turns a precondition into what the single conditional UPDATE checks.
async fn expect(store: &Store, id: &str, p: Precondition) -> Result<Expect> {
    match p {
        Precondition::None => Ok(Expect::Any),
        Precondition::Tags(tags) if tags.len() == 1 => Ok(Expect::Version(tags[0])),
        Precondition::Tags(tags) => {
            let current = store
                .get(id)
                .await?
                .ok_or_else(|| Error::NotFound(id.to_owned()))?
                .version;
            if tags.contains(&current) {
                Ok(Expect::Version(current))
            } else {
                Err(Error::PreconditionFailed { current })
            }
        }
    }
}

async fn create(
    _: Admin,
    State(store): State<Store>,
    Json(p): Json<NewProduct>,
) -> Result<Response> {
    p.validate()?;
    let created = store.create(&p).await?;
    let location = HeaderValue::from_str(&format!("/products/{}", created.id))
        .expect("valid ids are valid header values");
    let mut res = with_etag(created, StatusCode::CREATED);
    res.headers_mut().insert(header::LOCATION, location);
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<i64>,
    after: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<Product>,
    /// Pass as `after` to get the next page; null on the last page.
    next_after: Option<String>,
}

async fn list(State(store): State<Store>, Query(q): Query<ListQuery>) -> Result<axum::Json<Page>> {
    let limit = q.limit.unwrap_or(model::PAGE_DEFAULT);
    if !(1..=model::PAGE_MAX).contains(&limit) {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {}",
            model::PAGE_MAX
        )));
    }
    if let Some(a) = &q.after {
        check_path_id(a)?;
    }
    // One extra row tells whether another page exists without a COUNT.
    let mut items = store.list(q.after.as_deref(), limit + 1).await?;
    let next_after = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok(axum::Json(Page { items, next_after }))
}

async fn get_one(State(store): State<Store>, Path(id): Path<String>) -> Result<Response> {
    check_path_id(&id)?;
    let p = store.get(&id).await?.ok_or(Error::NotFound(id))?;
    Ok(with_etag(p, StatusCode::OK))
}

async fn update(
    _: Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(changes): Json<ProductChanges>,
) -> Result<Response> {
    check_path_id(&id)?;
    let pre = precondition(&headers)?;
    changes.validate()?;
    let expect = expect(&store, &id, pre).await?;
    let p = store.update(&id, &changes, expect).await?;
    Ok(with_etag(p, StatusCode::OK))
}

async fn delete(
    _: Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    check_path_id(&id)?;
    let pre = precondition(&headers)?;
    let expect = expect(&store, &id, pre).await?;
    store.delete(&id, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize)]
struct Quantity {
    id: String,
    quantity: i64,
    held: i64,
    available: i64,
    version: i64,
}

fn quantity_response(p: Product) -> Response {
    let tag = etag(p.version);
    let mut res = axum::Json(Quantity {
        id: p.id,
        quantity: p.quantity,
        held: p.held,
        available: p.available,
        version: p.version,
    })
    .into_response();
    res.headers_mut().insert(header::ETAG, tag);
    res
}

async fn get_quantity(State(store): State<Store>, Path(id): Path<String>) -> Result<Response> {
    check_path_id(&id)?;
    let p = store.get(&id).await?.ok_or(Error::NotFound(id))?;
    Ok(quantity_response(p))
}

async fn set_quantity(
    _: Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SetQuantity>,
) -> Result<Response> {
    check_path_id(&id)?;
    let pre = precondition(&headers)?;
    model::check_quantity("quantity", body.quantity)?;
    let expect = expect(&store, &id, pre).await?;
    let p = store.set_quantity(&id, body.quantity, expect).await?;
    Ok(quantity_response(p))
}

async fn adjust_quantity(
    _: Admin,
    State(store): State<Store>,
    Path(id): Path<String>,
    Json(body): Json<AdjustQuantity>,
) -> Result<Response> {
    check_path_id(&id)?;
    if !(-model::QUANTITY_MAX..=model::QUANTITY_MAX).contains(&body.delta) {
        return Err(Error::field(
            "delta",
            format!("must be between -{0} and {0}", model::QUANTITY_MAX),
        ));
    }
    let p = store.adjust_quantity(&id, body.delta).await?;
    Ok(quantity_response(p))
}

#[derive(Debug, Serialize)]
struct Price {
    id: String,
    unit_price_minor: i64,
    currency: String,
}

async fn get_price(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<Price>> {
    check_path_id(&id)?;
    let p = store.get(&id).await?.ok_or(Error::NotFound(id))?;
    Ok(axum::Json(Price {
        id: p.id,
        unit_price_minor: p.unit_price_minor,
        currency: p.currency,
    }))
}

/// 201 with a Location for a new hold; 200 for a replay of an existing id
/// with the same items (the saga's retry), whatever state it is in now.
async fn hold(
    _: Caller,
    State(store): State<Store>,
    Json(body): Json<NewReservation>,
) -> Result<Response> {
    body.validate()?;
    let id = body.id.clone().unwrap_or_else(reservation::new_id);
    let (r, created) = store.hold(&id, &body.lines(), body.ttl_secs()).await?;
    if !created {
        return Ok(axum::Json(r).into_response());
    }
    let location = HeaderValue::from_str(&format!("/reservations/{id}"))
        .expect("valid ids are valid header values");
    let mut res = (StatusCode::CREATED, axum::Json(r)).into_response();
    res.headers_mut().insert(header::LOCATION, location);
    Ok(res)
}

async fn get_reservation(
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<Reservation>> {
    check_id("reservation", &id)?;
    let r = store
        .reservation(&id)
        .await?
        .ok_or(Error::ReservationNotFound(id))?;
    Ok(axum::Json(r))
}

async fn commit(
    _: Caller,
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<Reservation>> {
    check_id("reservation", &id)?;
    Ok(axum::Json(store.commit(&id).await?))
}

async fn release(
    _: Caller,
    State(store): State<Store>,
    Path(id): Path<String>,
) -> Result<axum::Json<Reservation>> {
    check_id("reservation", &id)?;
    Ok(axum::Json(store.release(&id).await?))
}
