//! Moving money: top-ups, charges and refunds, each one transaction that
//! claims the Idempotency-Key, moves the money (one movement, two entries
//! summing to zero, the balances they change) and stores the response.
//!
//! **Who wins.** The first statement inserts the key's record. Of several
//! requests with one key, one inserts it; on PostgreSQL the others' inserts
//! wait on the unique index until that transaction ends, then find the
//! record (it committed) or insert it themselves (it rolled back); on
//! SQLite, the writer thread runs them one after the other. The losers
//! answer the winner's stored response, so N requests with one key move
//! money once and all get the same answer.
//!
//! **Never below zero.** A charge is one conditional UPDATE (`balance >=
//! amount`), a refund one conditional UPDATE of the charge's refunded
//! amount; the database's CHECKs back both.
//!
//! **No deadlocks.** Every transaction takes its locks in one order: the
//! key, the charge (refunds), the wallet, the system account.

use crate::db::{movement, wallet_account, Movement, Store, MOVEMENT_COLS};
use crate::error::{is_retryable, Error, Result};
use crate::idempotency::Stored;
use axum::http::StatusCode;
use kit::args;
use kit::db::Tx;

/// A request to move money, validated.
#[derive(Debug, Clone)]
pub enum Op {
    TopUp {
        user_id: String,
        amount: i64,
        currency: String,
    },
    Charge {
        user_id: String,
        amount: i64,
        currency: String,
        reference: String,
    },
    Refund {
        charge_id: String,
        amount: i64,
    },
}

/// The answer to a money-moving request.
#[derive(Debug)]
pub enum Answer {
    /// This request ran and its response was stored under its key.
    Fresh(Stored),
    /// An earlier request with the same key and body ran; its response.
    Replay(Stored),
}

/// Transactions run again after a serialization failure or a deadlock.
const ATTEMPTS: u32 = 3;

/// One money-moving request: who asks, under which key, with which body
/// (its fingerprint), to do what.
#[derive(Debug, Clone)]
struct Request {
    caller: String,
    key: String,
    hash: String,
    op: Op,
}

/// Runs `op` once per (caller, key) whatever the number of requests:
/// the first one's response is every later one's.
///
/// On SQLite it runs on the writer thread, which finishes it whatever
/// happens to the request. On PostgreSQL it runs in a task of its own, so
/// a client hanging up (which drops the request's future) never cancels a
/// transaction half-way: begun is finished, and the client's retry gets
/// the stored answer.
pub async fn execute(
    store: &Store,
    caller: &str,
    key: &str,
    hash: &str,
    op: &Op,
) -> Result<Answer> {
    let req = Request {
        caller: caller.to_owned(),
        key: key.to_owned(),
        hash: hash.to_owned(),
        op: op.clone(),
    };
    if let Some(writer) = store.writer() {
        return match writer
            .run(move |c| kit::db::ready(once(c, &req)), |_| {})
            .await?
        {
            Some(answer) => Ok(answer),
            // One writer: a key's record cannot vanish under it.
            None => Err(Error::Busy(sqlx::Error::RowNotFound)),
        };
    }
    let store = store.clone();
    let task = tokio::spawn(async move { attempts(&store, &req).await });
    match task.await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime is shutting down.
        Err(_) => Err(Error::Unavailable(sqlx::Error::PoolClosed)),
    }
}

/// PostgreSQL: the transaction, again after a conflict.
async fn attempts(store: &Store, req: &Request) -> Result<Answer> {
    let mut attempt = 1;
    loop {
        match once_pg(store, req).await {
            Err(Error::Busy(e)) if is_retryable(&e) && attempt < ATTEMPTS => {
                tracing::info!(error = %e, attempt, "transaction conflict; running it again");
            }
            Ok(None) if attempt < ATTEMPTS => {}
            Ok(None) => return Err(Error::Busy(sqlx::Error::RowNotFound)),
            Ok(Some(answer)) => return Ok(answer),
            Err(e) => return Err(e),
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(
            rand::random_range(5..50) * attempt as u64,
        ))
        .await;
    }
}

