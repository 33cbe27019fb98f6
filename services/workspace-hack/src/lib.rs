//! Nothing to see: this crate only exists for its Cargo.toml (see there).
