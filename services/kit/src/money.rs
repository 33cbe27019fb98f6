//! Exact money: integer minor units plus an ISO 4217 currency; no floats.
//!
//! Rates (tax, discount) are parts per million of the amount, so "8.875 %"
//! is 88 750 ppm and every computation stays in integers. Rounding to the
//! minor unit is half-to-even ("banker's rounding"), which does not bias
//! sums of many rounded amounts upwards.

/// Active ISO 4217 currencies and their minor-unit exponents. Codes with no
/// minor unit defined (precious metals, testing codes) are not money here.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Every currency code accepted, for OpenAPI enums and error messages.
pub fn currency_codes() -> impl Iterator<Item = &'static str> {
    CURRENCIES.iter().map(|(c, _)| *c)
}

/// The minor-unit exponent of an ISO 4217 code (EUR → 2, JPY → 0, KWD → 3),
/// or `None` for anything that is not an active currency code.
pub fn exponent(code: &str) -> Option<u8> {
    CURRENCIES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| CURRENCIES[i].1)
}

/// `amount` minor units as a decimal string in the currency's own
/// precision: (123456, "EUR") → "1234.56", (500, "JPY") → "500".
pub fn format_minor(amount: i64, code: &str) -> String {
    let exp = exponent(code).unwrap_or(2) as u32;
    if exp == 0 {
        return amount.to_string();
    }
    let scale = 10i128.pow(exp);
    let a = amount as i128;
    let sign = if a < 0 { "-" } else { "" };
    let a = a.abs();
    format!(
        "{sign}{}.{:0width$}",
        a / scale,
        a % scale,
        width = exp as usize
    )
}

/// A positive amount as a person types it ("12", "12.5", "12.50" EUR;
/// "500" JPY) in minor units, exactly: no floating point, and no more
/// decimals than the currency has.
pub fn parse_major(s: &str, code: &str) -> Result<i64, String> {
    let exp = exponent(code).ok_or_else(|| format!("{code:?} is not a currency"))? as usize;
    let s = s.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (s.contains('.') && !digits(frac)) {
        return Err(format!(
            "write the amount as a number, like {}",
            format_minor(1250, code)
        ));
    }
    if frac.len() > exp {
        return Err(match exp {
            0 => format!("{code} has no decimals"),
            n => format!("{code} has {n} decimals at most"),
        });
    }
    let scale = 10i64.pow(exp as u32);
    let frac_minor = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().map_err(|e| e.to_string())? * 10i64.pow((exp - frac.len()) as u32)
    };
    whole
        .parse::<i64>()
        .ok()
        .and_then(|w| w.checked_mul(scale))
        .and_then(|w| w.checked_add(frac_minor))
        .ok_or_else(|| "that amount is too large".to_owned())
}

/// `n / d` rounded half-to-even. `d` must be positive.
pub fn div_round_half_even(n: i128, d: i128) -> i128 {
    assert!(d > 0, "divisor must be positive");
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => {
            if q % 2 == 0 {
                q
            } else {
                q + 1
            }
        }
    }
}

pub const PPM: i128 = 1_000_000;

/// `amount × rate_ppm / 10⁶`, rounded half-to-even to the minor unit.
pub fn apply_rate(amount: i64, rate_ppm: u32) -> i64 {
    div_round_half_even(amount as i128 * rate_ppm as i128, PPM) as i64
}

/// Parses a percentage with at most four decimals ("20", "8.875", "0.0001")
/// into parts per million, exactly.
pub fn parse_percent_ppm(s: &str) -> Result<u32, String> {
    let s = s.trim().trim_end_matches('%').trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("{s:?} is not a percentage like 20 or 8.875"));
    }
    if frac.len() > 4 {
        return Err(format!("{s:?} has more than 4 decimals"));
    }
    let int: u64 = int.parse().map_err(|_| format!("{s:?} is too large"))?;
    let frac_ppm: u64 = format!("{frac:0<4}").parse().unwrap_or(0);
    let ppm = int
        .checked_mul(10_000)
        .and_then(|v| v.checked_add(frac_ppm))
        .filter(|v| *v <= 100 * 10_000)
        .ok_or_else(|| format!("{s:?} is above 100 %"))?;
    Ok(ppm as u32)
}

/// Parts per million back to a short percentage string: 88750 → "8.875".
pub fn format_ppm_percent(ppm: u32) -> String {
    let int = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        int.to_string()
    } else {
        format!("{int}.{}", format!("{frac:04}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_amounts_become_exact_minor_units() {
        assert_eq!(parse_major("12", "EUR"), Ok(1200));
        assert_eq!(parse_major(" 12.5 ", "EUR"), Ok(1250));
        assert_eq!(parse_major("0.07", "EUR"), Ok(7));
        assert_eq!(parse_major("500", "JPY"), Ok(500));
        assert_eq!(parse_major("1.234", "KWD"), Ok(1234));
        for bad in [
            "",
            "12.",
            ".5",
            "-1",
            "1e3",
            "12,50",
            "1.005",
            "99999999999999999999",
        ] {
            assert!(parse_major(bad, "EUR").is_err(), "{bad}");
        }
        assert_eq!(parse_major("5.0", "JPY"), Err("JPY has no decimals".into()));
        assert!(parse_major("1", "XXX").is_err());
    }

    #[test]
    fn the_currency_table_is_sorted_so_lookup_works() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(exponent("EUR"), Some(2));
        assert_eq!(exponent("JPY"), Some(0));
        assert_eq!(exponent("KWD"), Some(3));
        assert_eq!(exponent("eur"), None);
        assert_eq!(exponent("XAU"), None);
    }

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(div_round_half_even(25, 10), 2);
        assert_eq!(div_round_half_even(35, 10), 4);
        assert_eq!(div_round_half_even(26, 10), 3);
        assert_eq!(div_round_half_even(24, 10), 2);
        assert_eq!(div_round_half_even(-25, 10), -2);
        assert_eq!(div_round_half_even(-26, 10), -3);
    }

    #[test]
    fn rates_are_exact() {
        assert_eq!(parse_percent_ppm("20"), Ok(200_000));
        assert_eq!(parse_percent_ppm("8.875"), Ok(88_750));
        assert_eq!(parse_percent_ppm("0.0001%"), Ok(1));
        assert!(parse_percent_ppm("0.00001").is_err());
        assert!(parse_percent_ppm("101").is_err());
        assert!(parse_percent_ppm("-1").is_err());
        assert!(parse_percent_ppm("1e3").is_err());
        // 1999 × 8.875 % = 177.41125 → 177
        assert_eq!(apply_rate(1999, 88_750), 177);
        // 50 × 5 % = 2.5 → 2 (even), 70 × 5 % = 3.5 → 4 (even)
        assert_eq!(apply_rate(50, 50_000), 2);
        assert_eq!(apply_rate(70, 50_000), 4);
        assert_eq!(format_ppm_percent(88_750), "8.875");
        assert_eq!(format_ppm_percent(200_000), "20");
    }

    #[test]
    fn amounts_format_in_the_currency_precision() {
        assert_eq!(format_minor(123_456, "EUR"), "1234.56");
        assert_eq!(format_minor(5, "EUR"), "0.05");
        assert_eq!(format_minor(500, "JPY"), "500");
        assert_eq!(format_minor(1_234, "KWD"), "1.234");
        assert_eq!(format_minor(-5, "USD"), "-0.05");
    }
}