async fn once_pg(store: &Store, req: &Request) -> Result<Option<Answer>> {
    let mut tx = store.begin_write().await?;
    match once(&mut *tx, req).await {
        Ok(answer) => {
            tx.commit().await?;
            Ok(answer)
        }
        Err(e) => {
            // At once rather than when the pool gets round to it.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// One attempt; `None` when the key's record vanished between the
/// conflict and the read (on PostgreSQL, only if its transaction rolled
/// back in between), which is worth another attempt.
async fn once<C: Tx>(c: &mut C, req: &Request) -> Result<Option<Answer>> {
    let now = kit::db::now_rfc3339();
    let claimed = c
        .execute(
            "INSERT INTO idempotency_keys \
             (caller, idem_key, request_hash, status, content_type, body, location, created_at) \
             VALUES ($1, $2, $3, 0, '', '', NULL, $4) ON CONFLICT (caller, idem_key) DO NOTHING",
            &args![&req.caller, &req.key, &req.hash, &now],
        )
        .await?
        == 1;
    if !claimed {
        // Each statement of a READ COMMITTED transaction sees what
        // committed before it: the winner's record, if it committed.
        let row = c
            .fetch_optional(
                "SELECT request_hash, status, content_type, body, location \
                 FROM idempotency_keys WHERE caller = $1 AND idem_key = $2",
                &args![&req.caller, &req.key],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: String = row.get("request_hash")?;
        return if hash != req.hash {
            Err(Error::KeyReuse)
        } else {
            Ok(Some(Answer::Replay(Stored::from_row(&row)?)))
        };
    }
    // Outcomes about the money are decided before anything is written, so
    // storing them beside nothing else is right.
    let stored = match run(c, &req.op, &now).await {
        Ok(s) => s,
        Err(e) if e.is_outcome() => Stored::problem(&e),
        Err(e) => return Err(e),
    };
    c.execute(
        "UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5, location = $6 \
         WHERE caller = $1 AND idem_key = $2",
        &args![
            &req.caller,
            &req.key,
            i64::from(stored.status),
            &stored.content_type,
            &stored.body,
            &stored.location
        ],
    )
    .await?;
    Ok(Some(Answer::Fresh(stored)))
}

async fn run<C: Tx>(tx: &mut C, op: &Op, now: &str) -> Result<Stored> {
    match op {
        Op::TopUp {
            user_id,
            amount,
            currency,
        } => top_up(tx, user_id, *amount, currency, now).await,
        Op::Charge {
            user_id,
            amount,
            currency,
            reference,
        } => charge(tx, user_id, *amount, currency, reference, now).await,
        Op::Refund { charge_id, amount } => refund(tx, charge_id, *amount, now).await,
    }
}

fn external(currency: &str) -> String {
    format!("external:topup:{currency}")
}

fn revenue(currency: &str) -> String {
    format!("revenue:{currency}")
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

/// The wallet's balance after adding `delta`, if it holds `currency` (and,
/// for a debit, enough of it).
async fn post_wallet<C: Tx>(
    tx: &mut C,
    user_id: &str,
    currency: &str,
    delta: i64,
) -> Result<Option<i64>> {
    let row = tx
        .fetch_optional(
            "UPDATE accounts SET balance = balance + $1 \
             WHERE id = $2 AND currency = $3 AND balance + $1 >= 0 RETURNING balance",
            &args![delta, &wallet_account(user_id), currency],
        )
        .await?;
    Ok(row.map(|r| r.get("balance")).transpose()?)
}

/// System accounts may go negative (money entering is a debit there).
async fn post_system<C: Tx>(tx: &mut C, account: &str, delta: i64) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
            &args![delta, account],
        )
        .await?;
    if n != 1 {
        // Created with the first wallet of the currency; never deleted.
        tracing::error!(account, "system account missing");
        return Err(Error::Database(sqlx::Error::RowNotFound));
    }
    Ok(())
}

/// The movement and its two entries (`+amount` to `to`, `-amount` from `from`).
async fn record<C: Tx>(tx: &mut C, m: &Movement, from: &str, to: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO movements (id, kind, user_id, amount_minor, currency, reference, charge_id, \
         balance_after_minor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &args![
            &m.id,
            &m.kind,
            &m.user_id,
            m.amount_minor,
            &m.currency,
            &m.reference,
            &m.charge_id,
            m.balance_after_minor,
            &m.created_at
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO entries (movement_id, account_id, amount) VALUES ($1, $2, $3), ($1, $4, $5)",
        &args![&m.id, to, m.amount_minor, from, -m.amount_minor],
    )
    .await?;
    Ok(())
}

/// Why a wallet update matched no row: no wallet, or another currency.
async fn wallet_problem<C: Tx>(tx: &mut C, user_id: &str, currency: &str) -> Result<Error> {
    let row = tx
        .fetch_optional(
            "SELECT currency, balance FROM accounts WHERE id = $1",
            &args![&wallet_account(user_id)],
        )
        .await?;
    let Some(r) = row else {
        return Ok(Error::NotFound(format!(
            "user {user_id:?} has no wallet yet; the first top-up creates it"
        )));
    };
    let held: String = r.get("currency")?;
    if held != currency {
        return Ok(Error::CurrencyMismatch {
            wallet_currency: held,
        });
    }
    Ok(Error::InsufficientFunds {
        balance_minor: r.get("balance")?,
        currency: held,
    })
}

async fn top_up<C: Tx>(
    tx: &mut C,
    user_id: &str,
    amount: i64,
    currency: &str,
    now: &str,
) -> Result<Stored> {
    let wallet = wallet_account(user_id);
    let created = tx
        .execute(
            "INSERT INTO accounts (id, kind, user_id, currency, balance, created_at) \
             VALUES ($1, 'wallet', $2, $3, 0, $4) ON CONFLICT (id) DO NOTHING",
            &args![&wallet, user_id, currency, now],
        )
        .await?
        == 1;
    if created {
        for system in [external(currency), revenue(currency)] {
            tx.execute(
                "INSERT INTO accounts (id, kind, user_id, currency, balance, created_at) \
                 VALUES ($1, 'system', NULL, $2, 0, $3) ON CONFLICT (id) DO NOTHING",
                &args![&system, currency, now],
            )
            .await?;
        }
    }
    let Some(balance) = post_wallet(tx, user_id, currency, amount).await? else {
        return Err(wallet_problem(tx, user_id, currency).await?);
    };
    post_system(tx, &external(currency), -amount).await?;
    let m = Movement {
        id: new_id("tu"),
        kind: "top_up".into(),
        user_id: user_id.into(),
        amount_minor: amount,
        currency: currency.into(),
        reference: None,
        charge_id: None,
        refunded_minor: None,
        balance_after_minor: balance,
        created_at: now.into(),
    };
    record(tx, &m, &external(currency), &wallet).await?;
    Ok(Stored::json(StatusCode::CREATED, &m, None))
}

async fn charge<C: Tx>(
    tx: &mut C,
    user_id: &str,
    amount: i64,
    currency: &str,
    reference: &str,
    now: &str,
) -> Result<Stored> {
    let Some(balance) = post_wallet(tx, user_id, currency, -amount).await? else {
        return Err(wallet_problem(tx, user_id, currency).await?);
    };
    post_system(tx, &revenue(currency), amount).await?;
    let m = Movement {
        id: new_id("ch"),
        kind: "charge".into(),
        user_id: user_id.into(),
        amount_minor: amount,
        currency: currency.into(),
        reference: Some(reference.into()),
        charge_id: None,
        refunded_minor: Some(0),
        balance_after_minor: balance,
        created_at: now.into(),
    };
    record(tx, &m, &wallet_account(user_id), &revenue(currency)).await?;
    let location = format!("/charges/{}", m.id);
    Ok(Stored::json(StatusCode::CREATED, &m, Some(location)))
}

async fn refund<C: Tx>(tx: &mut C, charge_id: &str, amount: i64, now: &str) -> Result<Stored> {
    let sql = format!(
        "UPDATE movements SET refunded_minor = refunded_minor + $1 \
         WHERE id = $2 AND kind = 'charge' AND refunded_minor + $1 <= amount_minor \
         RETURNING {MOVEMENT_COLS}"
    );
    let row = tx.fetch_optional(&sql, &args![amount, charge_id]).await?;
    let Some(row) = row else {
        let sql =
            format!("SELECT {MOVEMENT_COLS} FROM movements WHERE id = $1 AND kind = 'charge'");
        let found = tx.fetch_optional(&sql, &args![charge_id]).await?;
        return Err(match found.as_ref().map(movement).transpose()? {
            None => Error::NotFound(format!("no charge {charge_id:?}")),
            Some(c) => Error::RefundExceedsCharge {
                refundable_minor: c.amount_minor - c.refunded_minor.unwrap_or(0),
                currency: c.currency,
            },
        });
    };
    let c = movement(&row)?;
    let Some(balance) = post_wallet(tx, &c.user_id, &c.currency, amount).await? else {
        tracing::error!(charge_id, "the wallet of a charge is gone");
        return Err(Error::Database(sqlx::Error::RowNotFound));
    };
    post_system(tx, &revenue(&c.currency), -amount).await?;
    let m = Movement {
        id: new_id("rf"),
        kind: "refund".into(),
        user_id: c.user_id.clone(),
        amount_minor: amount,
        currency: c.currency.clone(),
        reference: c.reference.clone(),
        charge_id: Some(c.id.clone()),
        refunded_minor: None,
        balance_after_minor: balance,
        created_at: now.into(),
    };
    record(tx, &m, &revenue(&c.currency), &wallet_account(&c.user_id)).await?;
    Ok(Stored::json(StatusCode::CREATED, &m, None))
}
