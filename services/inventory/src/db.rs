//! Storage over SQLite (embedded default) or PostgreSQL, one set of queries.
//!
//! sqlx's `Any` driver lets both backends share every statement: `$N`
//! placeholders work on both, and the schemas differ only where they must
//! (collation), in per-backend migrations. Reads go through sqlx's pool;
//! writes are transactions written once over `kit::db::Tx` (holds.rs runs
//! them: on SQLite on one writer thread, on PostgreSQL on the pool). Every
//! write to one product is a single statement whose `WHERE` carries its
//! precondition (version, stock bounds), so concurrent writers never lose
//! an update; holds span several rows in one transaction.

mod holds;

pub use holds::spawn_sweeper;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::model::{NewProduct, Product, ProductChanges, QUANTITY_MAX};
use crate::stock_metrics::HoldOutcomes;
use holds::{write_op, Done};
use kit::args;
use kit::db::{Row, Tx, Writer};
use sqlx::{AnyPool, Row as _};
use std::sync::Arc;

const COLS: &str = "id, name, description, unit_price_minor, currency, quantity, held, version, \
                    created_at, updated_at";

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub use kit::db::Backend;

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: every write runs here (see kit::db::Writer).
    writer: Option<Writer>,
    cache: Option<Arc<Cache>>,
    outcomes: HoldOutcomes,
}

/// What a write may require of the row's current version.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    Any,
    Version(i64),
}

