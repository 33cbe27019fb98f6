//! Thin adapters over the engines eshop drives.

pub mod docker;
