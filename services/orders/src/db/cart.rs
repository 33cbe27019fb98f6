//! Cart writes: set a line's quantity, remove a line.

use super::{write_op, Store};
use crate::error::{Error, Result};
use crate::model::CART_LINES_MAX;
use kit::args;
use kit::db::Tx;

struct SetItem {
    user_id: String,
    product_id: String,
    quantity: i64,
}
write_op!(SetItem => bool, |op, c| set_item(c, op));

struct RemoveItem {
    user_id: String,
    product_id: String,
}
write_op!(RemoveItem => bool, |op, c| remove_item(c, op));

impl Store {
    /// Sets the line's quantity (not adds to it); `true` when the line is
    /// new. A cart holds at most [`CART_LINES_MAX`] products.
    pub async fn set_cart_item(
        &self,
        user_id: &str,
        product_id: &str,
        quantity: i64,
    ) -> Result<bool> {
        self.write(SetItem {
            user_id: user_id.to_owned(),
            product_id: product_id.to_owned(),
            quantity,
        })
        .await
    }

    /// `true` when there was such a line.
    pub async fn remove_cart_item(&self, user_id: &str, product_id: &str) -> Result<bool> {
        self.write(RemoveItem {
            user_id: user_id.to_owned(),
            product_id: product_id.to_owned(),
        })
        .await
    }
}

/// Takes the user's cart row (created on first use): on PostgreSQL it
/// stays locked until this transaction ends, so the count below cannot
/// race another request of the same user.
async fn lock_cart<C: Tx>(c: &mut C, user_id: &str, now: &str) -> Result<()> {
    c.execute(
        "INSERT INTO carts (user_id, updated_at) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at",
        &args![user_id, now],
    )
    .await?;
    Ok(())
}

async fn set_item<C: Tx>(c: &mut C, op: &SetItem) -> Result<bool> {
    let now = kit::db::now_rfc3339();
    lock_cart(c, &op.user_id, &now).await?;
    let updated = c
        .execute(
            "UPDATE cart_items SET quantity = $3, updated_at = $4 \
             WHERE user_id = $1 AND product_id = $2",
            &args![&op.user_id, &op.product_id, op.quantity, &now],
        )
        .await?;
    if updated == 1 {
        return Ok(false);
    }
    let lines: i64 = c
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM cart_items WHERE user_id = $1",
            &args![&op.user_id],
        )
        .await?
        .map(|r| r.get("n"))
        .transpose()?
        .unwrap_or(0);
    if lines >= CART_LINES_MAX as i64 {
        return Err(Error::CartFull);
    }
    c.execute(
        "INSERT INTO cart_items (user_id, product_id, quantity, added_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4)",
        &args![&op.user_id, &op.product_id, op.quantity, &now],
    )
    .await?;
    Ok(true)
}

async fn remove_item<C: Tx>(c: &mut C, op: &RemoveItem) -> Result<bool> {
    let n = c
        .execute(
            "DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2",
            &args![&op.user_id, &op.product_id],
        )
        .await?;
    Ok(n == 1)
}
