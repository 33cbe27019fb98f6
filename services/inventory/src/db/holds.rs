//! Stock holds: one write transaction per hold, commit, release or expiry.
//!
//! A hold spans several product rows, so unlike the single-product writes
//! it needs a transaction, and two rules keep those transactions from
//! failing under load:
//!
//! - SQLite: `BEGIN IMMEDIATE` takes the write lock up front, where
//!   `busy_timeout` queues it behind other writers. A deferred `BEGIN` that
//!   writes later would have to upgrade a read lock, and SQLite refuses that
//!   at once with "database is locked", whatever the timeout.
//! - PostgreSQL (READ COMMITTED): the conditional UPDATEs lock the rows they
//!   change. Every transaction takes its reservation row first, then its
//!   product rows in product id order, so no two of them ever wait on each
//!   other in a cycle; deadlocks and serialization failures, should one
//!   happen anyway, retry the whole transaction.
//!
//! Each product UPDATE carries its precondition in its `WHERE` (enough
//! available), so a hold never oversells, and `held <= quantity` is also a
//! CHECK in the schema.

use super::{now as now_stamp, product, Store, COLS};
use crate::error::{Error, Result};
use crate::model::Product;
use crate::reservation::{now_ms, rfc3339, Item, Reservation, Shortage, State};
use kit::args;
use kit::db::{LiteTx, Row, Tx};
use sqlx::AnyConnection;
use std::future::Future;
use std::time::Duration;

/// Attempts of one transaction before contention becomes a 503.
const MAX_ATTEMPTS: u64 = 4;
/// Expired holds one sweep gives back; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;

const RESERVATION_COLS: &str = "id, state, expires_at, created_at, updated_at";

/// How a held reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    /// Sold: the units leave the stock (unless the hold is past its TTL).
    Commit,
    /// Given back by the client.
    Release,
    /// Given back by the sweeper, once past its TTL.
    Expire,
}

/// What one write transaction decided: its answer, the product rows it
/// changed (`None`: deleted), published to the cache once committed, and
/// the outcome to count then. An `Err` from the transaction itself undoes
/// its writes; `value` may be an error that still commits (a commit past
/// the TTL expires the hold and answers 409).
pub(super) struct Done<T> {
    pub value: Result<T>,
    pub changed: Vec<(String, Option<Product>)>,
    pub outcome: Option<&'static str>,
}

impl<T> Done<T> {
    pub fn unchanged(value: T) -> Self {
        Self {
            value: Ok(value),
            changed: Vec::new(),
            outcome: None,
        }
    }
}

impl Done<Product> {
    pub fn product(p: Product) -> Self {
        Self {
            changed: vec![(p.id.clone(), Some(p.clone()))],
            value: Ok(p),
            outcome: None,
        }
    }
}

/// A write transaction of this service, written once (an `async fn` over
/// [`Tx`]) and run by either backend: on SQLite's writer thread, or on a
/// pooled PostgreSQL connection in a task of its own.
pub(super) trait Write: Send + Sync + 'static {
    type Out: Send + 'static;
    fn lite(&self, c: &mut LiteTx<'_>) -> Result<Done<Self::Out>>;
    fn pg<'a>(
        &'a self,
        c: &'a mut AnyConnection,
    ) -> impl Future<Output = Result<Done<Self::Out>>> + Send + 'a;
}

/// `write_op!(Type -> Out, |op, c| future)`: implements [`Write`] for
/// both backends with the same body.
macro_rules! write_op {
    ($ty:ty => $out:ty, |$op:ident, $c:ident| $body:expr) => {
        impl $crate::db::holds::Write for $ty {
            type Out = $out;
            fn lite(
                &self,
                $c: &mut kit::db::LiteTx<'_>,
            ) -> $crate::error::Result<$crate::db::holds::Done<$out>> {
                let $op = self;
                kit::db::ready($body)
            }
            fn pg<'a>(
                &'a self,
                $c: &'a mut sqlx::AnyConnection,
            ) -> impl std::future::Future<
                Output = $crate::error::Result<$crate::db::holds::Done<$out>>,
            > + Send
                   + 'a {
                let $op = self;
                $body
            }
        }
    };
}
pub(super) use write_op;

