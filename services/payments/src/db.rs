//! The ledger's storage over SQLite or PostgreSQL (kit::db): reads, the
//! write transaction every movement runs in, and the consistency check.

use crate::error::Result;
use crate::idempotency::Stored;
use kit::db::{Backend, DbConfig, Row, Writer};
use serde::Serialize;
use sqlx::{AnyPool, Row as _};
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub type PgTx = sqlx::Transaction<'static, sqlx::Any>;

/// The account id of a user's wallet.
pub fn wallet_account(user_id: &str) -> String {
    format!("wallet:{user_id}")
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: String,
    pub currency: String,
    pub balance_minor: i64,
    /// The balance in the currency's own precision ("12.34" EUR, "1234" JPY).
    pub balance: String,
}

/// One movement of money as its wallet's owner sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Movement {
    pub id: String,
    /// `top_up`, `charge` or `refund`.
    pub kind: String,
    pub user_id: String,
    /// Always positive; `kind` says which way it went.
    pub amount_minor: i64,
    pub currency: String,
    pub reference: Option<String>,
    /// Refunds: the charge refunded.
    pub charge_id: Option<String>,
    /// Charges: how much of it has been refunded so far.
    pub refunded_minor: Option<i64>,
    /// The wallet's balance right after this movement.
    pub balance_after_minor: i64,
    pub created_at: String,
}

pub const MOVEMENT_COLS: &str = "seq, id, kind, user_id, amount_minor, currency, reference, \
     charge_id, refunded_minor, balance_after_minor, created_at";

pub fn movement(r: &Row) -> Result<Movement, sqlx::Error> {
    let kind: String = r.get("kind")?;
    let refunded: i64 = r.get("refunded_minor")?;
    Ok(Movement {
        id: r.get("id")?,
        user_id: r.get("user_id")?,
        amount_minor: r.get("amount_minor")?,
        currency: r.get("currency")?,
        reference: r.get("reference")?,
        charge_id: r.get("charge_id")?,
        refunded_minor: (kind == "charge").then_some(refunded),
        balance_after_minor: r.get("balance_after_minor")?,
        created_at: r.get("created_at")?,
        kind,
    })
}

/// What [`Store::ledger_check`] found wrong; all zero when consistent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Movements whose entries do not sum to zero, or that have none.
    pub unbalanced_movements: i64,
    /// Accounts whose balance is not the sum of their entries.
    pub wrong_balances: i64,
    /// Wallets below zero (the CHECK forbids it).
    pub negative_wallets: i64,
    /// Entries on an account of another currency than their movement.
    pub mixed_currencies: i64,
    /// Charges whose refunded amount is not the sum of their refunds.
    pub wrong_refunded: i64,
}

