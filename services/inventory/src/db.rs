//! Storage over SQLite (embedded default) or PostgreSQL, one set of queries.
//!
//! sqlx's `Any` driver lets both backends share every statement: `$N`
//! placeholders work on both, and the schemas differ only where they must
//! (collation), in per-backend migrations. Every write to one product is a
//! single statement whose `WHERE` carries its precondition (version, stock
//! bounds), so concurrent writers never lose an update and never need a
//! transaction; holds, which span several rows, are transactions (holds.rs).

mod holds;

pub use holds::spawn_sweeper;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::model::{NewProduct, Product, ProductChanges, QUANTITY_MAX};
use crate::stock_metrics::HoldOutcomes;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
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
        Ok(Self {
            pool,
            backend,
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

    async fn create_db(&self, p: &NewProduct) -> Result<Product> {
        let now = now();
        let sql = format!(
            "INSERT INTO products ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, 0, 1, $7, $7) RETURNING {COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(&p.id)
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.unit_price_minor)
            .bind(&p.currency)
            .bind(p.quantity)
            .bind(&now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    Error::AlreadyExists(p.id.clone())
                }
                _ => e.into(),
            })?;
        Ok(product(&row)?)
    }

    async fn get_db(&self, id: &str) -> Result<Option<Product>> {
        let sql = format!("SELECT {COLS} FROM products WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
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
        rows.iter()
            .map(|r| product(r).map_err(Error::from))
            .collect()
    }

    async fn update_db(&self, id: &str, c: &ProductChanges, expect: Expect) -> Result<Product> {
        let mut sql = String::from(
            "UPDATE products SET \
               name = COALESCE($1, name), \
               description = COALESCE($2, description), \
               unit_price_minor = COALESCE($3, unit_price_minor), \
               currency = COALESCE($4, currency), \
               quantity = COALESCE($5, quantity), \
               version = version + 1, updated_at = $6 \
             WHERE id = $7",
        );
        if let Expect::Version(_) = expect {
            sql.push_str(" AND version = $8");
        }
        sql.push_str(&format!(" RETURNING {COLS}"));
        let mut q = sqlx::query(&sql)
            .bind(c.name.clone())
            .bind(c.description.clone())
            .bind(c.unit_price_minor)
            .bind(c.currency.clone())
            .bind(c.quantity)
            .bind(now())
            .bind(id);
        if let Expect::Version(v) = expect {
            q = q.bind(v);
        }
        match q.fetch_optional(&self.pool).await {
            Ok(Some(row)) => Ok(product(&row)?),
            Ok(None) => Err(self.why_not_written(id).await),
            Err(e) => Err(self.below_held(id, e).await),
        }
    }

    async fn set_quantity_db(&self, id: &str, quantity: i64, expect: Expect) -> Result<Product> {
        let mut sql = "UPDATE products SET quantity = $1, version = version + 1, updated_at = $2 \
                       WHERE id = $3"
            .to_owned();
        if let Expect::Version(_) = expect {
            sql.push_str(" AND version = $4");
        }
        sql.push_str(&format!(" RETURNING {COLS}"));
        let mut q = sqlx::query(&sql).bind(quantity).bind(now()).bind(id);
        if let Expect::Version(v) = expect {
            q = q.bind(v);
        }
        match q.fetch_optional(&self.pool).await {
            Ok(Some(row)) => Ok(product(&row)?),
            Ok(None) => Err(self.why_not_written(id).await),
            Err(e) => Err(self.below_held(id, e).await),
        }
    }

    /// A stock write that broke a CHECK: the only one validated input can
    /// break is `held <= quantity` (products_held_check), a stock set below
    /// what open holds promised.
    async fn below_held(&self, id: &str, e: sqlx::Error) -> Error {
        match &e {
            sqlx::Error::Database(d) if d.is_check_violation() => match self.get_db(id).await {
                Ok(Some(p)) => Error::BelowHeld {
                    id: id.to_owned(),
                    held: p.held,
                },
                Ok(None) => Error::NotFound(id.to_owned()),
                Err(e) => e,
            },
            _ => e.into(),
        }
    }

    /// Atomically adds `delta` to the stock, refusing to go below the units
    /// held (so below zero too) or above the maximum. Many clients may call
    /// this at once: the database serialises the single UPDATE, so no
    /// movement is lost.
    async fn adjust_quantity_db(&self, id: &str, delta: i64) -> Result<Product> {
        let sql = format!(
            "UPDATE products SET quantity = quantity + $1, version = version + 1, updated_at = $2 \
             WHERE id = $3 AND quantity + $1 >= held AND quantity + $1 <= $4 RETURNING {COLS}"
        );
        let row = sqlx::query(&sql)
            .bind(delta)
            .bind(now())
            .bind(id)
            .bind(QUANTITY_MAX)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(product(&row)?),
            None => match self.get_db(id).await? {
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

    /// Refuses while open holds promise units of the product (`held > 0`):
    /// their commit would sell stock that no longer exists.
    async fn delete_db(&self, id: &str, expect: Expect) -> Result<()> {
        let res = match expect {
            Expect::Any => {
                sqlx::query("DELETE FROM products WHERE id = $1 AND held = 0")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            Expect::Version(v) => {
                sqlx::query("DELETE FROM products WHERE id = $1 AND version = $2 AND held = 0")
                    .bind(id)
                    .bind(v)
                    .execute(&self.pool)
                    .await?
            }
        };
        if res.rows_affected() == 1 {
            return Ok(());
        }
        match self.get_db(id).await? {
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
        let _w = self.writing().await;
        let r = self.create_db(p).await;
        self.publish(&p.id, &r);
        r
    }

    pub async fn update(&self, id: &str, c: &ProductChanges, expect: Expect) -> Result<Product> {
        let _w = self.writing().await;
        let r = self.update_db(id, c, expect).await;
        self.publish(id, &r);
        r
    }

    pub async fn set_quantity(&self, id: &str, quantity: i64, expect: Expect) -> Result<Product> {
        let _w = self.writing().await;
        let r = self.set_quantity_db(id, quantity, expect).await;
        self.publish(id, &r);
        r
    }

    pub async fn adjust_quantity(&self, id: &str, delta: i64) -> Result<Product> {
        let _w = self.writing().await;
        let r = self.adjust_quantity_db(id, delta).await;
        self.publish(id, &r);
        r
    }

    pub async fn delete(&self, id: &str, expect: Expect) -> Result<()> {
        let _w = self.writing().await;
        let r = self.delete_db(id, expect).await;
        if let (Some(cache), Ok(())) = (&self.cache, &r) {
            cache.publish(id, None);
        }
        r
    }

    async fn writing(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.cache {
            Some(c) => Some(c.writer.lock().await),
            None => None,
        }
    }

    /// After any write attempt: a success is the new truth; a failure may
    /// mean the cached row is stale (e.g. a 412), so forget it.
    fn publish(&self, id: &str, r: &Result<Product>) {
        if let Some(cache) = &self.cache {
            cache.publish(id, r.as_ref().ok());
        }
    }

    /// A conditional write touched no row: either the product is gone (404)
    /// or its version moved on (412).
    async fn why_not_written(&self, id: &str) -> Error {
        match self.get_db(id).await {
            Ok(None) => Error::NotFound(id.to_owned()),
            Ok(Some(p)) => Error::PreconditionFailed { current: p.version },
            Err(e) => e,
        }
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

fn product(r: &AnyRow) -> Result<Product, sqlx::Error> {
    let quantity: i64 = r.try_get("quantity")?;
    let held: i64 = r.try_get("held")?;
    Ok(Product {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        unit_price_minor: r.try_get("unit_price_minor")?,
        currency: r.try_get("currency")?,
        quantity,
        held,
        available: quantity - held,
        version: r.try_get("version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
