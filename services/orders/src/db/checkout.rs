//! The saga's durable state: creating a checkout (once per user and key),
//! claiming it (one driver at a time), moving it a step (only by its
//! driver, only from the step it read) and letting it go.

use super::{cart_items, load_order, now_ms, write_op, Store};
use crate::error::Result;
use crate::model::{self, CartItem, Order, Reason, Step, CART_LINES_MAX};
use kit::args;
use kit::db::Tx;

/// Who drives a checkout now, until when. The owner is fresh per claim,
/// so two drivers in one process are told apart as well as two replicas.
#[derive(Debug, Clone)]
pub struct Lease {
    pub owner: String,
    pub ms: i64,
}

impl Lease {
    pub fn new(ms: i64) -> Self {
        Self {
            owner: format!("{:032x}", rand::random::<u128>()),
            ms,
        }
    }

    fn until(&self) -> i64 {
        now_ms() + self.ms
    }
}

/// What `POST /checkouts` found or made.
#[derive(Debug)]
pub enum Created {
    /// A new checkout of the cart, leased to the caller to drive.
    New(Order),
    /// The checkout this user made with this key before.
    Existing(Order),
    /// The key was used for a checkout of another cart.
    Mismatch,
    Empty,
}

/// A priced line, from the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub product_id: String,
    pub product_name: String,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// One move of the saga, written with the step it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// hold → quote
    Held,
    /// quote → charge, with the amounts the charge will take.
    Quoted {
        currency: String,
        subtotal_minor: i64,
        discount_minor: i64,
        tax_minor: i64,
        total_minor: i64,
        lines: Vec<PricedLine>,
    },
    /// Stays at charge: a charge request is about to leave.
    ChargeSent,
    /// charge → commit (no charge id: nothing to charge, a free order).
    Charged { charge_id: Option<String> },
    /// commit → done: the order is made and its lines leave the cart.
    Confirmed,
    /// → release, refund or done: the checkout failed, for good.
    Failed {
        reason: Reason,
        message: String,
        then: Step,
    },
    /// release or refund → done; `action` is what was undone, if
    /// anything (for the metrics).
    Compensated { action: Option<&'static str> },
}

struct CreateCheckout {
    user_id: String,
    key: String,
    lease: Lease,
}
write_op!(CreateCheckout => Created, |op, c| create(c, op));

struct Claim {
    id: String,
    lease: Lease,
}
write_op!(Claim => Option<Order>, |op, c| claim(c, op));

struct Advance {
    id: String,
    lease: Lease,
    from: Step,
    change: Change,
}
write_op!(Advance => Option<Order>, |op, c| advance(c, op));

struct Let {
    id: String,
    owner: String,
    next_attempt_at: Option<i64>,
}
write_op!(Let => (), |op, c| let_go(c, op));

impl Store {
    /// The user's checkout under `key`: found, or made from the cart and
    /// leased to `lease`'s owner.
    pub async fn create_checkout(
        &self,
        user_id: &str,
        key: &str,
        lease: &Lease,
    ) -> Result<Created> {
        self.write(CreateCheckout {
            user_id: user_id.to_owned(),
            key: key.to_owned(),
            lease: lease.clone(),
        })
        .await
    }

    /// The checkout, leased to `lease`'s owner; None when it is done or a
    /// live driver holds it.
    pub async fn claim(&self, id: &str, lease: &Lease) -> Result<Option<Order>> {
        self.write(Claim {
            id: id.to_owned(),
            lease: lease.clone(),
        })
        .await
    }

    /// Moves the checkout from `from` by `change` and renews the lease;
    /// None when the lease was lost (another driver took over) or the step
    /// moved on, in which case the caller stops driving.
    pub async fn advance(
        &self,
        id: &str,
        lease: &Lease,
        from: Step,
        change: Change,
    ) -> Result<Option<Order>> {
        self.write(Advance {
            id: id.to_owned(),
            lease: lease.clone(),
            from,
            change,
        })
        .await
    }