struct Hold {
    id: String,
    lines: Vec<Item>,
    ttl_ms: i64,
}
write_op!(Hold => (Reservation, bool), |op, c| hold_once(c, &op.id, &op.lines, op.ttl_ms));

struct End {
    id: String,
    how: Finish,
}
write_op!(End => Option<Reservation>, |op, c| finish_once(c, &op.id, op.how));

impl Store {
    /// Holds every line or none. `lines` must be in product id order (the
    /// lock order). Replaying an existing id with the same lines returns
    /// that reservation as it is now, with `false` for "not created".
    pub async fn hold(
        &self,
        id: &str,
        lines: &[Item],
        ttl_secs: i64,
    ) -> Result<(Reservation, bool)> {
        let r = self
            .write(Hold {
                id: id.to_owned(),
                lines: lines.to_vec(),
                ttl_ms: ttl_secs * 1000,
            })
            .await;
        if let Err(Error::Insufficient(_)) = &r {
            self.outcomes.count("refused");
        }
        r
    }

    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let mut c = self.pool.acquire().await?;
        load(&mut *c, id).await
    }

    /// Sells a held reservation. Committing twice is fine; committing one
    /// that was released or has expired (even if the sweeper has not got to
    /// it yet: it is expired here, and its units given back) is refused.
    pub async fn commit(&self, id: &str) -> Result<Reservation> {
        self.finish(id, Finish::Commit)
            .await?
            .ok_or_else(|| Error::ReservationNotFound(id.to_owned()))
    }

    /// Gives a held reservation's units back. Releasing twice is fine, and
    /// so is releasing one that expired: either way the units are back.
    pub async fn release(&self, id: &str) -> Result<Reservation> {
        self.finish(id, Finish::Release)
            .await?
            .ok_or_else(|| Error::ReservationNotFound(id.to_owned()))
    }

    /// Expires the holds whose TTL has passed, oldest first; how many.
    pub async fn expire_due(&self) -> Result<usize> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM reservations WHERE state = 'held' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(now_ms())
        .bind(SWEEP_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = 0;
        // One transaction each: a batch would lock several reservations'
        // products out of id order, and deadlock with a hold.
        for id in ids {
            if self.finish(&id, Finish::Expire).await?.is_some() {
                expired += 1;
            }
        }
        Ok(expired)
    }

    async fn finish(&self, id: &str, how: Finish) -> Result<Option<Reservation>> {
        self.write(End {
            id: id.to_owned(),
            how,
        })
        .await
    }

    /// Runs a write transaction: on SQLite on the writer thread, which
    /// publishes the rows it changed to the cache right after its COMMIT,
    /// in commit order (so the cache stays exact); on PostgreSQL again, a
    /// few times, when concurrent writers collided.
    pub(super) async fn write<W: Write>(&self, w: W) -> Result<W::Out> {
        let Some(writer) = &self.writer else {
            let store = self.clone();
            return detached(async move { store.write_pg(&w).await }).await;
        };
        let (cache, outcomes) = (self.cache.clone(), self.outcomes.clone());
        let done = writer
            .run(
                move |c| w.lite(c),
                move |done: &Done<W::Out>| {
                    if let Some(cache) = &cache {
                        for (id, p) in &done.changed {
                            cache.publish(id, p.as_ref());
                        }
                    }
                    if let Some(outcome) = done.outcome {
                        outcomes.count(outcome);
                    }
                },
            )
            .await?;
        done.value
    }

    async fn write_pg<W: Write>(&self, w: &W) -> Result<W::Out> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.write_pg_once(w).await {
                Err(Error::Contention(e)) if tries < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, tries, "retrying a write transaction");
                    tokio::time::sleep(Duration::from_millis(10 * tries)).await;
                }
                r => return r,
            }
        }
    }

    async fn write_pg_once<W: Write>(&self, w: &W) -> Result<W::Out> {
        let mut tx = self.pool.begin().await?;
        let done = match w.pg(&mut tx).await {
            Ok(done) => done,
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        tx.commit().await?;
        if let Some(outcome) = done.outcome {
            self.outcomes.count(outcome);
        }
        done.value
    }
}

/// Runs a PostgreSQL transaction in its own task: a client hanging up
/// drops the request's future, and a transaction is better finished (or
/// rolled back) by us than left to the pool half-way. (SQLite's writer
/// thread finishes its work whatever happens to the request.)
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(work).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only while the runtime shuts down.
        Err(_) => Err(Error::from(sqlx::Error::PoolClosed)),
    }
}

