//! The saga's steps: one call each (plus look-ups that put a refusal in
//! words), and what each possible answer means.

use super::{capitalised, fail, Next, Saga};
use crate::db::{Change, PricedLine};
use crate::model::{Order, Reason, Step};
use crate::upstream::{Reply, Upstream};
use kit::telemetry::RequestContext;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Instant;

const OUT_OF_TIME: &str = "the drive ran out of time before the call";

/// No answer from a service (`who`: the one called, or users when the
/// shop's own token could not be had) before anything was charged.
fn unavailable(who: &str, then: Step) -> Next {
    let name = match who {
        "users" => "The sign-in service (users)".to_owned(),
        other => capitalised(other),
    };
    fail(
        Reason::ServiceUnavailable,
        format!("{name} is not answering; nothing was charged, try again"),
        then,
    )
}

/// An answer the saga does not expect from a service (a bug on one side):
/// logged; the checkout fails and is undone.
fn rejected(service: &Upstream, status: u16, body: &Value, then: Step) -> Next {
    tracing::error!(service = service.name, status, problem = %body, "unexpected answer");
    fail(
        Reason::Rejected,
        format!(
            "{} refused this checkout unexpectedly; nothing was charged, and the shop has been told",
            capitalised(service.name)
        ),
        then,
    )
}

fn items(o: &Order) -> Vec<Value> {
    o.lines
        .iter()
        .map(|l| json!({"product_id": l.product_id, "quantity": l.quantity}))
        .collect()
}

/// What inventory says of a product, for messages.
enum Lookup {
    Found(String),
    Missing,
    Unknown,
}

