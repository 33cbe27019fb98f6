//! `POST /checkouts`: the cart becomes an order, through the saga, driven
//! within the request for up to `CHECKOUT_DEADLINE_MS`.
//!
//! Answers: 201 with the confirmed order; the failure as problem+json
//! (its status by reason: 409 out of stock, 402 insufficient funds, 503 a
//! service not answering, …) with `reason` and the `order`; or 202 with
//! the pending order and `Location: /orders/{id}` when its outcome is not
//! known yet (the recovery loop finishes it; the client polls the order).
//!
//! The `Idempotency-Key` names the checkout: the same user and key again
//! is the same checkout, never a second order. A retry while the first
//! request still drives it waits for that one; a retry after the first
//! gave up drives it on.

use super::St;
use crate::db::{Created, Lease};
use crate::error::{status, Error, Result};
use crate::model::{self, Order, State};
use crate::saga::Saga;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kit::auth::Caller;
use kit::telemetry::RequestContext;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a retry looks whether the first request has finished.
const POLL: Duration = Duration::from_millis(100);
/// On an answer that repeats an earlier checkout's.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

pub async fn post(
    AxState(s): St,
    caller: Caller,
    ctx: RequestContext,
    headers: HeaderMap,
) -> Result<Response> {
    let key = model::idempotency_key(&headers)?;
    let saga = &s.saga;
    let deadline = Instant::now() + saga.deadline;
    let lease = saga.lease();
    let (order, replayed) = match saga
        .store
        .create_checkout(&caller.0.sub, &key, &lease)
        .await?
    {
        Created::Empty => {
            return Err(Error::field(
                "cart",
                "is empty; add products before checking out",
            ))
        }
        Created::Mismatch => return Err(Error::KeyReuse),
        Created::New(o) => {
            saga.metrics.started();
            tracing::info!(order = %o.id, lines = o.lines.len(), "checkout started");
            (
                detached(saga.clone(), o, lease, ctx, deadline).await?,
                false,
            )
        }
        Created::Existing(o) => (settle(saga, o, ctx, deadline).await?, true),
    };
    Ok(respond(&order, replayed))
}

/// Drives the saga in a task of its own: a client hanging up must not
/// stop it between two steps (it would sit leased until the lease ran out).
async fn detached(
    saga: Arc<Saga>,
    order: Order,
    lease: Lease,
    ctx: RequestContext,
    deadline: Instant,
) -> Result<Order> {
    let task = tokio::spawn(async move { saga.drive(order, &lease, &ctx, deadline).await });
    match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only while the runtime shuts down.
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolClosed)),
    }
}

/// An earlier checkout with this key: its outcome if it has one; else
/// drive it if nobody does, or wait for whoever does, until the deadline.
async fn settle(
    saga: &Arc<Saga>,
    mut order: Order,
    ctx: RequestContext,
    deadline: Instant,
) -> Result<Order> {
    loop {
        if order.state != State::Pending {
            return Ok(order);
        }
        let lease = saga.lease();
        if let Some(claimed) = saga.store.claim(&order.id, &lease).await? {
            return detached(saga.clone(), claimed, lease, ctx, deadline).await;
        }
        if Instant::now() + POLL >= deadline {
            return Ok(order);
        }
        tokio::time::sleep(POLL).await;
        order = saga
            .store
            .order(&order.id)
            .await?
            .ok_or(Error::Database(sqlx::Error::RowNotFound))?;
    }
}

fn respond(order: &Order, replayed: bool) -> Response {
    let location =
        HeaderValue::from_str(&format!("/orders/{}", order.id)).expect("order ids are header-safe");
    let mut res = match order.state {
        State::Confirmed => (StatusCode::CREATED, axum::Json(order.view())).into_response(),
        State::Pending => {
            let mut r = (StatusCode::ACCEPTED, axum::Json(order.view())).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            r
        }
        State::Failed => failed(order),
    };
    let h = res.headers_mut();
    h.insert(header::LOCATION, location);
    if replayed {
        h.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    res
}

/// problem+json in the failure's words, with `reason` and the `order`
/// (RFC 9457 extension members), so a client can branch without parsing.
fn failed(order: &Order) -> Response {
    let reason = order.reason.unwrap_or(crate::model::Reason::Rejected);
    let code = status(reason.status());
    let problem = kit::Problem::new(
        code,
        order
            .message
            .clone()
            .unwrap_or_else(|| "the checkout failed".into()),
    )
    .typed(&reason.as_str().replace('_', "-"));
    let mut body = serde_json::to_value(&problem).unwrap_or_default();
    body["reason"] = reason.as_str().into();
    body["order"] = serde_json::to_value(order.view()).unwrap_or_default();
    let mut res = (code, axum::Json(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kit::problem::CONTENT_TYPE),
    );
    if code == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    res
}
