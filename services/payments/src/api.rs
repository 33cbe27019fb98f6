//! HTTP routes: a user's wallet (`/wallets/{user_id}`), its top-ups,
//! charges and history, and charges by id with their refunds.
//!
//! **Who may do what.** A wallet's id is its owner's user id (the token's
//! `sub`). The owner reads it, tops it up and pays from it. The shop's
//! backend acts for users with a token carrying the role `service`: it may
//! read wallets, charge them and refund charges. An `admin` may do all of
//! that and top up any wallet. Refunds are never the owner's to make (a
//! customer refunding their own purchase would take back money for goods
//! they keep). Anyone else naming a wallet gets 403; a charge that is not
//! yours to see is a 404, like one that does not exist.

use crate::body::{Fields, REFERENCE_MAX};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::idempotency::{self, fingerprint};
use crate::ledger::{self, Answer, Op};
use crate::AMOUNT_MAX;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kit::auth::{Caller, Verifier};
use kit::extract::{Json, Path, Query};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

pub const PAGE_DEFAULT: i64 = 20;
pub const PAGE_MAX: i64 = 100;
/// User ids as path segments: what the users service issues and more.
pub const USER_ID_MAX: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Currency {
    pub currency: String,
}

/// Money movements by outcome, for the dashboard. Replays are counted
/// apart and not again as movements.
#[derive(Clone, Default)]
pub struct Metrics {
    pub charges: Family<Outcome, Counter>,
    pub top_ups: Family<Outcome, Counter>,
    pub refunds: Family<Outcome, Counter>,
    pub replays: Family<Operation, Counter>,
    pub charged_minor: Family<Currency, Counter>,
}

impl Metrics {
    pub fn register(&self, m: &mut kit::metrics::Metrics) {
        let r = m.registry_mut();
        r.register(
            "payments_charges",
            "Charges by outcome (succeeded, insufficient_funds, failed)",
            self.charges.clone(),
        );
        r.register(
            "payments_top_ups",
            "Top-ups by outcome (succeeded, failed)",
            self.top_ups.clone(),
        );
        r.register(
            "payments_refunds",
            "Refunds by outcome (succeeded, exceeds_charge, failed)",
            self.refunds.clone(),
        );
        r.register(
            "payments_idempotent_replays",
            "Requests answered with the stored response of an earlier one with the same Idempotency-Key",
            self.replays.clone(),
        );
        r.register(
            "payments_charged_minor",
            "Money charged, in minor units, by currency",
            self.charged_minor.clone(),
        );
    }

    /// Counts an answer: replays apart, otherwise by status.
    fn count(&self, op: &Op, answer: &Result<Answer>) {
        let (name, family) = match op {
            Op::TopUp { .. } => ("top_up", &self.top_ups),
            Op::Charge { .. } => ("charge", &self.charges),
            Op::Refund { .. } => ("refund", &self.refunds),
        };
        let status = match answer {
            Ok(Answer::Replay(_)) => {
                self.replays
                    .get_or_create(&Operation { operation: name })
                    .inc();
                return;
            }
            Err(Error::KeyReuse) => return,
            Ok(Answer::Fresh(s)) => s.status,
            Err(_) => 0,
        };
        let outcome = match (op, status) {
            (_, 201) => "succeeded",
            (Op::Charge { .. }, 409) => "insufficient_funds",
            (Op::Refund { .. }, 409) => "exceeds_charge",
            _ => "failed",
        };
        family.get_or_create(&Outcome { outcome }).inc();
        if let (
            Op::Charge {
                amount, currency, ..
            },
            201,
        ) = (op, status)
        {
            self.charged_minor
                .get_or_create(&Currency {
                    currency: currency.clone(),
                })
                .inc_by(*amount as u64);
        }
    }
}

pub struct AppState {
    pub store: Store,
    pub max_top_up_minor: i64,
    pub metrics: Metrics,
}

type St = State<Arc<AppState>>;

pub fn routes(state: Arc<AppState>, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/wallets/{user_id}", get(wallet))
        .route("/wallets/{user_id}/top-ups", post(top_up))
        .route("/wallets/{user_id}/charges", post(charge))
        .route("/wallets/{user_id}/transactions", get(transactions))
        .route("/charges/{charge_id}", get(get_charge))
        .route("/charges/{charge_id}/refunds", post(refund))
        .layer(axum::Extension(verifier))
        .with_state(state)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    Read,
    TopUp,
    Charge,
}

fn check_user_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= USER_ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "user_id",
            format!("must be 1 to {USER_ID_MAX} of A-Z a-z 0-9 . _ : @ -"),
        ))
    }
}

/// The module doc's rules for a wallet named in the path.
fn authorize(caller: &Caller, user_id: &str, act: Act) -> Result<()> {
    check_user_id(user_id)?;
    let c = &caller.0;
    let allowed =
        c.sub == user_id || c.has_role("admin") || (act != Act::TopUp && c.has_role("service"));
    if allowed {
        Ok(())
    } else if act == Act::TopUp {
        Err(Error::Forbidden(
            "only its owner (or an admin) tops up a wallet".into(),
        ))
    } else {
        Err(Error::Forbidden(
            "this is another user's wallet; only its owner, the shop (role service) or an admin may use it"
                .into(),
        ))
    }
}

