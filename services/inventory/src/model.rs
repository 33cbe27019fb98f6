//! Products and the rules their fields obey.

use crate::error::Error;
use kit::problem::FieldError;
use serde::{Deserialize, Serialize};

pub use kit::ids::ID_MAX;
pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 2000;
/// 10¹² minor units (ten billion euros): far above any real unit price and
/// low enough that price × quantity never overflows 64-bit arithmetic.
pub const PRICE_MAX: i64 = 1_000_000_000_000;
pub const QUANTITY_MAX: i64 = 1_000_000_000;
pub const PAGE_MAX: i64 = 100;
pub const PAGE_DEFAULT: i64 = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Unit price in the currency's minor unit (cents for EUR).
    pub unit_price_minor: i64,
    pub currency: String,
    /// Units on hand, including those held.
    pub quantity: i64,
    /// Units promised to open reservations (never above `quantity`).
    pub held: i64,
    /// `quantity - held`: what a new hold can still take.
    pub available: i64,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub unit_price_minor: i64,
    pub currency: String,
    #[serde(default)]
    pub quantity: i64,
}

/// A partial update: only the fields present change. An explicit `null`
/// is refused rather than read as "absent", so a client that meant to clear
/// a field learns that it cannot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductChanges {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub unit_price_minor: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub quantity: Option<i64>,
}

pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustQuantity {
    /// Positive to receive stock, negative to take it.
    pub delta: i64,
}

/// Ids are SKUs (kit::ids: the one rule every service checks).
pub use kit::ids::{valid as valid_id, ID_RULE};

pub fn check_path_id(id: &str) -> Result<(), Error> {
    check_id("product", id)
}

/// A path id of `kind` (product, reservation): 400 unless [`valid_id`].
pub fn check_id(kind: &str, id: &str) -> Result<(), Error> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid {kind} id {:?}: use {ID_RULE}",
            truncate(id, 80)
        )))
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[derive(Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    pub(crate) fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

fn check_name(e: &mut Errors, name: &str) {
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX {
        e.add("name", format!("must be 1 to {NAME_MAX} characters"));
    } else if name.chars().any(char::is_control) {
        e.add("name", "must not contain control characters");
    } else if name.trim().is_empty() {
        e.add("name", "must not be blank");
    }
}

fn check_description(e: &mut Errors, d: &str) {
    if d.chars().count() > DESCRIPTION_MAX {
        e.add(
            "description",
            format!("must be at most {DESCRIPTION_MAX} characters"),
        );
    } else if d
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        e.add(
            "description",
            "must not contain control characters other than newline and tab",
        );
    }
}

fn check_price(e: &mut Errors, p: i64) {
    if !(0..=PRICE_MAX).contains(&p) {
        e.add(
            "unit_price_minor",
            format!("must be an integer from 0 to {PRICE_MAX} (minor units)"),
        );
    }
}

fn check_currency(e: &mut Errors, c: &str) {
    if kit::money::exponent(c).is_none() {
        e.add(
            "currency",
            "must be an active ISO 4217 code in upper case, like EUR or USD",
        );
    }
}

pub fn check_quantity(field: &str, q: i64) -> Result<(), Error> {
    if (0..=QUANTITY_MAX).contains(&q) {
        Ok(())
    } else {
        Err(Error::field(
            field,
            format!("must be an integer from 0 to {QUANTITY_MAX}"),
        ))
    }
}

impl NewProduct {
    pub fn validate(&self) -> Result<(), Error> {
        let mut e = Errors::default();
        if !valid_id(&self.id) {
            e.add("id", format!("must be {ID_RULE}"));
        }
        check_name(&mut e, &self.name);
        check_description(&mut e, &self.description);
        check_price(&mut e, self.unit_price_minor);
        check_currency(&mut e, &self.currency);
        if let Err(Error::Invalid(mut q)) = check_quantity("quantity", self.quantity) {
            e.0.append(&mut q);
        }
        e.finish()
    }
}

impl ProductChanges {
    pub fn validate(&self) -> Result<(), Error> {
        let mut e = Errors::default();
        if self.name.is_none()
            && self.description.is_none()
            && self.unit_price_minor.is_none()
            && self.currency.is_none()
            && self.quantity.is_none()
        {
            e.add("", "an update must change at least one field");
        }
        if let Some(n) = &self.name {
            check_name(&mut e, n);
        }
        if let Some(d) = &self.description {
            check_description(&mut e, d);
        }
        if let Some(p) = self.unit_price_minor {
            check_price(&mut e, p);
        }
        if let Some(c) = &self.currency {
            check_currency(&mut e, c);
        }
        if let Some(q) = self.quantity {
            if let Err(Error::Invalid(mut q)) = check_quantity("quantity", q) {
                e.0.append(&mut q);
            }
        }
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_reports_every_bad_field_at_once() {
        let p = NewProduct {
            id: "ok".into(),
            name: " ".into(),
            description: "a\u{0}b".into(),
            unit_price_minor: -1,
            currency: "EURO".into(),
            quantity: -5,
        };
        let Err(Error::Invalid(errs)) = p.validate() else {
            panic!()
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "description",
                "unit_price_minor",
                "currency",
                "quantity"
            ]
        );
    }
}