impl Saga {
    pub(super) async fn hold(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> Next {
        let body =
            json!({"id": o.reservation_id, "items": items(o), "ttl_secs": self.hold_ttl_secs});
        let reply = self
            .inventory
            .call(
                Method::POST,
                "/reservations",
                Some(&body),
                None,
                ctx,
                deadline,
            )
            .await;
        match reply {
            Reply::Answer {
                status: 200 | 201,
                body,
            } => match body["state"].as_str() {
                Some("held" | "committed") => Next::Do(Change::Held),
                // A retry found the hold already given back (it outlived
                // its TTL while orders was away).
                _ => fail(
                    Reason::HoldExpired,
                    "Your items were held too long and went back on sale; nothing was charged, check out again".into(),
                    Step::Release,
                ),
            },
            // All or nothing: nothing is held, but releasing costs one call
            // and covers an earlier attempt that may have held.
            Reply::Answer { status: 409, body } => fail(
                Reason::OutOfStock,
                self.shortages(&body, ctx, deadline).await,
                Step::Release,
            ),
            Reply::Answer { status: 404, .. } => fail(
                Reason::UnknownProduct,
                self.unknown_products(o, ctx, deadline).await,
                Step::Release,
            ),
            Reply::Answer { status, body } => {
                rejected(&self.inventory, status, &body, Step::Release)
            }
            Reply::NoAnswer { who, .. } => unavailable(who, Step::Release),
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    pub(super) async fn quote(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> Next {
        let body = json!({"items": items(o)});
        let reply = self
            .pricing
            .call(Method::POST, "/quote", Some(&body), None, ctx, deadline)
            .await;
        match reply {
            Reply::Answer { status: 200, body } => match quoted(o, &body) {
                Some(change) => Next::Do(change),
                None => rejected(&self.pricing, 200, &body, Step::Release),
            },
            Reply::Answer { status: 404, .. } => fail(
                Reason::UnknownProduct,
                self.unknown_products(o, ctx, deadline).await,
                Step::Release,
            ),
            Reply::Answer { status: 422, body }
                if Reply::problem_type(&body) == "mixed-currencies" =>
            {
                fail(
                    Reason::MixedCurrencies,
                    "The products in your cart are priced in different currencies; check them out separately. Nothing was charged".into(),
                    Step::Release,
                )
            }
            Reply::Answer { status, body } => rejected(&self.pricing, status, &body, Step::Release),
            Reply::NoAnswer { who, .. } => unavailable(who, Step::Release),
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    /// `in_doubt`: a charge request of an earlier drive may have reached
    /// payments, so only an answer about the key settles it.
    pub(super) async fn charge(
        &self,
        o: &Order,
        in_doubt: bool,
        ctx: &RequestContext,
        deadline: Instant,
    ) -> Next {
        let (Some(total), Some(currency)) = (o.total_minor, o.currency.as_deref()) else {
            return Next::Later("the checkout has no quote yet".into());
        };
        if total == 0 {
            return Next::Do(Change::Charged { charge_id: None });
        }
        let body = json!({"amount_minor": total, "currency": currency, "reference": o.id});
        let path = format!("/wallets/{}/charges", o.user_id);
        let reply = self
            .payments
            .call(
                Method::POST,
                &path,
                Some(&body),
                Some(&o.charge_key),
                ctx,
                deadline,
            )
            .await;
        let cost = o.total_text().unwrap_or_default();
        // Answers stored under the key (payments replays them): final.
        match reply {
            Reply::Answer { status: 201, body } => match body["id"].as_str() {
                Some(id) => Next::Do(Change::Charged {
                    charge_id: Some(id.to_owned()),
                }),
                None => Next::Later("payments answered 201 without a charge id".into()),
            },
            Reply::Answer { status: 409, .. } => fail(
                Reason::InsufficientFunds,
                self.funds(o, &cost, ctx, deadline).await,
                Step::Release,
            ),
            Reply::Answer { status: 404, .. } => fail(
                Reason::NoWallet,
                format!("You have no wallet yet; top it up with at least {cost}, then check out again. Nothing was charged"),
                Step::Release,
            ),
            Reply::Answer { status: 422, body }
                if Reply::problem_type(&body) == "currency-mismatch" =>
            {
                fail(
                    Reason::CurrencyMismatch,
                    format!("Your wallet holds another currency than this order's {currency}; nothing was charged"),
                    Step::Release,
                )
            }
            // Anything else says nothing about what an earlier request
            // under the key did (a key reused with another body, a token
            // refused): unless this drive sent every request, wait.
            Reply::Answer { status, body } if in_doubt => {
                tracing::error!(order = %o.id, status, problem = %body, "unexpected answer to a charge");
                Next::Later(format!("payments answered {status}"))
            }
            Reply::Answer { status, body } => {
                rejected(&self.payments, status, &body, Step::Release)
            }
            Reply::NoAnswer {
                sent: false, who, ..
            } if !in_doubt => unavailable(who, Step::Release),
            Reply::NoAnswer { reason, .. } => {
                Next::Later(format!("the charge's outcome is unknown: {reason}"))
            }
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    pub(super) async fn commit(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> Next {
        let path = format!("/reservations/{}/commit", o.reservation_id);
        match self
            .inventory
            .call(Method::POST, &path, None, None, ctx, deadline)
            .await
        {
            Reply::Answer { status: 200, .. } => Next::Do(Change::Confirmed),
            // Expired or released (or never made): the stock is not ours.
            Reply::Answer {
                status: 404 | 409, ..
            } => {
                let (message, then) = match (&o.charge_id, o.total_text()) {
                    (Some(_), Some(cost)) => (
                        format!("Your items were held too long and went back on sale before the order was made; the {cost} charged are refunded to your wallet"),
                        Step::Refund,
                    ),
                    _ => (
                        "Your items were held too long and went back on sale before the order was made; nothing was charged".into(),
                        Step::Done,
                    ),
                };
                fail(Reason::HoldExpired, message, then)
            }
            Reply::Answer { status, body } => {
                tracing::error!(order = %o.id, status, problem = %body, "unexpected answer to a commit");
                Next::Later(format!("inventory answered {status}"))
            }
            Reply::NoAnswer { reason, .. } => Next::Later(reason),
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    pub(super) async fn release(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> Next {
        let path = format!("/reservations/{}/release", o.reservation_id);
        match self
            .inventory
            .call(Method::POST, &path, None, None, ctx, deadline)
            .await
        {
            Reply::Answer { status: 200, .. } => Next::Do(Change::Compensated {
                action: Some("release"),
            }),
            // Nothing was ever held under this id.
            Reply::Answer { status: 404, .. } => Next::Do(Change::Compensated { action: None }),
            Reply::Answer { status: 409, .. } => {
                tracing::error!(order = %o.id, "the hold of a failed checkout was committed");
                Next::Do(Change::Compensated { action: None })
            }
            Reply::Answer { status, .. } => Next::Later(format!("inventory answered {status}")),
            Reply::NoAnswer { reason, .. } => Next::Later(reason),
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    pub(super) async fn refund(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> Next {
        let (Some(charge_id), Some(total)) = (&o.charge_id, o.total_minor) else {
            return Next::Do(Change::Compensated { action: None });
        };
        let path = format!("/charges/{charge_id}/refunds");
        let body = json!({ "amount_minor": total });
        let reply = self
            .payments
            .call(
                Method::POST,
                &path,
                Some(&body),
                Some(&o.refund_key),
                ctx,
                deadline,
            )
            .await;
        match reply {
            Reply::Answer { status: 201, .. } => Next::Do(Change::Compensated {
                action: Some("refund"),
            }),
            // Refunded in full already (by someone else).
            Reply::Answer { status: 409, .. } => Next::Do(Change::Compensated { action: None }),
            Reply::Answer { status, body } => {
                tracing::error!(order = %o.id, status, problem = %body, "unexpected answer to a refund");
                Next::Later(format!("payments answered {status}"))
            }
            Reply::NoAnswer { reason, .. } => Next::Later(reason),
            Reply::OutOfTime => Next::Later(OUT_OF_TIME.into()),
        }
    }

    async fn product(&self, id: &str, ctx: &RequestContext, deadline: Instant) -> Lookup {
        let reply = self
            .inventory
            .call(
                Method::GET,
                &format!("/products/{id}"),
                None,
                None,
                ctx,
                deadline,
            )
            .await;
        match reply {
            Reply::Answer { status: 200, body } => match body["name"].as_str() {
                Some(name) => Lookup::Found(name.to_owned()),
                None => Lookup::Unknown,
            },
            Reply::Answer { status: 404, .. } => Lookup::Missing,
            _ => Lookup::Unknown,
        }
    }

    /// "Only 2 Teapot left; Matcha whisk is out of stock. Nothing was charged".
    async fn shortages(&self, problem: &Value, ctx: &RequestContext, deadline: Instant) -> String {
        let mut parts = Vec::new();
        for s in problem["shortages"].as_array().into_iter().flatten() {
            let id = s["product_id"].as_str().unwrap_or_default();
            let name = match self.product(id, ctx, deadline).await {
                Lookup::Found(name) => name,
                _ => id.to_owned(),
            };
            parts.push(match s["available"].as_i64().unwrap_or(0) {
                0 => format!("{name} is out of stock"),
                n => format!("Only {n} {name} left"),
            });
        }
        if parts.is_empty() {
            return "Some products in your cart are out of stock; nothing was charged".into();
        }
        format!("{}. Nothing was charged", parts.join("; "))
    }

    async fn unknown_products(&self, o: &Order, ctx: &RequestContext, deadline: Instant) -> String {
        let mut missing = Vec::new();
        for l in &o.lines {
            if let Lookup::Missing = self.product(&l.product_id, ctx, deadline).await {
                missing.push(l.product_id.clone());
            }
        }
        if missing.is_empty() {
            return "Some products in your cart are no longer sold; remove them and check out again. Nothing was charged".into();
        }
        format!(
            "{} {} no longer sold; remove {} from your cart and check out again. Nothing was charged",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            if missing.len() == 1 { "it" } else { "them" },
        )
    }

    /// "Your wallet has 12.00 EUR; this order costs 30.00 EUR".
    async fn funds(
        &self,
        o: &Order,
        cost: &str,
        ctx: &RequestContext,
        deadline: Instant,
    ) -> String {
        let reply = self
            .payments
            .call(
                Method::GET,
                &format!("/wallets/{}", o.user_id),
                None,
                None,
                ctx,
                deadline,
            )
            .await;
        match reply {
            Reply::Answer { status: 200, body } => {
                let balance = body["balance"].as_str().unwrap_or("?");
                let currency = body["currency"].as_str().unwrap_or_default();
                format!("Your wallet has {balance} {currency}; this order costs {cost}. Nothing was charged")
            }
            _ => format!(
                "Your wallet does not hold the {cost} this order costs; nothing was charged"
            ),
        }
    }
}

/// The quote's amounts and each line's price, if the quote covers exactly
/// the order's products.
fn quoted(o: &Order, b: &Value) -> Option<Change> {
    let currency = b["currency"].as_str()?.to_owned();
    let mut lines = Vec::new();
    for l in b["lines"].as_array()? {
        lines.push(PricedLine {
            product_id: l["product_id"].as_str()?.to_owned(),
            product_name: l["product_name"].as_str()?.to_owned(),
            unit_price_minor: l["unit_price_minor"].as_i64()?,
            line_total_minor: l["total_minor"].as_i64()?,
        });
    }
    let mut want: Vec<&str> = o.lines.iter().map(|l| l.product_id.as_str()).collect();
    let mut got: Vec<&str> = lines.iter().map(|l| l.product_id.as_str()).collect();
    want.sort_unstable();
    got.sort_unstable();
    let total = b["total_minor"].as_i64()?;
    if want != got || total < 0 {
        return None;
    }
    Some(Change::Quoted {
        currency,
        subtotal_minor: b["subtotal_minor"].as_i64()?,
        discount_minor: b["discount_minor"].as_i64()?,
        tax_minor: b["tax_minor"].as_i64()?,
        total_minor: total,
        lines,
    })
}
