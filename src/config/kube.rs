//! `[kubernetes]` (phases 5, 6 and 9): checked with the rest of the file,
//! so a bad node list or CIDR fails before any connection.

use super::aws::Cidr;
use super::layer::{keep, optional, within, Origin};
use super::pinned::{pinned, Pinned};
use super::{ConfigError, Target};
use crate::shop::Service;
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
    calico_manifest: Option<Spanned<String>>,
    calico_sha256: Option<Spanned<String>>,
    metrics_server_version: Option<Spanned<String>>,
    metrics_server_manifest: Option<Spanned<String>>,
    metrics_server_sha256: Option<Spanned<String>>,
    local_path_manifest: Option<Spanned<String>>,
    local_path_sha256: Option<Spanned<String>>,
    apt_key_fingerprint: Option<Spanned<String>>,
    apt_key_url: Option<Spanned<String>>,
    provisioner: Option<Spanned<String>>,
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
    snapshot_keep: Option<Spanned<i64>>,
    etcd_backup_dir: Option<Spanned<String>>,
    etcd_backup_keep: Option<Spanned<i64>>,
    etcd_backup_schedule: Option<Spanned<String>>,
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

/// Who prepares the nodes and runs kubeadm in bootstrap mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioner {
    /// Phase 5's shell scripts over SSH (templates/kubeadm).
    Scripts,
    /// Phase 9's playbooks (templates/ansible: provision.yml, cluster.yml).
    Ansible,
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
    /// The public entry on this port of every node (what phase 3's load balancer
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
    /// The add-ons a bootstrapped cluster gets, each pinned by sha256:
    /// Calico, metrics-server, local-path-provisioner.
    pub calico: Pinned,
    pub metrics_server: Pinned,
    pub local_path: Pinned,
    /// The OpenPGP fingerprint of the pkgs.k8s.io signing key (40 hex
    /// digits, upper case): the nodes refuse any other key.
    pub apt_key_fingerprint: String,
    /// Where the Ansible provisioner downloads that key (None: pkgs.k8s.io's
    /// Release.key of the minor version); a mirror or a file:// URL.
    pub apt_key_url: Option<String>,
    /// Bootstrap: phase 5's scripts, or phase 9's playbooks.
    pub provisioner: Provisioner,
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
    /// How many etcd snapshots `eshop phase kubernetes snapshot` keeps.
    pub snapshot_keep: usize,
    /// The control plane's own scheduled snapshots (phase 9's
    /// etcd-backup.yml).
    pub etcd_backup: EtcdBackup,
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

/// Phase 9's systemd timer of `etcdctl snapshot save` on the control
/// plane: where, how many, when.
#[derive(Debug, Clone)]
pub struct EtcdBackup {
    pub dir: String,
    pub keep: u32,
    /// A systemd OnCalendar expression.
    pub schedule: String,
}

pub const DEFAULT_K8S_VERSION: &str = "1.34.2";
pub const DEFAULT_PACKAGE_REVISION: &str = "1.1";
/// The local volume provisioner a bare kubeadm cluster needs for the
/// database's claim (a CSI driver can replace it through
/// `kubernetes.storage_class`).
pub const LOCAL_PATH_VERSION: &str = "v0.0.32";

/// The key that signs pkgs.k8s.io's packages (`gpg --show-keys
/// Release.key`), the same for every minor version's repository.
pub const K8S_APT_KEY_FINGERPRINT: &str = "DE15B14486CD377B9E876E1A234654DA9A296436";

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

/// The namespaces a cluster runs itself in, and the one everything
/// unnamed lands in: eshop labels, locks down (restricted Pod Security,
/// default-deny) and on `destroy --purge-data` deletes its namespace, so
/// it must never be one of these.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