    /// Gives the lease up; a checkout not yet done is due again at
    /// `next_attempt_at` (and counts one more attempt).
    pub async fn let_go(
        &self,
        id: &str,
        lease: &Lease,
        next_attempt_at: Option<i64>,
    ) -> Result<()> {
        self.write(Let {
            id: id.to_owned(),
            owner: lease.owner.clone(),
            next_attempt_at,
        })
        .await
    }
}

async fn create<C: Tx>(c: &mut C, op: &CreateCheckout) -> Result<Created> {
    let cart = cart_items(c, &op.user_id).await?;
    if let Some(existing) = by_key(c, &op.user_id, &op.key).await? {
        return Ok(replay(existing, &cart));
    }
    if cart.is_empty() {
        return Ok(Created::Empty);
    }
    // PUT keeps carts within the limit; this guards the order's size
    // whatever wrote the cart.
    if cart.len() > CART_LINES_MAX {
        return Err(crate::error::Error::field(
            "cart",
            format!("holds more than {CART_LINES_MAX} products; remove some"),
        ));
    }
    let id = model::new_order_id();
    let (now, stamp) = (now_ms(), kit::db::now_rfc3339());
    let inserted = c
        .execute(
            "INSERT INTO orders (id, user_id, checkout_key, state, step, reservation_id, \
             charge_key, refund_key, next_attempt_at, lease_owner, lease_until, created_at, \
             updated_at) VALUES ($1, $2, $3, 'pending', 'hold', $4, $5, $6, $7, $8, $7, $9, $9) \
             ON CONFLICT (user_id, checkout_key) DO NOTHING",
            &args![
                &id,
                &op.user_id,
                &op.key,
                &model::reservation_id(&id),
                &model::charge_key(&id),
                &model::refund_key(&id),
                now + op.lease.ms,
                &op.lease.owner,
                &stamp
            ],
        )
        .await?;
    if inserted == 0 {
        // PostgreSQL: a concurrent request with the same key committed
        // first (this INSERT waited for it on the unique index).
        return match by_key(c, &op.user_id, &op.key).await? {
            Some(existing) => Ok(replay(existing, &cart)),
            None => Err(crate::error::Error::Busy(sqlx::Error::RowNotFound)),
        };
    }
    for line in &cart {
        c.execute(
            "INSERT INTO order_lines (order_id, product_id, quantity) VALUES ($1, $2, $3)",
            &args![&id, &line.product_id, line.quantity],
        )
        .await?;
    }
    let order = load_order(c, &id)
        .await?
        .ok_or(crate::error::Error::Database(sqlx::Error::RowNotFound))?;
    Ok(Created::New(order))
}

async fn by_key<C: Tx>(c: &mut C, user_id: &str, key: &str) -> Result<Option<Order>> {
    let row = c
        .fetch_optional(
            "SELECT id FROM orders WHERE user_id = $1 AND checkout_key = $2",
            &args![user_id, key],
        )
        .await?;
    match row {
        Some(r) => load_order(c, &r.get::<String>("id")?).await,
        None => Ok(None),
    }
}

/// The same key again: the same checkout, if the cart is the one it
/// snapshot (a retry) or empty (the checkout emptied it); otherwise the
/// key is being reused for another cart.
fn replay(existing: Order, cart: &[CartItem]) -> Created {
    let same = cart.len() == existing.lines.len()
        && cart
            .iter()
            .zip(&existing.lines)
            .all(|(a, b)| a.product_id == b.product_id && a.quantity == b.quantity);
    if same || cart.is_empty() {
        Created::Existing(existing)
    } else {
        Created::Mismatch
    }
}

async fn claim<C: Tx>(c: &mut C, op: &Claim) -> Result<Option<Order>> {
    let now = now_ms();
    let n = c
        .execute(
            "UPDATE orders SET lease_owner = $2, lease_until = $3 WHERE id = $1 \
             AND step <> 'done' AND (lease_until IS NULL OR lease_until <= $4)",
            &args![&op.id, &op.lease.owner, op.lease.until(), now],
        )
        .await?;
    if n == 0 {
        return Ok(None);
    }
    load_order(c, &op.id).await
}

