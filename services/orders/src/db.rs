//! Storage over SQLite (embedded default) or PostgreSQL (kit::db), one set
//! of statements. Reads go through sqlx's pool; every write is one
//! transaction written once over `kit::db::Tx` (cart.rs, checkout.rs) and
//! run on SQLite's writer thread or on a pooled PostgreSQL connection.

mod cart;
mod checkout;

pub use checkout::{Change, Created, Lease, PricedLine};

use crate::error::{is_retryable, Error, Result};
use crate::model::{CartItem, Line, Order, Reason, State, Step};
use kit::args;
use kit::db::{Backend, DbConfig, LiteTx, Row, Tx, Writer};
use sqlx::{AnyConnection, AnyPool};
use std::future::Future;
use std::time::Duration;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const ORDER_COLS: &str = "seq, id, user_id, state, step, reservation_id, charge_key, refund_key, \
     charge_sent, charge_id, currency, subtotal_minor, discount_minor, tax_minor, total_minor, \
     reason, message, attempts, created_at, updated_at";

/// Attempts of one PostgreSQL transaction before a conflict is a 503.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: every write runs on this one thread (kit::db::Writer).
    writer: Option<Writer>,
}

/// A write transaction of this service, written once (an `async fn` over
/// [`Tx`]) and run by either backend, as inventory's are.
pub(crate) trait Write: Send + Sync + 'static {
    type Out: Send + 'static;
    fn lite(&self, c: &mut LiteTx<'_>) -> Result<Self::Out>;
    fn pg<'a>(
        &'a self,
        c: &'a mut AnyConnection,
    ) -> impl Future<Output = Result<Self::Out>> + Send + 'a;
}

/// `write_op!(Type => Out, |op, c| future)`: implements [`Write`] for
/// both backends with the same body.
macro_rules! write_op {
    ($ty:ty => $out:ty, |$op:ident, $c:ident| $body:expr) => {
        impl $crate::db::Write for $ty {
            type Out = $out;
            fn lite(&self, $c: &mut kit::db::LiteTx<'_>) -> $crate::error::Result<$out> {
                let $op = self;
                kit::db::ready($body)
            }
            fn pg<'a>(
                &'a self,
                $c: &'a mut sqlx::AnyConnection,
            ) -> impl std::future::Future<Output = $crate::error::Result<$out>> + Send + 'a {
                let $op = self;
                $body
            }
        }
    };
}
pub(crate) use write_op;

