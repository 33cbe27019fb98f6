//! Thin adapters over the engines eshop drives.

pub mod aws;
pub mod docker;