impl LedgerCheck {
    pub fn is_balanced(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    begin: Arc<str>,
    /// SQLite: every movement runs on this one writer thread, in groups
    /// (kit::db::Writer). Before it, writers queued inside SQLite's busy
    /// handler, which sleeps in growing steps (charges' p99 was 492 ms at
    /// 32 connections), then behind a mutex, paying a thread hand-off per
    /// statement (p99 42 ms, 1 356 charges/s; see README).
    writer: Option<Writer>,
}

impl Store {
    pub async fn connect(c: &DbConfig, statement_timeout: Duration) -> anyhow::Result<Self> {
        let (pool, backend) = kit::db::connect(c, &SQLITE_MIGRATOR, &POSTGRES_MIGRATOR)
            .await
            .map_err(anyhow::Error::msg)?;
        let begin = match backend {
            // Unused: the writer thread begins SQLite's transactions.
            Backend::Sqlite => "BEGIN IMMEDIATE".to_owned(),
            // One round trip. lock_timeout bounds the wait behind a
            // concurrent request with the same key or on the same wallet,
            // statement_timeout every statement: a stuck database is a
            // 503, never a hung request.
            Backend::Postgres => {
                let ms = statement_timeout.as_millis();
                format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}"
                )
            }
        };
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
            begin: begin.into(),
            writer,
        })
    }

    /// SQLite's writer thread; None on PostgreSQL, where transactions run
    /// on pooled connections and wait only for the rows they share.
    pub fn writer(&self) -> Option<&Writer> {
        self.writer.as_ref()
    }

    /// The pool, for checks and tests.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A PostgreSQL transaction that will write (see `begin` in
    /// [`Store::connect`]).
    pub async fn begin_write(&self) -> Result<PgTx, sqlx::Error> {
        self.pool.begin_with(self.begin.to_string()).await
    }

    pub async fn wallet(&self, user_id: &str) -> Result<Option<Wallet>> {
        let row = sqlx::query("SELECT currency, balance FROM accounts WHERE id = $1")
            .bind(wallet_account(user_id))
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let currency: String = r.try_get("currency")?;
        let balance_minor: i64 = r.try_get("balance")?;
        Ok(Some(Wallet {
            user_id: user_id.to_owned(),
            balance: kit::money::format_minor(balance_minor, &currency),
            currency,
            balance_minor,
        }))
    }

    pub async fn movement(&self, id: &str) -> Result<Option<Movement>> {
        let sql = format!("SELECT {MOVEMENT_COLS} FROM movements WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(Row::Any);
        Ok(row.as_ref().map(movement).transpose()?)
    }

    /// A wallet's movements, newest first, strictly before the cursor
    /// `before_seq`; each with its cursor.
    pub async fn history(
        &self,
        user_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, Movement)>> {
        let sql = format!(
            "SELECT {MOVEMENT_COLS} FROM movements WHERE user_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                let r = Row::Any(r);
                Ok((r.get("seq")?, movement(&r)?))
            })
            .collect()
    }

    /// The request fingerprint and response stored under a caller's key.
    pub async fn stored(&self, caller: &str, key: &str) -> Result<Option<(String, Stored)>> {
        let row = sqlx::query(
            "SELECT request_hash, status, content_type, body, location FROM idempotency_keys \
             WHERE caller = $1 AND idem_key = $2",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let r = Row::Any(r);
                Ok(Some((r.get("request_hash")?, Stored::from_row(&r)?)))
            }
            None => Ok(None),
        }
    }

    /// Double-entry bookkeeping holds: every movement's entries sum to
    /// zero, every balance is the sum of its account's entries, and so on
    /// (see [`LedgerCheck`]). Reads everything: for tests and audits.
    pub async fn ledger_check(&self) -> Result<LedgerCheck> {
        const CHECKS: [&str; 5] = [
            "SELECT COUNT(*) FROM movements m WHERE NOT EXISTS \
             (SELECT 1 FROM entries e WHERE e.movement_id = m.id) \
             OR (SELECT SUM(e.amount) FROM entries e WHERE e.movement_id = m.id) <> 0",
            "SELECT COUNT(*) FROM accounts a WHERE a.balance <> \
             COALESCE((SELECT SUM(e.amount) FROM entries e WHERE e.account_id = a.id), 0)",
            "SELECT COUNT(*) FROM accounts WHERE kind = 'wallet' AND balance < 0",
            "SELECT COUNT(*) FROM entries e JOIN movements m ON m.id = e.movement_id \
             JOIN accounts a ON a.id = e.account_id WHERE a.currency <> m.currency",
            "SELECT COUNT(*) FROM movements c WHERE c.kind = 'charge' AND c.refunded_minor <> \
             COALESCE((SELECT SUM(r.amount_minor) FROM movements r WHERE r.charge_id = c.id), 0)",
        ];
        let mut n = [0i64; 5];
        for (i, sql) in CHECKS.iter().enumerate() {
            n[i] = sqlx::query_scalar(sql).fetch_one(&self.pool).await?;
        }
        Ok(LedgerCheck {
            unbalanced_movements: n[0],
            wrong_balances: n[1],
            negative_wallets: n[2],
            mixed_currencies: n[3],
            wrong_refunded: n[4],
        })
    }
}