impl Store {
    pub async fn connect(c: &DbConfig) -> anyhow::Result<Self> {
        let (pool, backend) = kit::db::connect(c, &SQLITE_MIGRATOR, &POSTGRES_MIGRATOR)
            .await
            .map_err(anyhow::Error::msg)?;
        let writer = match (backend, kit::db::sqlite_file(&c.url)) {
            (Backend::Sqlite, Some(file)) => Some(Writer::open(file).map_err(anyhow::Error::msg)?),
            (Backend::Sqlite, None) => {
                anyhow::bail!("the SQLite database must be a file (an in-memory one has no writer)")
            }
            (Backend::Postgres, _) => None,
        };
        Ok(Self {
            pool,
            backend,
            writer,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for checks in tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Runs a write transaction: on SQLite on the writer thread (which
    /// finishes it whatever happens to the request); on PostgreSQL in a
    /// task of its own, so a client hanging up never leaves one half-way,
    /// again after a serialization failure or deadlock.
    pub(crate) async fn write<W: Write>(&self, w: W) -> Result<W::Out> {
        if let Some(writer) = &self.writer {
            return writer.run(move |c| w.lite(c), |_| {}).await;
        }
        let store = self.clone();
        let task = tokio::spawn(async move {
            let mut attempt = 1;
            loop {
                match store.write_pg_once(&w).await {
                    Err(Error::Busy(e)) if is_retryable(&e) && attempt < ATTEMPTS => {
                        tracing::info!(error = %e, attempt, "transaction conflict; running it again");
                    }
                    r => return r,
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(
                    rand::random_range(5..50) * u64::from(attempt),
                ))
                .await;
            }
        });
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only while the runtime shuts down.
            Err(_) => Err(Error::Unavailable(sqlx::Error::PoolClosed)),
        }
    }

    async fn write_pg_once<W: Write>(&self, w: &W) -> Result<W::Out> {
        let mut tx = self.pool.begin().await?;
        match w.pg(&mut tx).await {
            Ok(out) => {
                tx.commit().await?;
                Ok(out)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The user's cart, in product id order.
    pub async fn cart(&self, user_id: &str) -> Result<Vec<CartItem>> {
        let mut c = self.pool.acquire().await?;
        cart_items(&mut *c, user_id).await
    }

    /// An order with its lines.
    pub async fn order(&self, id: &str) -> Result<Option<Order>> {
        let mut c = self.pool.acquire().await?;
        load_order(&mut *c, id).await
    }

    /// A user's orders, newest first, strictly before the cursor.
    pub async fn orders(
        &self,
        user_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Order>> {
        let mut c = self.pool.acquire().await?;
        let sql = format!(
            "SELECT {ORDER_COLS} FROM orders WHERE user_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = c
            .fetch_all(&sql, &args![user_id, before_seq.unwrap_or(i64::MAX), limit])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut o = order(r)?;
            o.lines = order_lines(&mut *c, &o.id).await?;
            out.push(o);
        }
        Ok(out)
    }

    /// Checkouts the recovery loop may drive now: not done, due, and not
    /// leased by a live driver.
    pub async fn due(&self, now_ms: i64, limit: i64) -> Result<Vec<String>> {
        let ids = sqlx::query_scalar(
            "SELECT id FROM orders WHERE step <> 'done' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// Checkouts without an outcome yet (the `orders_pending` gauge).
    pub async fn pending_count(&self) -> Result<i64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

pub(crate) async fn cart_items<C: Tx>(c: &mut C, user_id: &str) -> Result<Vec<CartItem>> {
    let rows = c
        .fetch_all(
            "SELECT product_id, quantity FROM cart_items WHERE user_id = $1 ORDER BY product_id",
            &args![user_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(CartItem {
                product_id: r.get("product_id")?,
                quantity: r.get("quantity")?,
            })
        })
        .collect()
}

pub(crate) async fn load_order<C: Tx>(c: &mut C, id: &str) -> Result<Option<Order>> {
    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE id = $1");
    let Some(row) = c.fetch_optional(&sql, &args![id]).await? else {
        return Ok(None);
    };
    let mut o = order(&row)?;
    o.lines = order_lines(c, id).await?;
    Ok(Some(o))
}

async fn order_lines<C: Tx>(c: &mut C, order_id: &str) -> Result<Vec<Line>> {
    let rows = c
        .fetch_all(
            "SELECT product_id, product_name, quantity, unit_price_minor, line_total_minor \
             FROM order_lines WHERE order_id = $1 ORDER BY product_id",
            &args![order_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Line {
                product_id: r.get("product_id")?,
                product_name: r.get("product_name")?,
                quantity: r.get("quantity")?,
                unit_price_minor: r.get("unit_price_minor")?,
                line_total_minor: r.get("line_total_minor")?,
            })
        })
        .collect()
}

fn decode<T>(what: &str, v: &str, parse: fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
    parse(v).ok_or_else(|| sqlx::Error::Decode(format!("unknown {what} {v:?}").into()))
}

/// An order row without its lines.
fn order(r: &Row) -> Result<Order> {
    let state: String = r.get("state")?;
    let step: String = r.get("step")?;
    let reason: Option<String> = r.get("reason")?;
    Ok(Order {
        seq: r.get("seq")?,
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        state: decode("state", &state, State::parse)?,
        step: decode("step", &step, Step::parse)?,
        reservation_id: r.get("reservation_id")?,
        charge_key: r.get("charge_key")?,
        refund_key: r.get("refund_key")?,
        charge_sent: r.get::<i64>("charge_sent")? == 1,
        charge_id: r.get("charge_id")?,
        currency: r.get("currency")?,
        subtotal_minor: r.get("subtotal_minor")?,
        discount_minor: r.get("discount_minor")?,
        tax_minor: r.get("tax_minor")?,
        total_minor: r.get("total_minor")?,
        reason: reason
            .map(|s| decode("reason", &s, Reason::parse))
            .transpose()?,
        message: r.get("message")?,
        attempts: r.get("attempts")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
        lines: Vec::new(),
    })
}

/// Unix milliseconds: leases and retry times are compared as numbers.
pub fn now_ms() -> i64 {
    (time_now_nanos() / 1_000_000) as i64
}

fn time_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
