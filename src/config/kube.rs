//! `[kubernetes]` (phases 5 and 6) and `[ssh]` (how phase 5 reaches the
//! nodes): checked with the rest of the file, so a bad node list or CIDR
//! fails before any connection.

use super::aws::Cidr;
use super::{ConfigError, EnvSource, Origin, Target};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileKube {
    mode: Option<Spanned<String>>,
    kubeconfig: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    api_server: Option<Spanned<String>>,
    control_plane_endpoint: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    package_revision: Option<Spanned<String>>,
    pod_cidr: Option<Spanned<String>>,
    service_cidr: Option<Spanned<String>>,
    calico_version: Option<Spanned<String>>,
    metrics_server_version: Option<Spanned<String>>,
    #[serde(default)]
    nodes: Vec<FileNode>,
    min_replicas: Option<Spanned<i64>>,
    max_replicas: Option<Spanned<i64>>,
    cpu_target_percent: Option<Spanned<i64>>,
    memory_target_percent: Option<Spanned<i64>>,
    entry: Option<Spanned<String>>,
    node_port: Option<Spanned<i64>>,
    ingress_host: Option<Spanned<String>>,
    ingress_class: Option<Spanned<String>>,
    postgres_image: Option<Spanned<String>>,
    database_storage_gib: Option<Spanned<i64>>,
    storage_class: Option<Spanned<String>>,
    rollout_timeout_secs: Option<Spanned<i64>>,
    #[serde(default)]
    images: std::collections::BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    name: Spanned<String>,
    address: Spanned<String>,
    role: Option<Spanned<String>>,
    private_address: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSsh {
    user: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    identity_file: Option<Spanned<String>>,
    config_file: Option<Spanned<String>>,
    trust_on_first_use: Option<bool>,
    connect_timeout_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Phases 5-6 do nothing (the local target's default).
    Off,
    /// kubeadm over SSH on the nodes (phase 3's, or `kubernetes.nodes`).
    Bootstrap,
    /// A cluster that already exists, from a kubeconfig context.
    Existing,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Bootstrap => "bootstrap",
            Mode::Existing => "existing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Worker,
}

/// A machine phase 5 bootstraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The Kubernetes node name (a DNS label).
    pub name: String,
    /// Where eshop's SSH goes: an address, a host name or an alias from
    /// the SSH config.
    pub address: String,
    /// Where the other nodes reach it (the control plane's is the
    /// cluster endpoint); defaults to `address`.
    pub private_address: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// pricing on this port of every node (what phase 3's load balancer
    /// forwards to).
    NodePort(u16),
    /// An Ingress for this host name (empty = any), with this class.
    Ingress { host: String, class: String },
}

#[derive(Debug, Clone)]
pub struct Kube {
    pub mode: Mode,
    /// Existing mode: which kubeconfig to read. Bootstrap mode: where the
    /// fetched admin kubeconfig is written (mode 0600).
    pub kubeconfig: PathBuf,
    /// Existing: the context to use (None = the file's current context).
    /// Bootstrap: the name given to the written context.
    pub context: Option<String>,
    pub namespace: String,
    /// Bootstrap: the URL eshop uses for the API (None = https://<control
    /// plane address>:6443).
    pub api_server: Option<String>,
    /// Bootstrap: host[:port] the nodes use for the API (None = the control
    /// plane's private address, port 6443).
    pub control_plane_endpoint: Option<String>,
    /// Kubernetes version, e.g. 1.34.2; kubeadm, kubelet and kubectl are
    /// pinned to `{version}-{package_revision}`.
    pub version: String,
    pub package_revision: String,
    pub pod_cidr: Cidr,
    pub service_cidr: Cidr,
    pub calico_version: String,
    pub metrics_server_version: String,
    /// Bootstrap: explicit nodes; empty on target aws = phase 3's instances.
    pub nodes: Vec<Node>,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub cpu_target_percent: u32,
    pub memory_target_percent: u32,
    pub entry: Entry,
    pub postgres_image: String,
    pub database_storage_gib: u32,
    pub storage_class: Option<String>,
    pub rollout_timeout: std::time::Duration,
    /// Service → image to deploy instead of what phase 2 pushed (images
    /// built elsewhere, e.g. by CI).
    pub images: std::collections::BTreeMap<String, String>,
}

impl Kube {
    /// `1.34.2` → `v1.34` (the package repository's path).
    pub fn minor(&self) -> String {
        let mut it = self.version.split('.');
        format!("v{}.{}", it.next().unwrap_or("1"), it.next().unwrap_or("0"))
    }
    pub fn package(&self) -> String {
        format!("{}-{}", self.version, self.package_revision)
    }
    pub fn control_plane(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role == Role::ControlPlane)
    }
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
}