impl Store {
    /// Connects and migrates. Fails early with the cause when the database
    /// cannot be reached or the schema cannot be brought up to date.
    /// `cache_entries` > 0 turns on the read cache, on SQLite only (see
    /// `cache.rs` for why it is exact there and impossible elsewhere).
    pub async fn connect(c: &kit::db::DbConfig, cache_entries: usize) -> anyhow::Result<Self> {
        let (pool, backend) = kit::db::connect(c, &SQLITE_MIGRATOR, &POSTGRES_MIGRATOR)
            .await
            .map_err(anyhow::Error::msg)?;
        let cache = (backend == Backend::Sqlite && cache_entries > 0)
            .then(|| Arc::new(Cache::new(cache_entries)));
        let writer = match kit::db::sqlite_file(&c.url) {
            Some(file) if backend == Backend::Sqlite => {
                Some(Writer::open(file).map_err(anyhow::Error::msg)?)
            }
            _ if backend == Backend::Sqlite => {
                anyhow::bail!("the SQLite database must be a file (an in-memory one has no writer)")
            }
            _ => None,
        };
        Ok(Self {
            pool,
            backend,
            writer,
            cache,
            outcomes: HoldOutcomes::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Counters of hold outcomes, for the metrics registry.
    pub fn hold_outcomes(&self) -> &HoldOutcomes {
        &self.outcomes
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn get_db(&self, id: &str) -> Result<Option<Product>> {
        let sql = format!("SELECT {COLS} FROM products WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Row::Any);
        Ok(row.as_ref().map(product).transpose()?)
    }

    /// One page in id order, strictly after `after`: keyset pagination, so
    /// inserts and deletes elsewhere never shift or repeat items.
    pub async fn list(&self, after: Option<&str>, limit: i64) -> Result<Vec<Product>> {
        let rows = match after {
            Some(a) => {
                let sql = format!("SELECT {COLS} FROM products WHERE id > $1 ORDER BY id LIMIT $2");
                sqlx::query(&sql)
                    .bind(a)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {COLS} FROM products ORDER BY id LIMIT $1");
                sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?
            }
        };
        rows.into_iter()
            .map(|r| product(&Row::Any(r)).map_err(Error::from))
            .collect()
    }

    pub async fn get(&self, id: &str) -> Result<Option<Product>> {
        let Some(cache) = &self.cache else {
            return self.get_db(id).await;
        };
        match cache.get(id) {
            Ok(p) => Ok(Some(p)),
            Err(since) => {
                let p = self.get_db(id).await?;
                if let Some(p) = &p {
                    cache.fill(since, p);
                }
                Ok(p)
            }
        }
    }

    pub async fn create(&self, p: &NewProduct) -> Result<Product> {
        self.write(Create(p.clone())).await
    }

    pub async fn update(&self, id: &str, c: &ProductChanges, expect: Expect) -> Result<Product> {
        self.write(Update {
            id: id.to_owned(),
            changes: c.clone(),
            expect,
        })
        .await
    }

    pub async fn set_quantity(&self, id: &str, quantity: i64, expect: Expect) -> Result<Product> {
        self.write(SetQuantity {
            id: id.to_owned(),
            quantity,
            expect,
        })
        .await
    }

    /// Atomically adds `delta` to the stock, refusing to go below the units
    /// held (so below zero too) or above the maximum.
    pub async fn adjust_quantity(&self, id: &str, delta: i64) -> Result<Product> {
        self.write(Adjust {
            id: id.to_owned(),
            delta,
        })
        .await
    }

    /// Refuses while open holds promise units of the product (`held > 0`):
    /// their commit would sell stock that no longer exists.
    pub async fn delete(&self, id: &str, expect: Expect) -> Result<()> {
        self.write(Delete {
            id: id.to_owned(),
            expect,
        })
        .await
    }

    /// Products by stock state, total units on hand and held, for the
    /// metrics. Casts keep PostgreSQL's SUM (NUMERIC) as BIGINT for both
    /// backends.
    pub async fn stock_summary(&self, low: i64) -> Result<StockSummary> {
        let row = sqlx::query(
            "SELECT COUNT(*), \
               CAST(COALESCE(SUM(CASE WHEN quantity = 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(CASE WHEN quantity > 0 AND quantity <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
               CAST(COALESCE(SUM(quantity), 0) AS BIGINT), \
               CAST(COALESCE(SUM(held), 0) AS BIGINT) \
             FROM products",
        )
        .bind(low)
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get(0)?;
        let out: i64 = row.try_get(1)?;
        let low: i64 = row.try_get(2)?;
        Ok(StockSummary {
            in_stock: total - out - low,
            low,
            out,
            units: row.try_get(3)?,
            held: row.try_get(4)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockSummary {
    pub in_stock: i64,
    pub low: i64,
    pub out: i64,
    pub units: i64,
    pub held: i64,
}

fn product(r: &Row) -> Result<Product, sqlx::Error> {
    let quantity: i64 = r.get("quantity")?;
    let held: i64 = r.get("held")?;
    Ok(Product {
        id: r.get("id")?,
        name: r.get("name")?,
        description: r.get("description")?,
        unit_price_minor: r.get("unit_price_minor")?,
        currency: r.get("currency")?,
        quantity,
        held,
        available: quantity - held,
        version: r.get("version")?,
        created_at: r.get("created_at")?,
        updated_at: r.get("updated_at")?,
    })
}

struct Create(NewProduct);
write_op!(Create => Product, |op, c| create(c, &op.0));

struct Update {
    id: String,
    changes: ProductChanges,
    expect: Expect,
}
write_op!(Update => Product, |op, c| update(c, &op.id, &op.changes, op.expect));

struct SetQuantity {
    id: String,
    quantity: i64,
    expect: Expect,
}
write_op!(SetQuantity => Product, |op, c| set_quantity(c, &op.id, op.quantity, op.expect));

struct Adjust {
    id: String,
    delta: i64,
}
write_op!(Adjust => Product, |op, c| adjust_quantity(c, &op.id, op.delta));

struct Delete {
    id: String,
    expect: Expect,
}
write_op!(Delete => (), |op, c| delete(c, &op.id, op.expect));

async fn create<C: Tx>(c: &mut C, p: &NewProduct) -> Result<Done<Product>> {
    let sql = format!(
        "INSERT INTO products ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, 0, 1, $7, $7) \
         ON CONFLICT (id) DO NOTHING RETURNING {COLS}"
    );
    let now = now();
    let args = args![
        &p.id,
        &p.name,
        &p.description,
        p.unit_price_minor,
        &p.currency,
        p.quantity,
        &now
    ];
    match c.fetch_optional(&sql, &args).await? {
        Some(row) => Ok(Done::product(product(&row)?)),
        None => Err(Error::AlreadyExists(p.id.clone())),
    }
}

/// The product as this transaction sees it.
async fn current<C: Tx>(c: &mut C, id: &str) -> Result<Option<Product>> {
    let sql = format!("SELECT {COLS} FROM products WHERE id = $1");
    let row = c.fetch_optional(&sql, &args![id]).await?;
    Ok(row.as_ref().map(product).transpose()?)
}

/// Why a conditional write of the stock (to `quantity`, if it set one)
/// touched no row: the product is gone (404), its version moved on (412),
/// or open holds promise more units than it would have (409). Each write's
/// `WHERE` carries `held <= quantity` rather than letting the CHECK fail,
/// because on PostgreSQL a failed statement ends the transaction, and this
/// read must run in it.
async fn why_not_written<C: Tx>(
    c: &mut C,
    id: &str,
    expect: Expect,
    quantity: Option<i64>,
) -> Result<Error> {
    let Some(p) = current(c, id).await? else {
        return Ok(Error::NotFound(id.to_owned()));
    };
    Ok(match expect {
        Expect::Version(v) if v != p.version => Error::PreconditionFailed { current: p.version },
        _ if quantity.is_some_and(|q| q < p.held) => Error::BelowHeld {
            id: id.to_owned(),
            held: p.held,
        },
        // The product changed between the two statements (PostgreSQL).
        _ => Error::Contention(format!("write of {id:?} raced another")),
    })
}

async fn update<C: Tx>(
    c: &mut C,
    id: &str,
    ch: &ProductChanges,
    expect: Expect,
) -> Result<Done<Product>> {
    let (version, v) = match expect {
        Expect::Version(v) => (" AND version = $8", Some(v)),
        Expect::Any => ("", None),
    };
    let sql = format!(
        "UPDATE products SET \
           name = COALESCE($1, name), \
           description = COALESCE($2, description), \
           unit_price_minor = COALESCE($3, unit_price_minor), \
           currency = COALESCE($4, currency), \
           quantity = COALESCE($5, quantity), \
           version = version + 1, updated_at = $6 \
         WHERE id = $7 AND COALESCE($5, quantity) >= held{version} RETURNING {COLS}"
    );
    let now = now();
    let mut args = args![
        &ch.name,
        &ch.description,
        ch.unit_price_minor,
        &ch.currency,
        ch.quantity,
        &now,
        id,
        v
    ]
    .to_vec();
    if v.is_none() {
        args.pop();
    }
    match c.fetch_optional(&sql, &args).await? {
        Some(row) => Ok(Done::product(product(&row)?)),
        None => Err(why_not_written(c, id, expect, ch.quantity).await?),
    }
}

async fn set_quantity<C: Tx>(
    c: &mut C,
    id: &str,
    quantity: i64,
    expect: Expect,
) -> Result<Done<Product>> {
    let (version, v) = match expect {
        Expect::Version(v) => (" AND version = $4", Some(v)),
        Expect::Any => ("", None),
    };
    let sql = format!(
        "UPDATE products SET quantity = $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND $1 >= held{version} RETURNING {COLS}"
    );
    let now = now();
    let mut args = args![quantity, &now, id, v].to_vec();
    if v.is_none() {
        args.pop();
    }
    match c.fetch_optional(&sql, &args).await? {
        Some(row) => Ok(Done::product(product(&row)?)),
        None => Err(why_not_written(c, id, expect, Some(quantity)).await?),
    }
}

/// Many clients may call this at once: the database serialises the
/// single UPDATE, so no movement is lost.
async fn adjust_quantity<C: Tx>(c: &mut C, id: &str, delta: i64) -> Result<Done<Product>> {
    let sql = format!(
        "UPDATE products SET quantity = quantity + $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND quantity + $1 >= held AND quantity + $1 <= $4 RETURNING {COLS}"
    );
    let now = now();
    let row = c
        .fetch_optional(&sql, &args![delta, &now, id, QUANTITY_MAX])
        .await?;
    match row {
        Some(row) => Ok(Done::product(product(&row)?)),
        None => match current(c, id).await? {
            None => Err(Error::NotFound(id.to_owned())),
            Some(p) => Err(Error::Stock {
                id: id.to_owned(),
                quantity: p.quantity,
                held: p.held,
                delta,
            }),
        },
    }
}

async fn delete<C: Tx>(c: &mut C, id: &str, expect: Expect) -> Result<Done<()>> {
    let deleted = match expect {
        Expect::Any => {
            c.execute(
                "DELETE FROM products WHERE id = $1 AND held = 0",
                &args![id],
            )
            .await?
        }
        Expect::Version(v) => {
            c.execute(
                "DELETE FROM products WHERE id = $1 AND version = $2 AND held = 0",
                &args![id, v],
            )
            .await?
        }
    };
    if deleted == 1 {
        return Ok(Done {
            value: Ok(()),
            changed: vec![(id.to_owned(), None)],
            outcome: None,
        });
    }
    match current(c, id).await? {
        None => Err(Error::NotFound(id.to_owned())),
        Some(p) => match expect {
            Expect::Version(v) if v != p.version => {
                Err(Error::PreconditionFailed { current: p.version })
            }
            _ if p.held > 0 => Err(Error::HasHolds {
                id: id.to_owned(),
                held: p.held,
            }),
            // The holds ended between the DELETE and this read.
            _ => Err(Error::Contention(format!("delete of {id:?} raced a hold"))),
        },
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
