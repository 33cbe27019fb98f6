//! Carts, orders and the rules their inputs obey.

use crate::error::{Error, Result};
use axum::http::HeaderMap;
use kit::problem::FieldError;
use serde::Serialize;
use serde_json::Value;

/// Products one cart may hold.
pub const CART_LINES_MAX: usize = 50;
/// Units of one product a cart line may hold.
pub const QUANTITY_MAX: i64 = 1000;
/// Product ids: inventory's rule (a SKU).
pub use kit::ids::{
    valid as valid_product_id, ID_MAX as PRODUCT_ID_MAX, ID_PATTERN as PRODUCT_ID_PATTERN,
    ID_RULE as PRODUCT_ID_RULE,
};
pub const KEY_HEADER: &str = "Idempotency-Key";
pub const KEY_MAX: usize = 255;
pub const PAGE_DEFAULT: i64 = 20;
pub const PAGE_MAX: i64 = 100;

/// What the customer sees of a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Still being driven: no definite outcome yet.
    Pending,
    /// The order is made: stock sold, wallet charged, cart emptied.
    Confirmed,
    /// Refused; `reason` and `message` say why. Whatever was done is
    /// undone (the hold released, the charge refunded).
    Failed,
}

/// Where the saga stands: the next thing to do. `Done` is terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Hold,
    Quote,
    Charge,
    Commit,
    /// Compensation: give the held stock back.
    Release,
    /// Compensation: give the money back (then the hold is already gone).
    Refund,
    Done,
}

macro_rules! names {
    ($ty:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

names!(State { Pending => "pending", Confirmed => "confirmed", Failed => "failed" });
names!(Step {
    Hold => "hold", Quote => "quote", Charge => "charge", Commit => "commit",
    Release => "release", Refund => "refund", Done => "done",
});

/// Why a checkout failed: a closed set, so metric labels stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    OutOfStock,
    UnknownProduct,
    MixedCurrencies,
    InsufficientFunds,
    NoWallet,
    CurrencyMismatch,
    HoldExpired,
    ServiceUnavailable,
    /// A service refused in a way the saga does not expect (a bug
    /// somewhere); logged, compensated.
    Rejected,
}

names!(Reason {
    OutOfStock => "out_of_stock",
    UnknownProduct => "unknown_product",
    MixedCurrencies => "mixed_currencies",
    InsufficientFunds => "insufficient_funds",
    NoWallet => "no_wallet",
    CurrencyMismatch => "currency_mismatch",
    HoldExpired => "hold_expired",
    ServiceUnavailable => "service_unavailable",
    Rejected => "rejected",
});

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::OutOfStock,
        Reason::UnknownProduct,
        Reason::MixedCurrencies,
        Reason::InsufficientFunds,
        Reason::NoWallet,
        Reason::CurrencyMismatch,
        Reason::HoldExpired,
        Reason::ServiceUnavailable,
        Reason::Rejected,
    ];

    /// The status a failed checkout is answered with.
    pub fn status(self) -> u16 {
        match self {
            Reason::InsufficientFunds | Reason::NoWallet => 402,
            Reason::MixedCurrencies | Reason::CurrencyMismatch => 422,
            Reason::ServiceUnavailable => 503,
            Reason::Rejected => 502,
            Reason::OutOfStock | Reason::UnknownProduct | Reason::HoldExpired => 409,
        }
    }

    /// `orders_checkouts_total{outcome}`.
    pub fn outcome(self) -> &'static str {
        match self {
            Reason::OutOfStock => "failed_out_of_stock",
            Reason::UnknownProduct => "failed_unknown_product",
            Reason::MixedCurrencies => "failed_mixed_currencies",
            Reason::InsufficientFunds => "failed_insufficient_funds",
            Reason::NoWallet => "failed_no_wallet",
            Reason::CurrencyMismatch => "failed_currency_mismatch",
            Reason::HoldExpired => "failed_hold_expired",
            Reason::ServiceUnavailable => "failed_service_unavailable",
            Reason::Rejected => "failed_rejected",
        }
    }
}

/// A cart line as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartItem {
    pub product_id: String,
    pub quantity: i64,
}

/// One line of an order: what was asked for, and once quoted, its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub product_id: String,
    pub product_name: Option<String>,
    pub quantity: i64,
    pub unit_price_minor: Option<i64>,
    /// Discount and tax included: what this line adds to the total.
    pub line_total_minor: Option<i64>,
}

/// A checkout and the order it makes, as stored (saga state included).
#[derive(Debug, Clone)]
pub struct Order {
    pub seq: i64,
    pub id: String,
    pub user_id: String,
    pub state: State,
    pub step: Step,
    pub reservation_id: String,
    pub charge_key: String,
    pub refund_key: String,
    /// A charge request may have left: from then on only payments' own
    /// answer (under the same key) says whether money moved.
    pub charge_sent: bool,
    pub charge_id: Option<String>,
    pub currency: Option<String>,
    pub subtotal_minor: Option<i64>,
    pub discount_minor: Option<i64>,
    pub tax_minor: Option<i64>,
    pub total_minor: Option<i64>,
    pub reason: Option<Reason>,
    pub message: Option<String>,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
    pub lines: Vec<Line>,
}