fn shop_namespace(s: &str) -> Result<(), String> {
    dns_label(s)?;
    if SYSTEM_NAMESPACES.contains(&s) {
        return Err(format!(
            "{s:?} is the cluster's own namespace: eshop would lock it down and could delete it; choose one for the shop"
        ));
    }
    Ok(())
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

/// An OpenPGP v4 fingerprint: 40 hex digits, spaces allowed (as gpg
/// prints it); kept upper case without spaces, as `gpg --with-colons`
/// writes it.
fn fingerprint(s: &str) -> Result<String, String> {
    let f: String = s.chars().filter(|c| *c != ' ').collect();
    (f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| f.to_ascii_uppercase())
        .ok_or_else(|| "must be an OpenPGP fingerprint, 40 hex digits".into())
}

fn tag_version(s: &str) -> Result<(), String> {
    let ok = s
        .strip_prefix('v')
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be a release tag like v3.30.3"))
}

/// An absolute path on a node, of plain characters (it reaches a systemd
/// unit and a script's environment).
fn node_dir(s: &str) -> Result<(), String> {
    let ok = s.starts_with('/')
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !s.split('/').any(|c| c == "..");
    ok.then_some(())
        .ok_or_else(|| format!("{s:?} must be an absolute path of letters, digits and . _ / -"))
}

/// A systemd OnCalendar expression's characters (`daily`,
/// `*-*-* 02:00:00`, `Mon..Fri 03:30`); systemd checks the rest.
fn on_calendar(s: &str) -> Result<(), String> {
    let ok = !s.trim().is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" *:/,.~-".contains(&b));
    ok.then_some(()).ok_or_else(|| {
        format!(
            "{s:?} must be a systemd OnCalendar expression like \"*-*-* 02:00:00\" or \"daily\""
        )
    })
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

pub(super) fn kube(
    o: &Origin,
    f: &FileKube,
    state_dir: &Path,
    project: &str,
    target: Target,
    shop: &[Service],
    node_port_default: u16,
) -> Result<Kube, ConfigError> {
    let mode = o
        .key("kubernetes.mode", &f.mode)
        .env("ESHOP_KUBERNETES_MODE")
        .get(parse_mode)?
        .unwrap_or(match target {
            Target::Aws => Mode::Bootstrap,
            Target::Local => Mode::Off,
        });
    // Some(None): set to "", no context.
    let context = match o
        .key("kubernetes.context", &f.context)
        .env("ESHOP_KUBERNETES_CONTEXT")
        .get(|c| {
            // kubectl allows nearly any name; eshop refuses what could
            // change the file or the terminal it is written to.
            if c.chars().any(char::is_control) || c.len() > 253 {
                return Err("a context name holds no line breaks or control characters (at most 253 characters)".into());
            }
            Ok((!c.is_empty()).then(|| c.to_owned()))
        })?
    {
        Some(c) => c,
        None if mode == Mode::Bootstrap => Some(format!("eshop-{project}")),
        None => None,
    };
    let kubeconfig = match o
        .key("kubernetes.kubeconfig", &f.kubeconfig)
        .env("ESHOP_KUBERNETES_KUBECONFIG")
        .get(|k| Ok(o.path(k)))?
    {
        Some(k) => k,
        None if mode == Mode::Bootstrap => state_dir.join(format!("{project}-admin.kubeconfig")),
        // kubectl's own variable, with kubectl's meaning (relative to the
        // working directory); the first file of a list is where kubectl
        // writes.
        None => match o.env.var("KUBECONFIG") {
            Some(k) => PathBuf::from(k.split(':').next().unwrap_or_default()),
            None => o.path("~/.kube/config"),
        },
    };
    let namespace = o
        .key("kubernetes.namespace", &f.namespace)
        .or(project.to_owned(), keep(shop_namespace))?;
    let api_server = o
        .key("kubernetes.api_server", &f.api_server)
        .get(optional(|a| {
            super::apm::check_url(a, false)
                .map_err(|e| format!("must be a URL like https://203.0.113.10:6443 ({e})"))
        }))?
        .flatten();
    let control_plane_endpoint = o
        .key(
            "kubernetes.control_plane_endpoint",
            &f.control_plane_endpoint,
        )
        .get(optional(keep(address)))?
        .flatten();
    let version = o
        .key("kubernetes.version", &f.version)
        .or(DEFAULT_K8S_VERSION.to_owned(), keep(version))?;
    let package_revision = o
        .key("kubernetes.package_revision", &f.package_revision)
        .or(
            DEFAULT_PACKAGE_REVISION.to_owned(),
            keep(|s| {
                (!s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
                    .then_some(())
                    .ok_or_else(|| "must be a Debian revision like 1.1".into())
            }),
        )?;
    let (pod_cidr, service_cidr) = cidrs(o, f)?;
    let calico_version = o
        .key("kubernetes.calico_version", &f.calico_version)
        .or(DEFAULT_CALICO.to_owned(), keep(tag_version))?;
    let calico = pinned(
        o,
        "calico",
        calico_version.clone(),
        format!("https://raw.githubusercontent.com/projectcalico/calico/{calico_version}/manifests/calico.yaml"),
        o.key("kubernetes.calico_manifest", &f.calico_manifest),
        o.key("kubernetes.calico_sha256", &f.calico_sha256),
    )?;
    let metrics_server_version = o
        .key(
            "kubernetes.metrics_server_version",
            &f.metrics_server_version,
        )
        .or(DEFAULT_METRICS_SERVER.to_owned(), keep(tag_version))?;
    let metrics_server = pinned(
        o,
        "metrics-server",
        metrics_server_version.clone(),
        format!("https://github.com/kubernetes-sigs/metrics-server/releases/download/{metrics_server_version}/components.yaml"),
        o.key("kubernetes.metrics_server_manifest", &f.metrics_server_manifest),
        o.key("kubernetes.metrics_server_sha256", &f.metrics_server_sha256),
    )?;
    let local_path = pinned(
        o,
        "local-path",
        LOCAL_PATH_VERSION.to_owned(),
        format!("https://raw.githubusercontent.com/rancher/local-path-provisioner/{LOCAL_PATH_VERSION}/deploy/local-path-storage.yaml"),
        o.key("kubernetes.local_path_manifest", &f.local_path_manifest),
        o.key("kubernetes.local_path_sha256", &f.local_path_sha256),
    )?;
    let apt_key_fingerprint = o
        .key("kubernetes.apt_key_fingerprint", &f.apt_key_fingerprint)
        .or(K8S_APT_KEY_FINGERPRINT.to_owned(), fingerprint)?;
    let apt_key_url = o
        .key("kubernetes.apt_key_url", &f.apt_key_url)
        .get(optional(keep(|u: &str| {
            let ok = (u.starts_with("https://") || u.starts_with("file:///"))
                && u.len() <= 2048
                && !u.chars().any(|c| c.is_whitespace() || c.is_control());
            ok.then_some(())
                .ok_or_else(|| "must be an https:// or file:/// URL".to_owned())
        })))?
        .flatten();
    let provisioner = o
        .key("kubernetes.provisioner", &f.provisioner)
        .env("ESHOP_KUBERNETES_PROVISIONER")
        .or(Provisioner::Scripts, |s: &str| match s {
            "scripts" => Ok(Provisioner::Scripts),
            "ansible" => Ok(Provisioner::Ansible),
            _ => Err(format!("{s:?} is not scripts or ansible")),
        })?;
    let nodes = nodes(o, f, mode, target)?;

    let min = o.key("kubernetes.min_replicas", &f.min_replicas);
    let min_replicas: u32 = min.or(2, within(1..=100))?;
    let max_replicas: u32 = o
        .key("kubernetes.max_replicas", &f.max_replicas)
        .or(6, within(1..=1000))?;
    if min_replicas > max_replicas {
        return Err(min.blame(format!(
            "{min_replicas} is larger than kubernetes.max_replicas {max_replicas}"
        )));
    }
    let cpu_target_percent = o
        .key("kubernetes.cpu_target_percent", &f.cpu_target_percent)
        .or(50, within(10..=95))?;
    let memory_target_percent = o
        .key("kubernetes.memory_target_percent", &f.memory_target_percent)
        .or(50, within(10..=95))?;
    let entry = entry(o, f, node_port_default)?;
    let postgres_image = o
        .key("kubernetes.postgres_image", &f.postgres_image)
        .or(DEFAULT_POSTGRES_IMAGE.to_owned(), super::check_image_ref)?;
    let database_storage_gib = o
        .key("kubernetes.database_storage_gib", &f.database_storage_gib)
        .or(5, within(1..=16384))?;
    let storage_class = o
        .key("kubernetes.storage_class", &f.storage_class)
        .get(optional(keep(dns_label)))?
        .flatten();
    let rollout_timeout = std::time::Duration::from_secs(
        o.key("kubernetes.rollout_timeout_secs", &f.rollout_timeout_secs)
            .or(300, within(5..=3600))?,
    );
    let snapshot_keep = o
        .key("kubernetes.snapshot_keep", &f.snapshot_keep)
        .or(5, within(1..=1000))?;
    let etcd_backup = EtcdBackup {
        dir: o
            .key("kubernetes.etcd_backup_dir", &f.etcd_backup_dir)
            .or("/var/backups/eshop-etcd".to_owned(), keep(node_dir))?,
        keep: o
            .key("kubernetes.etcd_backup_keep", &f.etcd_backup_keep)
            .or(7, within(1..=1000))?,
        schedule: o
            .key("kubernetes.etcd_backup_schedule", &f.etcd_backup_schedule)
            .or("*-*-* 02:00:00".to_owned(), keep(on_calendar))?,
    };
    let images = images(o, f, shop)?;
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
        calico,
        metrics_server,
        local_path,
        apt_key_fingerprint,
        apt_key_url,
        provisioner,
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
        snapshot_keep,
        etcd_backup,
        images,
    })
}