async fn advance<C: Tx>(c: &mut C, op: &Advance) -> Result<Option<Order>> {
    let stamp = kit::db::now_rfc3339();
    // $1 id, $2 owner, $3 the step it leaves, $4 lease until, $5 now.
    let base = args![
        &op.id,
        &op.lease.owner,
        op.from.as_str(),
        op.lease.until(),
        &stamp
    ];
    let (set, extra): (String, Vec<kit::db::Arg<'_>>) = match &op.change {
        Change::Held => ("step = 'quote'".into(), vec![]),
        Change::Quoted {
            currency,
            subtotal_minor,
            discount_minor,
            tax_minor,
            total_minor,
            ..
        } => (
            "step = 'charge', currency = $6, subtotal_minor = $7, discount_minor = $8, \
             tax_minor = $9, total_minor = $10"
                .into(),
            args![
                currency.as_str(),
                *subtotal_minor,
                *discount_minor,
                *tax_minor,
                *total_minor
            ]
            .to_vec(),
        ),
        Change::ChargeSent => ("charge_sent = 1".into(), vec![]),
        Change::Charged { charge_id } => (
            "step = 'commit', charge_id = $6".into(),
            vec![kit::db::Arg::Text(charge_id.as_deref())],
        ),
        Change::Confirmed => ("step = 'done', state = 'confirmed'".into(), vec![]),
        Change::Failed {
            reason,
            message,
            then,
        } => (
            "state = 'failed', reason = $6, message = $7, step = $8".into(),
            args![reason.as_str(), message.as_str(), then.as_str()].to_vec(),
        ),
        Change::Compensated { .. } => ("step = 'done'".into(), vec![]),
    };
    let sql = format!(
        "UPDATE orders SET {set}, lease_until = $4, updated_at = $5 \
         WHERE id = $1 AND lease_owner = $2 AND step = $3"
    );
    let mut all = base.to_vec();
    all.extend(extra);
    if c.execute(&sql, &all).await? == 0 {
        return Ok(None);
    }
    match &op.change {
        Change::Quoted { lines, .. } => {
            for l in lines {
                c.execute(
                    "UPDATE order_lines SET product_name = $3, unit_price_minor = $4, \
                     line_total_minor = $5 WHERE order_id = $1 AND product_id = $2",
                    &args![
                        &op.id,
                        &l.product_id,
                        &l.product_name,
                        l.unit_price_minor,
                        l.line_total_minor
                    ],
                )
                .await?;
            }
        }
        // The order is made: what it bought leaves the cart in the same
        // transaction (lines added since stay).
        Change::Confirmed => {
            let user_id = c
                .fetch_optional("SELECT user_id FROM orders WHERE id = $1", &args![&op.id])
                .await?
                .map(|r| r.get::<String>("user_id"))
                .transpose()?
                .unwrap_or_default();
            c.execute(
                "DELETE FROM cart_items WHERE user_id = $1 AND product_id IN \
                 (SELECT product_id FROM order_lines WHERE order_id = $2)",
                &args![&user_id, &op.id],
            )
            .await?;
        }
        _ => {}
    }
    load_order(c, &op.id).await
}

async fn let_go<C: Tx>(c: &mut C, op: &Let) -> Result<()> {
    match op.next_attempt_at {
        Some(at) => {
            c.execute(
                "UPDATE orders SET lease_owner = NULL, lease_until = NULL, \
                 attempts = attempts + 1, next_attempt_at = $3 \
                 WHERE id = $1 AND lease_owner = $2",
                &args![&op.id, &op.owner, at],
            )
            .await?
        }
        None => {
            c.execute(
                "UPDATE orders SET lease_owner = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                &args![&op.id, &op.owner],
            )
            .await?
        }
    };
    Ok(())
}
