//! The checkout saga: hold the stock, quote, charge, commit the hold,
//! confirm; and when something refuses, undo what was done (release the
//! hold, refund the charge).
//!
//! **Every step is safe to run again.** The hold names a reservation id
//! derived from the order, the charge and the refund carry Idempotency-Keys
//! derived from it, commit and release are idempotent: a step retried
//! after a timeout, or by another replica after a crash, finds what the
//! first attempt did instead of doing it twice. Each move is written to
//! the database (db/checkout.rs) before the next call leaves.
//!
//! **Outcomes are never guessed.** A definite refusal (not enough stock,
//! not enough money, the hold gone) fails the checkout with a reason in
//! words and undoes what was done. No answer before any money can have
//! moved (inventory or pricing silent, payments unreachable) fails it as
//! `service_unavailable` and releases the hold. But once a charge may
//! have reached payments, only payments' own answer under the charge's
//! key decides: until it comes the checkout stays `pending`, and the
//! recovery loop (recovery.rs) asks again, with the same key, until it
//! does. The same goes for a commit after the charge.

mod steps;

use crate::db::{now_ms, Change, Lease, Store};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::{Order, Reason, Step};
use crate::upstream::Upstream;
use kit::telemetry::RequestContext;
use std::time::{Duration, Instant};

/// What a step decided.
pub(crate) enum Next {
    /// Write this move and go on.
    Do(Change),
    /// No definite answer: the same step again later, with the same ids.
    Later(String),
}

/// A definite failure, `then` undoing what was done.
fn fail(reason: Reason, message: String, then: Step) -> Next {
    Next::Do(Change::Failed {
        reason,
        message,
        then,
    })
}

pub struct Saga {
    pub store: Store,
    pub inventory: Upstream,
    pub pricing: Upstream,
    pub payments: Upstream,
    pub metrics: Metrics,
    /// The hold's TTL: a checkout that never finishes gives its stock back.
    pub hold_ttl_secs: i64,
    /// How long one drive may take (the HTTP call's, and each recovery's).
    pub deadline: Duration,
    pub lease_ms: i64,
    /// The first retry's delay; doubled per attempt up to a minute.
    pub retry_base: Duration,
}

impl Saga {
    /// A lease for a new drive.
    pub fn lease(&self) -> Lease {
        Lease::new(self.lease_ms)
    }

    /// Drives a checkout `lease` holds, step after step, until it is done,
    /// a step has no definite answer, or `deadline`; then lets the lease
    /// go (a checkout not done is due again after a backoff). Returns the
    /// checkout as it is now.
    pub async fn drive(
        &self,
        order: Order,
        lease: &Lease,
        ctx: &RequestContext,
        deadline: Instant,
    ) -> Result<Order> {
        let id = order.id.clone();
        let (order, held) = self.steps(order, lease, ctx, deadline).await?;
        if !held {
            return Ok(self.store.order(&id).await?.unwrap_or(order));
        }
        let next = (order.step != Step::Done).then(|| self.next_attempt(order.attempts));
        self.store.let_go(&order.id, lease, next).await?;
        Ok(order)
    }

    /// The order, and whether this lease still holds it.
    async fn steps(
        &self,
        mut order: Order,
        lease: &Lease,
        ctx: &RequestContext,
        deadline: Instant,
    ) -> Result<(Order, bool)> {
        // Whether this drive wrote `charge_sent`: then every charge request
        // that may have reached payments is one of its own, and it knows
        // when none did.
        let mut sent_here = false;
        loop {
            if order.step == Step::Done || Instant::now() >= deadline {
                return Ok((order, true));
            }
            if order.step == Step::Charge && !order.charge_sent {
                match self.advance(&order, lease, Change::ChargeSent).await? {
                    Some(o) => order = o,
                    None => return Ok((order, false)),
                }
                sent_here = true;
            }
            let next = match order.step {
                Step::Hold => self.hold(&order, ctx, deadline).await,
                Step::Quote => self.quote(&order, ctx, deadline).await,
                Step::Charge => self.charge(&order, !sent_here, ctx, deadline).await,
                Step::Commit => self.commit(&order, ctx, deadline).await,
                Step::Release => self.release(&order, ctx, deadline).await,
                Step::Refund => self.refund(&order, ctx, deadline).await,
                Step::Done => return Ok((order, true)),
            };
            let change = match next {
                Next::Do(change) => change,
                Next::Later(why) => {
                    tracing::info!(order = %order.id, step = order.step.as_str(), %why,
                        "no definite answer; the checkout is tried again later");
                    return Ok((order, true));
                }
            };
            match self.advance(&order, lease, change).await? {
                Some(o) => order = o,
                None => return Ok((order, false)),
            }
        }
    }

    async fn advance(&self, order: &Order, lease: &Lease, change: Change) -> Result<Option<Order>> {
        let moved = self
            .store
            .advance(&order.id, lease, order.step, change.clone())
            .await?;
        match &moved {
            Some(o) => {
                self.metrics.changed(&change);
                tracing::debug!(order = %o.id, from = order.step.as_str(), to = o.step.as_str(), "checkout moved");
            }
            None => tracing::warn!(order = %order.id, "another driver took this checkout over"),
        }
        Ok(moved)
    }

    /// `retry_base` × 2^attempts, at most a minute (or the base, if
    /// larger), with jitter so replicas do not retry in step.
    fn next_attempt(&self, attempts: i64) -> i64 {
        let base = self.retry_base.as_millis() as i64;
        let cap = base.max(60_000);
        let delay = base.saturating_mul(1 << attempts.clamp(0, 16)).min(cap);
        now_ms() + delay / 2 + rand::random_range(0..=delay / 2)
    }
}

/// "Inventory" for "inventory", in sentences.
fn capitalised(name: &str) -> String {
    let mut c = name.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
