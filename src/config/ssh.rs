//! `[ssh]`: how eshop reaches the nodes it bootstraps (phases 5 and 9,
//! etcd snapshots), checked with the rest of the file.

use super::layer::{optional, port, within, Origin};
use super::{ConfigError, Target};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSsh {
    user: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    identity_file: Option<Spanned<String>>,
    config_file: Option<Spanned<String>>,
    trust_on_first_use: Option<bool>,
    connect_timeout_secs: Option<Spanned<i64>>,
    script_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Default)]
pub struct Ssh {
    /// None: whatever the SSH config says (or the local user).
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    /// An `ssh -F` file instead of ~/.ssh/config.
    pub config_file: Option<PathBuf>,
    /// Accept and remember a host key never seen before (ssh's
    /// accept-new). Off: unknown host keys are refused.
    pub trust_on_first_use: bool,
    pub connect_timeout: std::time::Duration,
    /// The longest one node script may run (apt, kubeadm init, joins).
    pub script_timeout: std::time::Duration,
}

pub(super) fn ssh(o: &Origin, f: &FileSsh, target: Target) -> Result<Ssh, ConfigError> {
    let user = match o.key("ssh.user", &f.user).get(optional(|u| {
        u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            .then(|| u.to_owned())
            .ok_or_else(|| "must be a user name".to_owned())
    }))? {
        Some(u) => u,
        // Ubuntu's images (phase 3's default AMI) log in as ubuntu.
        None if target == Target::Aws => Some("ubuntu".to_owned()),
        None => None,
    };
    let port = o.key("ssh.port", &f.port).get(port)?;
    let file = |p: &str| {
        let path = o.path(p);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} does not exist", path.display()))
        }
    };
    let identity_file = o
        .key("ssh.identity_file", &f.identity_file)
        .get(optional(file))?
        .flatten();
    let config_file = o
        .key("ssh.config_file", &f.config_file)
        .get(optional(file))?
        .flatten();
    let connect_timeout = std::time::Duration::from_secs(
        o.key("ssh.connect_timeout_secs", &f.connect_timeout_secs)
            .or(10, within(1..=300))?,
    );
    let script_timeout = std::time::Duration::from_secs(
        o.key("ssh.script_timeout_secs", &f.script_timeout_secs)
            .or(900, within(10..=7200))?,
    );
    Ok(Ssh {
        user,
        port,
        identity_file,
        config_file,
        trust_on_first_use: f.trust_on_first_use.unwrap_or(false),
        connect_timeout,
        script_timeout,
    })
}