/// Calico's default pool and kubeadm's default services range, which must
/// not overlap.
fn cidrs(o: &Origin, f: &FileKube) -> Result<(Cidr, Cidr), ConfigError> {
    let cidr = |s: &str| s.parse::<Cidr>();
    let pod = o.key("kubernetes.pod_cidr", &f.pod_cidr);
    let pod_cidr = pod.or("192.168.0.0/16".parse().expect("valid"), cidr)?;
    let service = o.key("kubernetes.service_cidr", &f.service_cidr);
    let service_cidr = service.or("10.96.0.0/12".parse().expect("valid"), cidr)?;
    if pod_cidr.overlaps(service_cidr) {
        return o.err(
            service.span().or(pod.span()).unwrap_or(0..0),
            "kubernetes.service_cidr",
            format!("{service_cidr} overlaps kubernetes.pod_cidr {pod_cidr}"),
        );
    }
    Ok((pod_cidr, service_cidr))
}

/// `[kubernetes.images]`: catalogue entry → image built elsewhere.
fn images(
    o: &Origin,
    f: &FileKube,
    shop: &[Service],
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut images = std::collections::BTreeMap::new();
    for (svc, img) in &f.images {
        super::known_service(o, shop, svc, "kubernetes.images")?;
        let key = format!("kubernetes.images.{}", svc.get_ref());
        super::check_image_ref(img.get_ref()).or_else(|m| o.err(img.span(), &key, m))?;
        images.insert(svc.get_ref().clone(), img.get_ref().clone());
    }
    Ok(images)
}

