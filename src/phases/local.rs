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

/// A password eshop generated once for the local shop and keeps in
/// `.eshop/<project>-<file>` (0600; never printed, never in the state
/// file). `create` false only reads it (plan); true makes it if missing
/// and says where it is.
pub fn kept_password(
    ctx: &crate::phases::Ctx,
    phase: &str,
    file: &str,
    what: &str,
    create: bool,
) -> anyhow::Result<Option<crate::config::Secret>> {
    let cfg = &ctx.config;
    let path = cfg.state_dir.join(format!("{}-{file}", cfg.project));
    match std::fs::read_to_string(&path) {
        Ok(p) if !p.trim().is_empty() => {
            return Ok(Some(crate::config::Secret::new(p.trim().to_owned())))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
    if !create {
        return Ok(None);
    }
    std::fs::create_dir_all(&cfg.state_dir)?;
    let p = crate::util::random_password();
    crate::util::write_atomic(&path, p.as_bytes(), 0o600)?;
    ctx.ui
        .info(phase, &format!("{what} is in {}", path.display()));
    Ok(Some(crate::config::Secret::new(p)))
}

/// The local shop's administrator (`admin@<project>.test`): the users
/// service makes it an admin (ADMIN_EMAILS), eshop signs it up with a
/// password it keeps (`.eshop/<project>-admin-password`) to load the demo
/// catalogue, and a trainer logs in with it to change the catalogue.
pub fn admin_email(cfg: &Config) -> String {
    format!("admin@{}.test", cfg.project)
}
