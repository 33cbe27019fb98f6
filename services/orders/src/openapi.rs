//! The OpenAPI document (stub).
pub fn document() -> String {
    "{}".into()
}
