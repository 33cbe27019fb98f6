//! The local target's names and addresses: what phases 2 and 7 call the
//! Docker objects they own, and where the shop answers on this machine.

use crate::config::Config;
use crate::shop::Service;

/// `eshop-<project>-<what>`: a service's or monitoring component's container.
pub fn container_name(cfg: &Config, what: &str) -> String {
    format!("eshop-{}-{what}", cfg.project)
}

/// The network every eshop container of the project joins.
pub fn network_name(cfg: &Config) -> String {
    format!("eshop-{}", cfg.project)
}

/// The volume that keeps a database-owning service's data.
pub fn volume_name(cfg: &Config, svc: &Service) -> String {
    format!("eshop-{}-{}-data", cfg.project, svc.name)
}

/// The address to print: the bind address, or loopback when it binds all.
pub fn display_host(cfg: &Config) -> String {
    if cfg.bind.is_unspecified() {
        "127.0.0.1".into()
    } else {
        cfg.bind.to_string()
    }
}

/// Where the shop's public entry answers on this machine.
pub fn shop_url(cfg: &Config) -> String {
    let entry = crate::shop::public(cfg.shop);
    format!("http://{}:{}/", display_host(cfg), cfg.host_port(entry))
}