pub const DEFAULT_K8S_VERSION: &str = "1.34.2";
pub const DEFAULT_PACKAGE_REVISION: &str = "1.1";
pub const DEFAULT_CALICO: &str = "v3.30.3";
pub const DEFAULT_METRICS_SERVER: &str = "v0.8.0";
pub const DEFAULT_POSTGRES_IMAGE: &str = "postgres:16.4-bookworm";

/// A DNS-1123 label: what Kubernetes accepts as a namespace or node name.
pub fn dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be 1-63 characters of a-z, 0-9 and '-' (a DNS label)"))
}

fn version(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == "1";
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be a Kubernetes version like 1.34.2"))
}

fn tag_version(s: &str) -> Result<(), String> {
    let ok = s
        .strip_prefix('v')
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be a release tag like v3.30.3"))
}

fn expand_home(p: &str, base: &Path) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => base.join(p),
    }
}

fn int(
    o: &Origin,
    key: &str,
    v: &Option<Spanned<i64>>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ConfigError> {
    match v {
        Some(n) if range.contains(n.get_ref()) => Ok(*n.get_ref()),
        Some(n) => o.err(
            n.span(),
            key,
            format!("must be between {} and {}", range.start(), range.end()),
        ),
        None => Ok(default),
    }
}

fn string(
    o: &Origin,
    key: &str,
    v: &Option<Spanned<String>>,
    default: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<String, ConfigError> {
    match v {
        Some(s) => match check(s.get_ref()) {
            Ok(()) => Ok(s.get_ref().clone()),
            Err(m) => o.err(s.span(), key, m),
        },
        None => Ok(default.to_owned()),
    }
}

/// A host name, an IP address or an SSH alias: no spaces, no shell.
fn address(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]@".contains(&b));
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} is not a host name or address"))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn kube(
    o: &Origin,
    f: &FileKube,
    env: &dyn EnvSource,
    base: &Path,
    state_dir: &Path,
    project: &str,
    target: Target,
    node_port_default: u16,
) -> Result<Kube, ConfigError> {
    let mode = match (env.var("ESHOP_KUBERNETES_MODE"), &f.mode) {
        (Some(m), _) => {
            parse_mode(&m).map_err(|e| ConfigError(format!("ESHOP_KUBERNETES_MODE: {e}")))?
        }
        (None, Some(m)) => {
            parse_mode(m.get_ref()).or_else(|e| o.err(m.span(), "kubernetes.mode", e))?
        }
        (None, None) if target == Target::Aws => Mode::Bootstrap,
        (None, None) => Mode::Off,
    };
    let context = match (env.var("ESHOP_KUBERNETES_CONTEXT"), &f.context) {
        (Some(c), _) => Some(c),
        (None, Some(c)) if c.get_ref().is_empty() => None,
        (None, Some(c)) => Some(c.get_ref().clone()),
        (None, None) if mode == Mode::Bootstrap => Some(format!("eshop-{project}")),
        (None, None) => None,
    };
    let kubeconfig = match (env.var("ESHOP_KUBERNETES_KUBECONFIG"), &f.kubeconfig) {
        (Some(k), _) => expand_home(&k, base),
        (None, Some(k)) => expand_home(k.get_ref(), base),
        (None, None) if mode == Mode::Bootstrap => {
            state_dir.join(format!("{project}-admin.kubeconfig"))
        }
        (None, None) => match env.var("KUBECONFIG") {
            // The first file of a KUBECONFIG list is where kubectl writes.
            Some(k) => PathBuf::from(k.split(':').next().unwrap_or_default()),
            None => expand_home("~/.kube/config", base),
        },
    };
    let namespace = string(o, "kubernetes.namespace", &f.namespace, project, dns_label)?;
    let api_server = match &f.api_server {
        Some(a) if a.get_ref().is_empty() => None,
        Some(a) => {
            let ok = a.get_ref().starts_with("https://") || a.get_ref().starts_with("http://");
            if !ok {
                return o.err(
                    a.span(),
                    "kubernetes.api_server",
                    "must be a URL like https://203.0.113.10:6443",
                );
            }
            Some(a.get_ref().trim_end_matches('/').to_owned())
        }
        None => None,
    };
    let control_plane_endpoint = match &f.control_plane_endpoint {
        Some(e) if e.get_ref().is_empty() => None,
        Some(e) => {
            address(e.get_ref())
                .or_else(|m| o.err(e.span(), "kubernetes.control_plane_endpoint", m))?;
            Some(e.get_ref().clone())
        }
        None => None,
    };
    let version = string(
        o,
        "kubernetes.version",
        &f.version,
        DEFAULT_K8S_VERSION,
        version,
    )?;
    let package_revision = string(
        o,
        "kubernetes.package_revision",
        &f.package_revision,
        DEFAULT_PACKAGE_REVISION,
        |s| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
                .then_some(())
                .ok_or_else(|| "must be a Debian revision like 1.1".into())
        },
    )?;
    let cidr =
        |key: &str, v: &Option<Spanned<String>>, default: &str| -> Result<Cidr, ConfigError> {
            match v {
                Some(s) => s.get_ref().parse().or_else(|m| o.err(s.span(), key, m)),
                None => Ok(default.parse().expect("valid default")),
            }
        };
    // Calico's default pool; kubeadm's default services range.
    let pod_cidr = cidr("kubernetes.pod_cidr", &f.pod_cidr, "192.168.0.0/16")?;
    let service_cidr = cidr("kubernetes.service_cidr", &f.service_cidr, "10.96.0.0/12")?;
    if pod_cidr.overlaps(service_cidr) {
        let span = f
            .service_cidr
            .as_ref()
            .or(f.pod_cidr.as_ref())
            .map_or(0..0, |s| s.span());
        return o.err(
            span,
            "kubernetes.service_cidr",
            format!("{service_cidr} overlaps kubernetes.pod_cidr {pod_cidr}"),
        );
    }
    let calico_version = string(
        o,
        "kubernetes.calico_version",
        &f.calico_version,
        DEFAULT_CALICO,
        tag_version,
    )?;
    let metrics_server_version = string(
        o,
        "kubernetes.metrics_server_version",
        &f.metrics_server_version,
        DEFAULT_METRICS_SERVER,
        tag_version,
    )?;

    let mut nodes: Vec<Node> = Vec::new();
    for n in &f.nodes {
        dns_label(n.name.get_ref())
            .or_else(|m| o.err(n.name.span(), "kubernetes.nodes.name", m))?;
        if nodes.iter().any(|x| x.name == *n.name.get_ref()) {
            return o.err(
                n.name.span(),
                "kubernetes.nodes.name",
                format!("{:?} is listed twice", n.name.get_ref()),
            );
        }
        address(n.address.get_ref())
            .or_else(|m| o.err(n.address.span(), "kubernetes.nodes.address", m))?;
        let role = match &n.role {
            None => Role::Worker,
            Some(r) => match r.get_ref().as_str() {
                "worker" => Role::Worker,
                "control-plane" => Role::ControlPlane,
                other => {
                    return o.err(
                        r.span(),
                        "kubernetes.nodes.role",
                        format!("{other:?} is not control-plane or worker"),
                    )
                }
            },
        };
        let private_address = match &n.private_address {
            Some(p) => {
                address(p.get_ref())
                    .or_else(|m| o.err(p.span(), "kubernetes.nodes.private_address", m))?;
                p.get_ref().clone()
            }
            None => n.address.get_ref().clone(),
        };
        nodes.push(Node {
            name: n.name.get_ref().clone(),
            address: n.address.get_ref().clone(),
            private_address,
            role,
        });
    }
    if mode == Mode::Existing && !nodes.is_empty() {
        let span = f.nodes.first().map_or(0..0, |n| n.name.span());
        return o.err(
            span,
            "kubernetes.nodes",
            "only used with mode = \"bootstrap\"",
        );
    }
    if !nodes.is_empty() {
        let cps = nodes
            .iter()
            .filter(|n| n.role == Role::ControlPlane)
            .count();
        if cps != 1 {
            let span = f.nodes.first().map_or(0..0, |n| n.name.span());
            return o.err(
                span,
                "kubernetes.nodes",
                format!("needs exactly one node with role = \"control-plane\", found {cps}"),
            );
        }
    }
    if mode == Mode::Bootstrap && nodes.is_empty() && target != Target::Aws {
        return Err(ConfigError(
            "kubernetes.mode = \"bootstrap\" on target local needs [[kubernetes.nodes]] (one control-plane, any workers); on target aws phase 3's instances are used".into(),
        ));
    }

    let min_replicas = int(o, "kubernetes.min_replicas", &f.min_replicas, 2, 1..=100)? as u32;
    let max_replicas = int(o, "kubernetes.max_replicas", &f.max_replicas, 6, 1..=1000)? as u32;
    if min_replicas > max_replicas {
        let span = f.min_replicas.as_ref().map_or(0..0, |v| v.span());
        return o.err(
            span,
            "kubernetes.min_replicas",
            format!("{min_replicas} is larger than kubernetes.max_replicas {max_replicas}"),
        );
    }
    let cpu_target_percent = int(
        o,
        "kubernetes.cpu_target_percent",
        &f.cpu_target_percent,
        50,
        10..=95,
    )? as u32;
    let memory_target_percent = int(
        o,
        "kubernetes.memory_target_percent",
        &f.memory_target_percent,
        50,
        10..=95,
    )? as u32;
    let entry = match f.entry.as_ref().map(|e| e.get_ref().as_str()) {
        None | Some("nodeport") => {
            let p = int(
                o,
                "kubernetes.node_port",
                &f.node_port,
                i64::from(node_port_default),
                30000..=32767,
            )?;
            Entry::NodePort(p as u16)
        }
        Some("ingress") => Entry::Ingress {
            host: match &f.ingress_host {
                Some(h) if !h.get_ref().is_empty() => {
                    address(h.get_ref())
                        .or_else(|m| o.err(h.span(), "kubernetes.ingress_host", m))?;
                    h.get_ref().clone()
                }
                _ => String::new(),
            },
            class: string(
                o,
                "kubernetes.ingress_class",
                &f.ingress_class,
                "nginx",
                dns_label,
            )?,
        },
        Some(other) => {
            let span = f.entry.as_ref().map_or(0..0, |e| e.span());
            return o.err(
                span,
                "kubernetes.entry",
                format!("{other:?} is not nodeport or ingress"),
            );
        }
    };
    let postgres_image = string(
        o,
        "kubernetes.postgres_image",
        &f.postgres_image,
        DEFAULT_POSTGRES_IMAGE,
        |s| super::check_image_ref(s).map(|_| ()),
    )?;
    let database_storage_gib = int(
        o,
        "kubernetes.database_storage_gib",
        &f.database_storage_gib,
        5,
        1..=16384,
    )? as u32;
    let storage_class = match &f.storage_class {
        Some(s) if s.get_ref().is_empty() => None,
        Some(s) => {
            dns_label(s.get_ref()).or_else(|m| o.err(s.span(), "kubernetes.storage_class", m))?;
            Some(s.get_ref().clone())
        }
        None => None,
    };
    let rollout_timeout = std::time::Duration::from_secs(int(
        o,
        "kubernetes.rollout_timeout_secs",
        &f.rollout_timeout_secs,
        300,
        5..=3600,
    )? as u64);
    let mut images = std::collections::BTreeMap::new();
    for (svc, img) in &f.images {
        if crate::shop::find(crate::shop::SHOP, svc.get_ref()).is_none() {
            return o.err(
                svc.span(),
                &format!("kubernetes.images.{}", svc.get_ref()),
                format!(
                    "unknown service; known: {}",
                    crate::shop::names(crate::shop::SHOP).join(", ")
                ),
            );
        }
        let key = format!("kubernetes.images.{}", svc.get_ref());
        super::check_image_ref(img.get_ref()).or_else(|m| o.err(img.span(), &key, m))?;
        images.insert(svc.get_ref().clone(), img.get_ref().clone());
    }
    Ok(Kube {
        mode,
        kubeconfig,
        context,
        namespace,
        api_server,
        control_plane_endpoint,
        version,
        package_revision,
        pod_cidr,
        service_cidr,
        calico_version,
        metrics_server_version,
        nodes,
        min_replicas,
        max_replicas,
        cpu_target_percent,
        memory_target_percent,
        entry,
        postgres_image,
        database_storage_gib,
        storage_class,
        rollout_timeout,
        images,
    })
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "off" => Ok(Mode::Off),
        "bootstrap" => Ok(Mode::Bootstrap),
        "existing" => Ok(Mode::Existing),
        _ => Err(format!("{s:?} is not bootstrap, existing or off")),
    }
}

