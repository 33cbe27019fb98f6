//! The shop's ids for products and reservations (SKUs): one rule, owned by
//! inventory and checked the same way by every service that puts an id
//! into a URL (pricing, orders, the storefront), so nothing odd ever
//! reaches another service's path.

/// At most this many bytes.
pub const ID_MAX: usize = 64;

/// What a valid id looks like, for error messages.
pub const ID_RULE: &str = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";

/// The same rule for OpenAPI documents (with `maxLength: ID_MAX`).
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// Letters, digits, `.`, `_`, `-`, starting with a letter or digit: no
/// path traversal, whitespace or anything that would need escaping in a
/// URL or a log line.
pub fn valid(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= ID_MAX
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_a_path_are_invalid() {
        let long = "x".repeat(65);
        for bad in [
            "", "-a", "../etc", ".hidden", "a/b", "a b", "é", "a\n", "a%2f", &long,
        ] {
            assert!(!valid(bad), "{bad:?}");
        }
        for good in ["SKU-1", "a", "abc.def_1-2", &"x".repeat(64)] {
            assert!(valid(good), "{good:?}");
        }
        // The message states the same bound the check applies.
        assert!(ID_RULE.starts_with(&format!("1-{ID_MAX} ")), "{ID_RULE}");
    }
}
