//! Stock holds (reservations) and the rules their requests obey.
//!
//! A checkout holds stock first, charges the customer, then commits the hold
//! (the units leave the stock) or releases it (they become available again).
//! A hold nobody finishes expires after its TTL, so a crashed checkout never
//! keeps stock away from other shoppers for long.

use crate::error::Error;
use crate::model::{present, valid_id, Errors, ID_RULE, QUANTITY_MAX};
use serde::{Deserialize, Serialize};

pub const ITEMS_MAX: usize = 100;
pub const TTL_DEFAULT_SECS: i64 = 900;
pub const TTL_MAX_SECS: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The units are set aside; commit or release decides their fate.
    Held,
    /// The units were sold: they left the stock on hand.
    Committed,
    /// The client gave the units back.
    Released,
    /// Nobody finished the hold within its TTL; the units were given back.
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Committed => "committed",
            State::Released => "released",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            State::Held,
            State::Committed,
            State::Released,
            State::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub product_id: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    /// The client's own id, so a retried request finds its first attempt
    /// instead of holding twice. Absent: the service mints one.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<String>,
    pub items: Vec<Item>,
    #[serde(default, deserialize_with = "present")]
    pub ttl_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub id: String,
    pub state: State,
    /// In product id order, whatever order the request listed them in.
    pub items: Vec<Item>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A product a hold could not be granted for, and what it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub available: i64,
}

impl NewReservation {
    pub fn validate(&self) -> Result<(), Error> {
        let mut e = Errors::default();
        if let Some(id) = &self.id {
            if !valid_id(id) {
                e.add("id", format!("must be {ID_RULE}"));
            }
        }
        if self.items.is_empty() || self.items.len() > ITEMS_MAX {
            e.add("items", format!("must list 1 to {ITEMS_MAX} products"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in self.items.iter().enumerate() {
            if !valid_id(&item.product_id) {
                e.add(
                    &format!("items[{i}].product_id"),
                    format!("must be {ID_RULE}"),
                );
            } else if !seen.insert(item.product_id.as_str()) {
                e.add(
                    &format!("items[{i}].product_id"),
                    format!(
                        "{:?} is listed twice; list each product once with the total quantity",
                        item.product_id
                    ),
                );
            }
            if !(1..=QUANTITY_MAX).contains(&item.quantity) {
                e.add(
                    &format!("items[{i}].quantity"),
                    format!("must be an integer from 1 to {QUANTITY_MAX}"),
                );
            }
        }
        if let Some(ttl) = self.ttl_secs {
            if !(1..=TTL_MAX_SECS).contains(&ttl) {
                e.add(
                    "ttl_secs",
                    format!("must be an integer from 1 to {TTL_MAX_SECS} (seconds)"),
                );
            }
        }
        e.finish()
    }

    /// The items in product id order: the order rows are locked in, so two
    /// holds on the same products can never deadlock, and the order a
    /// replayed request is compared in.
    pub fn lines(&self) -> Vec<Item> {
        let mut lines = self.items.clone();
        lines.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        lines
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs.unwrap_or(TTL_DEFAULT_SECS)
    }
}

/// 128 random bits: unguessable, so only the client that made a hold (and
/// was told its id) can commit or release it.
pub fn new_id() -> String {
    format!("r-{:032x}", rand::random::<u128>())
}

/// Unix milliseconds as RFC 3339, the form every other time in the API has.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(items: &[(&str, i64)]) -> NewReservation {
        NewReservation {
            id: None,
            items: items
                .iter()
                .map(|(p, q)| Item {
                    product_id: (*p).into(),
                    quantity: *q,
                })
                .collect(),
            ttl_secs: None,
        }
    }

    fn fields(r: &NewReservation) -> Vec<String> {
        match r.validate() {
            Ok(()) => Vec::new(),
            Err(Error::Invalid(errs)) => errs.into_iter().map(|e| e.field).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_hold_request_reports_every_bad_item() {
        let mut r = req(&[("a", 1), ("../x", 1), ("a", 2), ("b", 0)]);
        r.id = Some(".bad".into());
        r.ttl_secs = Some(TTL_MAX_SECS + 1);
        assert_eq!(
            fields(&r),
            [
                "id",
                "items[1].product_id",
                "items[2].product_id",
                "items[3].quantity",
                "ttl_secs"
            ]
        );
        assert_eq!(fields(&req(&[])), ["items"]);
        let many: Vec<(String, i64)> = (0..=ITEMS_MAX).map(|i| (format!("p{i}"), 1)).collect();
        let many: Vec<(&str, i64)> = many.iter().map(|(p, q)| (p.as_str(), *q)).collect();
        assert_eq!(fields(&req(&many)), ["items"]);
        assert!(fields(&req(&many[..ITEMS_MAX])).is_empty());
    }

    #[test]
    fn lines_come_in_product_id_order_and_ids_are_valid() {
        let r = req(&[("b", 1), ("B", 2), ("a", 3)]);
        let order: Vec<_> = r.lines().into_iter().map(|l| l.product_id).collect();
        assert_eq!(order, ["B", "a", "b"]);
        let (x, y) = (new_id(), new_id());
        assert!(valid_id(&x) && x != y, "{x} {y}");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
