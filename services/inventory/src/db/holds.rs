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
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::time::Duration;

/// Attempts of one transaction before contention becomes a 503.
const MAX_ATTEMPTS: u64 = 4;
/// Expired holds one sweep gives back; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;

const RESERVATION_COLS: &str = "id, state, expires_at, created_at, updated_at";

/// How a held reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Sold: the units leave the stock (unless the hold is past its TTL).
    Commit,
    /// Given back by the client.
    Release,
    /// Given back by the sweeper, once past its TTL.
    Expire,
}

/// What one transaction attempt decided: its answer, the product rows it
/// changed (published to the cache after the commit) and the outcome to
/// count once it is committed.
struct Done<T> {
    value: Result<T>,
    changed: Vec<Product>,
    outcome: Option<&'static str>,
}

/// One attempt at a transaction's statements, on its connection. Boxed
/// (and given owned arguments) because an `async` closure borrowing its
/// arguments cannot yet be proven `Send` for every connection lifetime.
type Attempt<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Done<T>>> + Send + 'c>>;

impl<T> Done<T> {
    fn unchanged(value: T) -> Self {
        Self {
            value: Ok(value),
            changed: Vec::new(),
            outcome: None,
        }
    }
}

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
        let (id, lines) = (id.to_owned(), lines.to_vec());
        let store = self.clone();
        detached(async move { store.hold_detached(id, lines, ttl_secs).await }).await
    }

    async fn hold_detached(
        &self,
        id: String,
        lines: Vec<Item>,
        ttl_secs: i64,
    ) -> Result<(Reservation, bool)> {
        let r = self
            .write_tx(move |c| {
                let (id, lines) = (id.clone(), lines.clone());
                Box::pin(async move { hold_once(c, &id, &lines, ttl_secs * 1000).await })
            })
            .await;
        if let Err(Error::Insufficient(_)) = &r {
            self.outcomes.count("refused");
        }
        r
    }

    pub async fn reservation(&self, id: &str) -> Result<Option<Reservation>> {
        let mut c = self.pool.acquire().await?;
        load(&mut c, id).await
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
        let (id, store) = (id.to_owned(), self.clone());
        detached(async move {
            store
                .write_tx(move |c| {
                    let id = id.clone();
                    Box::pin(async move { finish_once(c, &id, how).await })
                })
                .await
        })
        .await
    }

    /// Runs `attempt` in a write transaction, again (a few times) when
    /// concurrent writers collided, then publishes the product rows it
    /// changed to the cache and counts its outcome.
    async fn write_tx<T>(
        &self,
        mut attempt: impl for<'c> FnMut(&'c mut AnyConnection) -> Attempt<'c, T>,
    ) -> Result<T> {
        // The cache's writer lock spans the whole transaction, as it spans
        // the single statement of every other write.
        let _w = self.writing().await;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.write_once(&mut attempt).await {
                Err(Error::Contention(e)) if tries < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, tries, "retrying a hold transaction");
                    tokio::time::sleep(Duration::from_millis(10 * tries)).await;
                }
                r => return r,
            }
        }
    }

    async fn write_once<T>(
        &self,
        attempt: &mut impl for<'c> FnMut(&'c mut AnyConnection) -> Attempt<'c, T>,
    ) -> Result<T> {
        let mut tx = match self.backend {
            super::Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            super::Backend::Postgres => self.pool.begin().await?,
        };
        let done = match attempt(&mut tx).await {
            Ok(done) => done,
            Err(e) => {
                // At once rather than when the pool gets round to it: on
                // SQLite the transaction holds the one write lock.
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        let committed = tx.commit().await;
        if let Some(cache) = &self.cache {
            for p in &done.changed {
                // After a failed COMMIT the rows' state is unknown: forget them.
                cache.publish(&p.id, committed.as_ref().ok().map(|_| p));
            }
        }
        committed?;
        if let Some(outcome) = done.outcome {
            self.outcomes.count(outcome);
        }
        done.value
    }
}

/// Runs a transaction in its own task: a client hanging up drops the
/// request's future, and a transaction dropped half-way (found in the
/// payments service: inside sqlx's `begin_with("BEGIN IMMEDIATE")`) can go
/// back to the pool still holding SQLite's write lock, so every later
/// write waits out the busy timeout. A task runs to its end.
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

async fn hold_once(
    c: &mut AnyConnection,
    id: &str,
    lines: &[Item],
    ttl_ms: i64,
) -> Result<Done<(Reservation, bool)>> {
    let now = now_ms();
    let stamp = now_stamp();
    // The reservation row first: a concurrent hold with the same id waits
    // here for this one to finish, then sees it as a replay.
    let inserted = sqlx::query(
        "INSERT INTO reservations (id, state, expires_at, created_at, updated_at) \
         VALUES ($1, 'held', $2, $3, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected();
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
                changed.push(p);
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
        sqlx::query(
            "INSERT INTO reservation_lines (reservation_id, product_id, quantity) \
             VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&line.product_id)
        .bind(line.quantity)
        .execute(&mut *c)
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
async fn take(c: &mut AnyConnection, line: &Item, stamp: &str) -> Result<Option<Product>> {
    let sql = format!(
        "UPDATE products SET held = held + $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND quantity - held >= $1 RETURNING {COLS}"
    );
    let row = sqlx::query(&sql)
        .bind(line.quantity)
        .bind(stamp)
        .bind(&line.product_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(row.as_ref().map(product).transpose()?)
}

async fn available(c: &mut AnyConnection, product_id: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT quantity - held FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_optional(&mut *c)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

async fn finish_once(
    c: &mut AnyConnection,
    id: &str,
    how: Finish,
) -> Result<Done<Option<Reservation>>> {
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
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(now_ms())
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else {
        return unchanged(c, id, how).await;
    };
    let lines = load_lines(c, id).await?;
    let r = reservation(&row, lines)?;
    let stamp = now_stamp();
    let mut changed = Vec::with_capacity(r.items.len());
    for line in &r.items {
        changed.push(give_back(c, line, r.state == State::Committed, &stamp).await?);
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
async fn unchanged(
    c: &mut AnyConnection,
    id: &str,
    how: Finish,
) -> Result<Done<Option<Reservation>>> {
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
async fn give_back(c: &mut AnyConnection, line: &Item, sold: bool, stamp: &str) -> Result<Product> {
    let quantity = if sold { "quantity - $1" } else { "quantity" };
    let sql = format!(
        "UPDATE products SET quantity = {quantity}, held = held - $1, version = version + 1, \
         updated_at = $2 WHERE id = $3 RETURNING {COLS}"
    );
    let row = sqlx::query(&sql)
        .bind(line.quantity)
        .bind(stamp)
        .bind(&line.product_id)
        .fetch_optional(&mut *c)
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

async fn load(c: &mut AnyConnection, id: &str) -> Result<Option<Reservation>> {
    let sql = format!("SELECT {RESERVATION_COLS} FROM reservations WHERE id = $1");
    let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await? else {
        return Ok(None);
    };
    let lines = load_lines(c, id).await?;
    Ok(Some(reservation(&row, lines)?))
}

async fn load_lines(c: &mut AnyConnection, id: &str) -> Result<Vec<Item>> {
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = $1 \
         ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Item {
                product_id: r.try_get("product_id")?,
                quantity: r.try_get("quantity")?,
            })
        })
        .collect()
}

fn reservation(r: &AnyRow, items: Vec<Item>) -> Result<Reservation, sqlx::Error> {
    let state: String = r.try_get("state")?;
    Ok(Reservation {
        id: r.try_get("id")?,
        state: State::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown state {state:?}").into()))?,
        items,
        expires_at: rfc3339(r.try_get("expires_at")?),
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
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