/// What clients see of an order: no keys, leases or saga internals.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    pub id: String,
    pub state: State,
    pub reason: Option<&'static str>,
    pub message: Option<String>,
    pub lines: Vec<Line>,
    pub currency: Option<String>,
    pub subtotal_minor: Option<i64>,
    pub discount_minor: Option<i64>,
    pub tax_minor: Option<i64>,
    pub total_minor: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl Order {
    pub fn view(&self) -> OrderView {
        OrderView {
            id: self.id.clone(),
            state: self.state,
            reason: self.reason.map(Reason::as_str),
            message: self.message.clone(),
            lines: self.lines.clone(),
            currency: self.currency.clone(),
            subtotal_minor: self.subtotal_minor,
            discount_minor: self.discount_minor,
            tax_minor: self.tax_minor,
            total_minor: self.total_minor,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }

    /// "30.00 EUR", once quoted.
    pub fn total_text(&self) -> Option<String> {
        let (total, currency) = (self.total_minor?, self.currency.as_deref()?);
        Some(format!(
            "{} {currency}",
            kit::money::format_minor(total, currency)
        ))
    }
}

/// 128 random bits: unguessable, so an order id reveals nothing.
pub fn new_order_id() -> String {
    format!("o_{:032x}", rand::random::<u128>())
}

pub fn is_order_id(id: &str) -> bool {
    id.len() == 34
        && id.starts_with("o_")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hold's id, derived from the order so every retry of the hold (a
/// timeout, a restart of orders) names the same reservation and inventory
/// answers with it instead of holding twice.
pub fn reservation_id(order_id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, order_id.as_bytes());
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("r-{hex}")
}

pub fn charge_key(order_id: &str) -> String {
    format!("order-{order_id}")
}

pub fn refund_key(order_id: &str) -> String {
    format!("refund-{order_id}")
}

/// A product id in the path: 400 naming `product_id` unless valid.
pub fn check_product_id(id: &str) -> Result<()> {
    if valid_product_id(id) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "product_id",
            format!("must be {PRODUCT_ID_RULE}"),
        ))
    }
}

/// `{"quantity": n}` with n in 1..=QUANTITY_MAX; every mistake named.
pub fn quantity_body(body: Value) -> Result<i64> {
    let Value::Object(mut map) = body else {
        return Err(Error::field("body", "must be a JSON object"));
    };
    let mut errors: Vec<FieldError> = map
        .keys()
        .filter(|k| k.as_str() != "quantity")
        .map(|k| FieldError {
            field: k.clone(),
            message: "unknown field; the only field is quantity".into(),
        })
        .collect();
    let want = format!("must be a whole number from 1 to {QUANTITY_MAX}");
    let quantity = match map.remove("quantity") {
        None | Some(Value::Null) => Err("is required".to_owned()),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|q| (1..=QUANTITY_MAX).contains(q))
            .ok_or(want),
        Some(_) => Err(format!("{want} (a JSON number, not a string)")),
    };
    match quantity {
        Ok(q) if errors.is_empty() => Ok(q),
        Ok(_) => Err(Error::Invalid(errors)),
        Err(message) => {
            errors.push(FieldError {
                field: "quantity".into(),
                message,
            });
            Err(Error::Invalid(errors))
        }
    }
}

/// The checkout's key: exactly one header of 1..=255 visible ASCII
/// characters, as payments takes them.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String> {
    let mut values = headers.get_all(KEY_HEADER).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return Err(Error::bad_request(
            KEY_HEADER,
            "exactly one Idempotency-Key header is required (a unique value per checkout, reused only to retry it)",
        ));
    };
    let b = v.as_bytes();
    if b.is_empty() || b.len() > KEY_MAX || !b.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Error::bad_request(
            KEY_HEADER,
            format!("must be 1 to {KEY_MAX} visible ASCII characters (no spaces)"),
        ));
    }
    Ok(String::from_utf8_lossy(b).into_owned())
}

/// `limit` (1..=PAGE_MAX) and `after` (a previous page's cursor).
pub fn page_params(limit: Option<&str>, after: Option<&str>) -> Result<(i64, Option<i64>)> {
    let limit = match limit {
        None => PAGE_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=PAGE_MAX).contains(l))
            .ok_or_else(|| {
                Error::bad_request(
                    "limit",
                    format!("must be a whole number from 1 to {PAGE_MAX}"),
                )
            })?,
    };
    let after = match after {
        None => None,
        Some(a) => Some(a.parse::<i64>().ok().filter(|a| *a > 0).ok_or_else(|| {
            Error::bad_request("after", "must be the next_after of a previous page")
        })?),
    };
    Ok((limit, after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn fields(r: Result<i64>) -> Vec<String> {
        match r {
            Err(Error::Invalid(e)) => e.into_iter().map(|e| e.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_quantity_body_names_every_bad_field() {
        assert_eq!(quantity_body(json!({"quantity": 3})).unwrap(), 3);
        assert_eq!(quantity_body(json!({"quantity": 1000})).unwrap(), 1000);
        for bad in [
            json!({"quantity": 0}),
            json!({"quantity": 1001}),
            json!({"quantity": 2.5}),
            json!({"quantity": "2"}),
            json!({"quantity": null}),
            json!({}),
        ] {
            assert_eq!(fields(quantity_body(bad.clone())), ["quantity"], "{bad}");
        }
        assert_eq!(
            fields(quantity_body(json!({"quantity": 1, "qty": 2}))),
            ["qty"]
        );
        assert_eq!(fields(quantity_body(json!([1]))), ["body"]);
    }

    #[test]
    fn ids_keys_and_derived_names_follow_their_rules() {
        let id = new_order_id();
        assert!(is_order_id(&id) && !is_order_id("o_XYZ"), "{id}");
        let r = reservation_id(&id);
        assert_eq!(r, reservation_id(&id), "derived, so stable");
        assert!(r.len() == 34 && valid_product_id(&r), "{r}");
        let mut h = HeaderMap::new();
        assert!(idempotency_key(&h).is_err());
        h.insert(KEY_HEADER, HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&h).unwrap(), "k-1");
        h.insert(KEY_HEADER, HeaderValue::from_static("two words"));
        assert!(idempotency_key(&h).is_err());
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert!(r.outcome().ends_with(r.as_str()));
        }
    }
}