/// `[[kubernetes.nodes]]`: distinct names, one control plane, bootstrap
/// mode only.
fn nodes(o: &Origin, f: &FileKube, mode: Mode, target: Target) -> Result<Vec<Node>, ConfigError> {
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
        let role = o
            .key("kubernetes.nodes.role", &n.role)
            .or(Role::Worker, |r| match r {
                "worker" => Ok(Role::Worker),
                "control-plane" => Ok(Role::ControlPlane),
                other => Err(format!("{other:?} is not control-plane or worker")),
            })?;
        let private_address = o
            .key("kubernetes.nodes.private_address", &n.private_address)
            .or(n.address.get_ref().clone(), keep(address))?;
        nodes.push(Node {
            name: n.name.get_ref().clone(),
            address: n.address.get_ref().clone(),
            private_address,
            role,
        });
    }
    let first = f.nodes.first().map_or(0..0, |n| n.name.span());
    if mode == Mode::Existing && !nodes.is_empty() {
        return o.err(
            first,
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
            return o.err(
                first,
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
    Ok(nodes)
}

/// How the world reaches the shop on the cluster.
fn entry(o: &Origin, f: &FileKube, node_port_default: u16) -> Result<Entry, ConfigError> {
    let ingress = o.key("kubernetes.entry", &f.entry).or(false, |e| match e {
        "nodeport" => Ok(false),
        "ingress" => Ok(true),
        other => Err(format!("{other:?} is not nodeport or ingress")),
    })?;
    if !ingress {
        let p = o
            .key("kubernetes.node_port", &f.node_port)
            .or(node_port_default, within(30000..=32767))?;
        return Ok(Entry::NodePort(p));
    }
    Ok(Entry::Ingress {
        host: o
            .key("kubernetes.ingress_host", &f.ingress_host)
            .get(optional(keep(address)))?
            .flatten()
            .unwrap_or_default(),
        class: o
            .key("kubernetes.ingress_class", &f.ingress_class)
            .or("nginx".to_owned(), keep(dns_label))?,
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
        assert!(node_dir("/var/backups/etcd").is_ok());
        assert!(node_dir("var").is_err() && node_dir("/a/../etc").is_err());
        assert!(node_dir("/a b").is_err() && node_dir("/a$(x)").is_err());
        assert!(on_calendar("*-*-* 02:00:00").is_ok() && on_calendar("Mon..Fri 03:30").is_ok());
        assert!(on_calendar("daily\nExecStart=/bin/sh").is_err() && on_calendar(" ").is_err());
    }
}