async fn hold_once<C: Tx>(
    c: &mut C,
    id: &str,
    lines: &[Item],
    ttl_ms: i64,
) -> Result<Done<(Reservation, bool)>> {
    let now = now_ms();
    let stamp = now_stamp();
    // The reservation row first: a concurrent hold with the same id waits
    // here for this one to finish, then sees it as a replay.
    let inserted = c
        .execute(
            "INSERT INTO reservations (id, state, expires_at, created_at, updated_at) \
             VALUES ($1, 'held', $2, $3, $3) ON CONFLICT (id) DO NOTHING",
            &args![id, now + ttl_ms, now],
        )
        .await?;
    if inserted == 0 {
        let existing = load(c, id)
            .await?
            .ok_or_else(|| Error::Contention(format!("reservation {id:?} vanished")))?;
        return if existing.items == lines {
            Ok(Done::unchanged((existing, false)))
        } else {
            Err(Error::ReservationMismatch(id.to_owned()))
        };
    }
    let mut changed = Vec::with_capacity(lines.len());
    let (mut unknown, mut short) = (Vec::new(), Vec::new());
    for line in lines {
        let refused = !unknown.is_empty() || !short.is_empty();
        if !refused {
            if let Some(p) = take(c, line, &stamp).await? {
                changed.push((p.id.clone(), Some(p)));
                continue;
            }
        }
        // Refused (or after a refusal, only looked at): say why, for every
        // product, so the client learns everything from one answer.
        match available(c, &line.product_id).await? {
            None => unknown.push(line.product_id.clone()),
            Some(a) if a < line.quantity => short.push(Shortage {
                product_id: line.product_id.clone(),
                requested: line.quantity,
                available: a,
            }),
            // Enough after all: a release committed between the statements.
            Some(_) if !refused => {
                return Err(Error::Contention(format!(
                    "stock of {:?} moved",
                    line.product_id
                )))
            }
            Some(_) => {}
        }
    }
    if !unknown.is_empty() {
        return Err(Error::UnknownProducts(unknown));
    }
    if !short.is_empty() {
        return Err(Error::Insufficient(short));
    }
    for line in lines {
        c.execute(
            "INSERT INTO reservation_lines (reservation_id, product_id, quantity) \
             VALUES ($1, $2, $3)",
            &args![id, &line.product_id, line.quantity],
        )
        .await?;
    }
    let reservation = Reservation {
        id: id.to_owned(),
        state: State::Held,
        items: lines.to_vec(),
        expires_at: rfc3339(now + ttl_ms),
        created_at: rfc3339(now),
        updated_at: rfc3339(now),
    };
    Ok(Done {
        value: Ok((reservation, true)),
        changed,
        outcome: Some("held"),
    })
}

/// Holds one line's units if that many are available; None if not (or no
/// such product).
async fn take<C: Tx>(c: &mut C, line: &Item, stamp: &str) -> Result<Option<Product>> {
    let sql = format!(
        "UPDATE products SET held = held + $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND quantity - held >= $1 RETURNING {COLS}"
    );
    let row = c
        .fetch_optional(&sql, &args![line.quantity, stamp, &line.product_id])
        .await?;
    Ok(row.as_ref().map(product).transpose()?)
}

async fn available<C: Tx>(c: &mut C, product_id: &str) -> Result<Option<i64>> {
    let row = c
        .fetch_optional(
            "SELECT quantity - held AS available FROM products WHERE id = $1",
            &args![product_id],
        )
        .await?;
    Ok(row.map(|r| r.get::<i64>("available")).transpose()?)
}

