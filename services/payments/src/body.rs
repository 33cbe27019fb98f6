//! Request bodies, read field by field so every mistake names its field:
//! serde's messages for a float or a string where an integer belongs do
//! not say which field it was.

use crate::error::{Error, Result};
use kit::problem::FieldError;
use serde_json::{Map, Value};

/// The longest `reference` (an order or checkout id), in characters.
pub const REFERENCE_MAX: usize = 100;

/// A JSON object being checked; collects every field error, then
/// [`Fields::finish`] answers all of them at once.
pub struct Fields {
    map: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    /// `allowed` are the only keys the object may have.
    pub fn new(body: Value, allowed: &[&str]) -> Result<Self> {
        let Value::Object(map) = body else {
            return Err(Error::field("body", "must be a JSON object"));
        };
        let errors = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| FieldError {
                field: k.clone(),
                message: format!("unknown field; the fields are {}", allowed.join(", ")),
            })
            .collect();
        Ok(Self { map, errors })
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn required(&mut self, field: &str) -> Option<Value> {
        match self.map.remove(field) {
            None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            v => v,
        }
    }

    /// A whole number of minor units in `1..=max`.
    pub fn amount(&mut self, field: &str, max: i64) -> i64 {
        let want = format!("must be a whole number of minor units from 1 to {max}");
        match self.required(field) {
            None => 0,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(a) if (1..=max).contains(&a) => a,
                _ => {
                    self.error(field, want);
                    0
                }
            },
            Some(_) => {
                self.error(field, format!("{want} (a JSON number, not a string)"));
                0
            }
        }
    }

    /// An active ISO 4217 code, upper case.
    pub fn currency(&mut self, field: &str) -> String {
        match self.required(field) {
            None => String::new(),
            Some(Value::String(c)) if kit::money::exponent(&c).is_some() => c,
            Some(_) => {
                self.error(
                    field,
                    "must be an active ISO 4217 currency code in upper case, like EUR",
                );
                String::new()
            }
        }
    }

    /// Free text of 1..=`max` characters without control characters.
    pub fn text(&mut self, field: &str, max: usize) -> String {
        match self.required(field) {
            None => String::new(),
            Some(Value::String(s))
                if !s.is_empty()
                    && s.chars().count() <= max
                    && !s.chars().any(char::is_control) =>
            {
                s
            }
            Some(_) => {
                self.error(
                    field,
                    format!("must be text of 1 to {max} characters without control characters"),
                );
                String::new()
            }
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields::new(v, &["amount_minor", "currency", "reference"]).unwrap()
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut f = fields(json!({"amount_minor": 1.5, "currency": "eur", "extra": 1}));
        assert_eq!(f.amount("amount_minor", 10), 0);
        f.currency("currency");
        f.text("reference", REFERENCE_MAX);
        let Err(Error::Invalid(errors)) = f.finish() else {
            panic!("accepted")
        };
        let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["extra", "amount_minor", "currency", "reference"]);
    }

    #[test]
    fn amounts_are_whole_positive_and_bounded() {
        for (v, ok) in [
            (json!(1), true),
            (json!(10), true),
            (json!(0), false),
            (json!(-1), false),
            (json!(11), false),
            (json!(2.0), false),
            (json!("5"), false),
            (json!(u64::MAX), false),
        ] {
            let mut f = fields(json!({ "amount_minor": v }));
            f.amount("amount_minor", 10);
            assert_eq!(f.finish().is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn references_are_bounded_printable_text() {
        for (v, ok) in [
            (json!("order-1"), true),
            (json!("x".repeat(REFERENCE_MAX)), true),
            (json!("é".repeat(REFERENCE_MAX)), true),
            (json!("x".repeat(REFERENCE_MAX + 1)), false),
            (json!(""), false),
            (json!("a\nb"), false),
            (json!(7), false),
        ] {
            let mut f = fields(json!({ "reference": v }));
            f.text("reference", REFERENCE_MAX);
            assert_eq!(f.finish().is_ok(), ok, "{v}");
        }
    }
}