fn is_charge_id(id: &str) -> bool {
    id.len() == 35
        && id.starts_with("ch_")
        && id[3..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn no_wallet(user_id: &str) -> Error {
    Error::NotFound(format!(
        "user {user_id:?} has no wallet yet; the first top-up creates it"
    ))
}

async fn wallet(State(s): St, caller: Caller, Path(user_id): Path<String>) -> Result<Response> {
    authorize(&caller, &user_id, Act::Read)?;
    let w = s
        .store
        .wallet(&user_id)
        .await?
        .ok_or_else(|| no_wallet(&user_id))?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(w)))
}

/// Runs a validated money-moving request under its key and answers.
async fn move_money(
    s: &AppState,
    caller: &Caller,
    key: &str,
    hash: &str,
    op: Op,
) -> Result<Response> {
    let answer = ledger::execute(&s.store, &caller.0.sub, key, hash, &op).await;
    s.metrics.count(&op, &answer);
    Ok(match answer? {
        Answer::Fresh(stored) => stored.respond(false),
        Answer::Replay(stored) => stored.respond(true),
    })
}

async fn top_up(
    State(s): St,
    caller: Caller,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response> {
    authorize(&caller, &user_id, Act::TopUp)?;
    let key = idempotency::key(&headers)?;
    let mut f = Fields::new(body, &["amount_minor", "currency"])?;
    let amount = f.amount("amount_minor", s.max_top_up_minor);
    let currency = f.currency("currency");
    f.finish()?;
    let hash = fingerprint(
        "POST",
        &format!("/wallets/{user_id}/top-ups"),
        &[
            ("amount_minor", amount.into()),
            ("currency", currency.as_str().into()),
        ],
    );
    let op = Op::TopUp {
        user_id,
        amount,
        currency,
    };
    move_money(&s, &caller, &key, &hash, op).await
}

async fn charge(
    State(s): St,
    caller: Caller,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response> {
    authorize(&caller, &user_id, Act::Charge)?;
    let key = idempotency::key(&headers)?;
    let mut f = Fields::new(body, &["amount_minor", "currency", "reference"])?;
    let amount = f.amount("amount_minor", AMOUNT_MAX);
    let currency = f.currency("currency");
    let reference = f.text("reference", REFERENCE_MAX);
    f.finish()?;
    let hash = fingerprint(
        "POST",
        &format!("/wallets/{user_id}/charges"),
        &[
            ("amount_minor", amount.into()),
            ("currency", currency.as_str().into()),
            ("reference", reference.as_str().into()),
        ],
    );
    let op = Op::Charge {
        user_id,
        amount,
        currency,
        reference,
    };
    move_money(&s, &caller, &key, &hash, op).await
}

async fn refund(
    State(s): St,
    caller: Caller,
    Path(charge_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response> {
    if !(caller.0.has_role("service") || caller.0.has_role("admin")) {
        return Err(Error::Forbidden(
            "refunds are made by the shop (role service) or an admin".into(),
        ));
    }
    if !is_charge_id(&charge_id) {
        return Err(Error::NotFound(format!("no charge {charge_id:?}")));
    }
    let key = idempotency::key(&headers)?;
    let mut f = Fields::new(body, &["amount_minor"])?;
    let amount = f.amount("amount_minor", AMOUNT_MAX);
    f.finish()?;
    let hash = fingerprint(
        "POST",
        &format!("/charges/{charge_id}/refunds"),
        &[("amount_minor", amount.into())],
    );
    move_money(&s, &caller, &key, &hash, Op::Refund { charge_id, amount }).await
}

async fn get_charge(State(s): St, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let missing = || Error::NotFound(format!("no charge {id:?}"));
    if !is_charge_id(&id) {
        return Err(missing());
    }
    let c = s
        .store
        .movement(&id)
        .await?
        .filter(|m| m.kind == "charge")
        .ok_or_else(missing)?;
    // Not yours to see: the same answer as no such charge.
    authorize(&caller, &c.user_id, Act::Read).map_err(|_| missing())?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(c)))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

#[derive(Serialize)]
struct Page {
    items: Vec<crate::db::Movement>,
    /// Pass as `after` for the next (older) page; null on the last page.
    next_after: Option<String>,
}

async fn transactions(
    State(s): St,
    caller: Caller,
    Path(user_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Page>> {
    authorize(&caller, &user_id, Act::Read)?;
    let limit = match q.limit.as_deref() {
        None => PAGE_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=PAGE_MAX).contains(l))
            .ok_or_else(|| {
                Error::bad_request(
                    "limit",
                    format!("must be a whole number from 1 to {PAGE_MAX}"),
                )
            })?,
    };
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(a.parse::<i64>().ok().filter(|a| *a > 0).ok_or_else(|| {
            Error::bad_request("after", "must be the next_after of a previous page")
        })?),
    };
    if s.store.wallet(&user_id).await?.is_none() {
        return Err(no_wallet(&user_id));
    }
    // One extra row tells whether an older page exists without a COUNT.
    let mut rows = s.store.history(&user_id, after, limit + 1).await?;
    let next_after = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    Ok(axum::Json(Page {
        items: rows.into_iter().map(|(_, m)| m).collect(),
        next_after,
    }))
}