pub(super) fn ssh(
    o: &Origin,
    f: &FileSsh,
    base: &Path,
    target: Target,
) -> Result<Ssh, ConfigError> {
    let user = match &f.user {
        Some(u) if u.get_ref().is_empty() => None,
        Some(u) => {
            let ok = u
                .get_ref()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return o.err(u.span(), "ssh.user", "must be a user name");
            }
            Some(u.get_ref().clone())
        }
        // Ubuntu's images (phase 3's default AMI) log in as ubuntu.
        None if target == Target::Aws => Some("ubuntu".to_owned()),
        None => None,
    };
    let port = match &f.port {
        Some(p) => Some(
            u16::try_from(*p.get_ref())
                .ok()
                .filter(|p| *p > 0)
                .map_or_else(
                    || o.err(p.span(), "ssh.port", "must be a port from 1 to 65535"),
                    Ok,
                )?,
        ),
        None => None,
    };
    let path = |key: &str, v: &Option<Spanned<String>>| -> Result<Option<PathBuf>, ConfigError> {
        match v {
            Some(p) if p.get_ref().is_empty() => Ok(None),
            Some(p) => {
                let path = expand_home(p.get_ref(), base);
                if !path.is_file() {
                    return o.err(p.span(), key, format!("{} does not exist", path.display()));
                }
                Ok(Some(path))
            }
            None => Ok(None),
        }
    };
    let identity_file = path("ssh.identity_file", &f.identity_file)?;
    let config_file = path("ssh.config_file", &f.config_file)?;
    let connect_timeout = std::time::Duration::from_secs(int(
        o,
        "ssh.connect_timeout_secs",
        &f.connect_timeout_secs,
        10,
        1..=300,
    )? as u64);
    Ok(Ssh {
        user,
        port,
        identity_file,
        config_file,
        trust_on_first_use: f.trust_on_first_use.unwrap_or(false),
        connect_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_versions_and_addresses() {
        assert!(dns_label("eshop-shop").is_ok());
        assert!(dns_label("Shop").is_err() && dns_label("-a").is_err() && dns_label("").is_err());
        assert!(
            version("1.34.2").is_ok() && version("v1.34").is_err() && version("2.0.0").is_err()
        );
        assert!(tag_version("v3.30.3").is_ok() && tag_version("3.30").is_err());
        assert!(address("10.0.0.5").is_ok() && address("cp.example.com").is_ok());
        assert!(address("a b").is_err() && address("$(reboot)").is_err());
    }
}
