//! The price calculation, pure and exact.
//!
//! subtotal = unit price × quantity (exact, integer minor units);
//! discount = subtotal × tier rate, rounded half-to-even to the minor unit;
//! tax      = (subtotal − discount) × tax rate, rounded half-to-even;
//! total    = subtotal − discount + tax.
//! Rounding happens once per line, on the line's own amount, so the lines
//! always add up to the total exactly.

use kit::money::{apply_rate, format_ppm_percent, parse_percent_ppm};
use serde::Serialize;

/// Volume discount: from `min_quantity` units on, `rate_ppm` off the subtotal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub min_quantity: i64,
    pub rate_ppm: u32,
}

/// Parses "10:5,100:12.5" (from 10 units 5 % off, from 100 units 12.5 %).
/// Tiers must rise in both quantity and rate, so a larger order never costs
/// less than a smaller one would by accident of configuration.
pub fn parse_tiers(s: &str) -> Result<Vec<Tier>, String> {
    let mut tiers: Vec<Tier> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (q, r) = part
            .split_once(':')
            .ok_or_else(|| format!("tier {part:?} must look like MIN_QUANTITY:PERCENT"))?;
        let min_quantity: i64 =
            q.trim().parse().ok().filter(|q| *q >= 1).ok_or_else(|| {
                format!("tier {part:?}: minimum quantity must be a whole number ≥ 1")
            })?;
        let rate_ppm = parse_percent_ppm(r).map_err(|e| format!("tier {part:?}: {e}"))?;
        if let Some(prev) = tiers.last() {
            if min_quantity <= prev.min_quantity || rate_ppm < prev.rate_ppm {
                return Err(format!(
                    "tier {part:?} must have a larger quantity and no smaller rate than the one before"
                ));
            }
        }
        tiers.push(Tier {
            min_quantity,
            rate_ppm,
        });
    }
    Ok(tiers)
}

pub fn discount_rate(tiers: &[Tier], quantity: i64) -> u32 {
    tiers
        .iter()
        .rev()
        .find(|t| quantity >= t.min_quantity)
        .map_or(0, |t| t.rate_ppm)
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stock {
    InStock,
    LowStock,
    Insufficient,
    OutOfStock,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Availability {
    pub status: Stock,
    pub available: i64,
    pub message: String,
}

/// "In stock", "Only N left", or "Out of stock", as a shopper reads it.
pub fn availability(available: i64, quantity: i64, low_stock: i64) -> Availability {
    let (status, message) = if available <= 0 {
        (Stock::OutOfStock, "Out of stock".to_owned())
    } else if available < quantity {
        (
            Stock::Insufficient,
            format!("Only {available} left: not enough for {quantity}"),
        )
    } else if available <= low_stock {
        (Stock::LowStock, format!("Only {available} left"))
    } else {
        (Stock::InStock, "In stock".to_owned())
    };
    Availability {
        status,
        available: available.max(0),
        message,
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Quote {
    pub product_id: String,
    pub product_name: String,
    pub currency: String,
    /// Digits after the decimal point for this currency (EUR 2, JPY 0).
    pub minor_unit_exponent: u8,
    pub unit_price_minor: i64,
    pub quantity: i64,
    pub subtotal_minor: i64,
    pub discount_percent: String,
    pub discount_minor: i64,
    pub tax_percent: String,
    pub tax_minor: i64,
    pub total_minor: i64,
    pub availability: Availability,
}

pub struct Rules<'a> {
    pub tiers: &'a [Tier],
    pub tax_ppm: u32,
    pub low_stock: i64,
}

pub struct Item<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub unit_price_minor: i64,
    pub currency: &'a str,
    pub available: i64,
}

impl<'a> From<&'a crate::inventory::Product> for Item<'a> {
    fn from(p: &'a crate::inventory::Product) -> Self {
        Self {
            id: &p.id,
            name: &p.name,
            unit_price_minor: p.unit_price_minor,
            currency: &p.currency,
            available: p.available,
        }
    }
}

/// Callers bound `quantity` and inventory bounds prices, so every product
/// here fits in i64 with room to spare; the arithmetic is still checked so a
/// future change of limits fails loudly instead of wrapping.
pub fn quote(item: &Item<'_>, quantity: i64, rules: &Rules<'_>) -> Option<Quote> {
    let subtotal = item.unit_price_minor.checked_mul(quantity)?;
    let discount_ppm = discount_rate(rules.tiers, quantity);
    let discount = apply_rate(subtotal, discount_ppm);
    let taxable = subtotal.checked_sub(discount)?;
    let tax = apply_rate(taxable, rules.tax_ppm);
    let total = taxable.checked_add(tax)?;
    Some(Quote {
        product_id: item.id.to_owned(),
        product_name: item.name.to_owned(),
        currency: item.currency.to_owned(),
        minor_unit_exponent: kit::money::exponent(item.currency).unwrap_or(2),
        unit_price_minor: item.unit_price_minor,
        quantity,
        subtotal_minor: subtotal,
        discount_percent: format_ppm_percent(discount_ppm),
        discount_minor: discount,
        tax_percent: format_ppm_percent(rules.tax_ppm),
        tax_minor: tax,
        total_minor: total,
        availability: availability(item.available, quantity, rules.low_stock),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(price: i64, available: i64) -> Item<'static> {
        Item {
            id: "SKU-1",
            name: "Tea",
            unit_price_minor: price,
            currency: "EUR",
            available,
        }
    }

    #[test]
    fn lines_add_up_and_round_half_to_even() {
        let tiers = parse_tiers("10:5,100:10").unwrap();
        let rules = Rules {
            tiers: &tiers,
            tax_ppm: 200_000,
            low_stock: 5,
        };
        // 10 × 1.99 = 19.90; 5 % = 0.995 → 1.00 (half-even of 99.5 → 100);
        // taxable 18.90; 20 % = 3.78; total 22.68.
        let q = quote(&item(199, 100), 10, &rules).unwrap();
        assert_eq!(q.subtotal_minor, 1990);
        assert_eq!(q.discount_minor, 100);
        assert_eq!(q.tax_minor, 378);
        assert_eq!(q.total_minor, 2268);
        assert_eq!(
            q.subtotal_minor - q.discount_minor + q.tax_minor,
            q.total_minor
        );
        assert_eq!(q.discount_percent, "5");
        // 9 units: no tier.
        assert_eq!(quote(&item(199, 100), 9, &rules).unwrap().discount_minor, 0);
        // 100 units: the higher tier.
        assert_eq!(
            quote(&item(199, 1000), 100, &rules)
                .unwrap()
                .discount_percent,
            "10"
        );
    }

    #[test]
    fn tiers_must_rise() {
        assert!(parse_tiers("100:5,10:10").is_err());
        assert!(parse_tiers("10:10,100:5").is_err());
        assert!(parse_tiers("10").is_err());
        assert!(parse_tiers("0:5").is_err());
        assert_eq!(parse_tiers("").unwrap(), vec![]);
    }

    #[test]
    fn availability_reads_like_a_shop() {
        assert_eq!(availability(0, 1, 5).status, Stock::OutOfStock);
        assert_eq!(
            availability(3, 5, 5).message,
            "Only 3 left: not enough for 5"
        );
        assert_eq!(availability(4, 1, 5).message, "Only 4 left");
        assert_eq!(availability(50, 1, 5).status, Stock::InStock);
    }
}