async fn finish_once<C: Tx>(c: &mut C, id: &str, how: Finish) -> Result<Done<Option<Reservation>>> {
    let (set, due) = match how {
        // A commit after the TTL is an expiry: the client may have been
        // told the hold was gone, and the sweeper may already be on its way.
        Finish::Commit => (
            "CASE WHEN expires_at > $2 THEN 'committed' ELSE 'expired' END",
            "",
        ),
        Finish::Release => ("'released'", ""),
        Finish::Expire => ("'expired'", " AND expires_at <= $2"),
    };
    let sql = format!(
        "UPDATE reservations SET state = {set}, updated_at = $2 \
         WHERE id = $1 AND state = 'held'{due} RETURNING {RESERVATION_COLS}"
    );
    let row = c.fetch_optional(&sql, &args![id, now_ms()]).await?;
    let Some(row) = row else {
        return unchanged(c, id, how).await;
    };
    let lines = load_lines(c, id).await?;
    let r = reservation(&row, lines)?;
    let stamp = now_stamp();
    let mut changed = Vec::with_capacity(r.items.len());
    for line in &r.items {
        let p = give_back(c, line, r.state == State::Committed, &stamp).await?;
        changed.push((p.id.clone(), Some(p)));
    }
    let value = if how == Finish::Commit && r.state == State::Expired {
        Err(Error::NotHeld {
            id: id.to_owned(),
            state: State::Expired,
            action: "commit",
        })
    } else {
        Ok(Some(r.clone()))
    };
    Ok(Done {
        value,
        changed,
        outcome: Some(r.state.as_str()),
    })
}

/// The reservation was not held (or, for an expiry, not yet due): answer
/// from its current state without changing anything.
async fn unchanged<C: Tx>(c: &mut C, id: &str, how: Finish) -> Result<Done<Option<Reservation>>> {
    let Some(r) = load(c, id).await? else {
        return Ok(Done::unchanged(None));
    };
    let action = match how {
        Finish::Expire => return Ok(Done::unchanged(None)),
        Finish::Commit => "commit",
        Finish::Release => "release",
    };
    match (how, r.state) {
        // Invisible to the UPDATE, committed before the SELECT: a hold
        // that was still in flight. Its state is settled on the next try.
        (_, State::Held) => Err(Error::Contention(format!(
            "reservation {id:?} appeared mid-transaction"
        ))),
        (Finish::Commit, State::Committed)
        | (Finish::Release, State::Released | State::Expired) => Ok(Done::unchanged(Some(r))),
        (_, state) => Err(Error::NotHeld {
            id: id.to_owned(),
            state,
            action,
        }),
    }
}

/// Ends one line's hold: the units leave `held`, and when sold, the stock.
async fn give_back<C: Tx>(c: &mut C, line: &Item, sold: bool, stamp: &str) -> Result<Product> {
    let quantity = if sold { "quantity - $1" } else { "quantity" };
    let sql = format!(
        "UPDATE products SET quantity = {quantity}, held = held - $1, version = version + 1, \
         updated_at = $2 WHERE id = $3 RETURNING {COLS}"
    );
    let row = c
        .fetch_optional(&sql, &args![line.quantity, stamp, &line.product_id])
        .await?;
    match row {
        Some(row) => Ok(product(&row)?),
        // A product with held units cannot be deleted, so this is a bug.
        None => Err(Error::Database(sqlx::Error::Protocol(format!(
            "product {:?} of a held reservation is gone",
            line.product_id
        )))),
    }
}

async fn load<C: Tx>(c: &mut C, id: &str) -> Result<Option<Reservation>> {
    let sql = format!("SELECT {RESERVATION_COLS} FROM reservations WHERE id = $1");
    let Some(row) = c.fetch_optional(&sql, &args![id]).await? else {
        return Ok(None);
    };
    let lines = load_lines(c, id).await?;
    Ok(Some(reservation(&row, lines)?))
}

async fn load_lines<C: Tx>(c: &mut C, id: &str) -> Result<Vec<Item>> {
    let rows = c
        .fetch_all(
            "SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = $1 \
             ORDER BY product_id",
            &args![id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Item {
                product_id: r.get("product_id")?,
                quantity: r.get("quantity")?,
            })
        })
        .collect()
}

fn reservation(r: &Row, items: Vec<Item>) -> Result<Reservation, sqlx::Error> {
    let state: String = r.get("state")?;
    Ok(Reservation {
        id: r.get("id")?,
        state: State::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown state {state:?}").into()))?,
        items,
        expires_at: rfc3339(r.get("expires_at")?),
        created_at: rfc3339(r.get("created_at")?),
        updated_at: rfc3339(r.get("updated_at")?),
    })
}

/// Gives expired holds back every `every`, until the task is aborted.
pub fn spawn_sweeper(store: Store, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.expire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "gave expired holds back to the stock"),
                Err(e) => tracing::warn!(error = %e, "could not expire holds"),
            }
        }
    })
}
