//! Manifests eshop applies from the network with cluster-admin (Calico,
//! metrics-server, local-path-provisioner, the Dynatrace Operator): where
//! each comes from and the sha256 it must have. The check itself is in
//! `crate::pins`.

use super::layer::Layer;
use super::ConfigError;

/// One downloaded manifest, pinned by sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// What it is, e.g. "calico" (also its file name on the node).
    pub name: &'static str,
    pub version: String,
    /// An https:// URL, or an absolute path (a mirror, a reviewed copy).
    pub source: String,
    /// The configured pin (`…_sha256`); None: the one eshop.lock records
    /// on first use.
    pub sha256: Option<String>,
    /// The key that sets `sha256`, for messages.
    pub sha256_key: String,
}

/// `source`: the `…_manifest` key (a file relative to the config's folder
/// or an https URL), else `default_url`; `sha256`: the `…_sha256` key.
pub(super) fn pinned(
    o: &super::layer::Origin,
    name: &'static str,
    version: String,
    default_url: String,
    source: Layer<'_, String>,
    sha256: Layer<'_, String>,
) -> Result<Pinned, ConfigError> {
    let source = source.or(default_url, |m| {
        if m.starts_with("https://") {
            return super::apm::check_url(m, true);
        }
        if m.contains("://") {
            return Err("a file path or an https:// URL".to_owned());
        }
        let p = o.path(m);
        if !p.is_file() {
            return Err(format!("{} is not a file", p.display()));
        }
        Ok(p.display().to_string())
    })?;
    let sha256_key = sha256.key_name().to_owned();
    let sha256 = sha256.get(|s| {
        crate::util::is_sha256_hex(s)
            .then(|| s.to_ascii_lowercase())
            .ok_or_else(|| "must be a sha256 in hex, 64 digits (what sha256sum prints)".into())
    })?;
    Ok(Pinned {
        name,
        version,
        source,
        sha256,
        sha256_key,
    })
}
