//! Thin adapters over the engines eshop drives.

pub mod aws;
pub mod docker;
pub mod kube;
pub mod registry_auth;
pub mod ssh;
