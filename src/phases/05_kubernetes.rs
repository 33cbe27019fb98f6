//! Phase 5 kubernetes: a cluster, then the shop on it.
//!
//! Bootstrap mode prepares every node over SSH in parallel (containerd,
//! pinned kubeadm/kubelet/kubectl), runs `kubeadm init` on the control
//! plane with a rendered configuration, installs Calico (it enforces
//! NetworkPolicies), metrics-server (the autoscalers read it) and a local
//! volume provisioner, joins the workers with a fresh token, and fetches
//! the admin kubeconfig. Existing mode uses a kubeconfig context instead
//! (kind, k3d, EKS). Either way the shop's manifests (templates/kubernetes)
//! are then server-side applied in order and rolled out.

use super::manifests;
use super::{Action, BoxFut, Change, Ctx, Outcome, Phase, Status};
use crate::config::kube::{Entry, Mode, Node, Role};
use crate::config::{Config, Target};
use crate::engines::kube::{self as k8s, Cluster};
use crate::engines::ssh::{self, Conn};
use crate::render::render_pairs as render;
use serde_json::Value;
use std::collections::BTreeMap;

pub struct Kubernetes;

pub const PHASE: &str = "kubernetes";

const NAMESPACE: &str = include_str!("../../templates/kubernetes/00-namespace.yaml");
const CONFIG: &str = include_str!("../../templates/kubernetes/10-config.yaml");
const SECRET: &str = include_str!("../../templates/kubernetes/15-secret.yaml");
const DATABASE: &str = include_str!("../../templates/kubernetes/20-database.yaml");
const SERVICE: &str = include_str!("../../templates/kubernetes/30-service.yaml");
const ENTRY: &str = include_str!("../../templates/kubernetes/40-entry.yaml");

const PREPARE: &str = include_str!("../../templates/kubeadm/prepare-node.sh");
const INIT: &str = include_str!("../../templates/kubeadm/init-control-plane.sh");
const JOIN_COMMAND: &str = include_str!("../../templates/kubeadm/join-command.sh");
const JOIN: &str = include_str!("../../templates/kubeadm/join-worker.sh");
const FINISH: &str = include_str!("../../templates/kubeadm/finish-cluster.sh");
const RESET: &str = include_str!("../../templates/kubeadm/reset-node.sh");
const PROBE: &str = include_str!("../../templates/kubeadm/probe.sh");
const KUBEADM_CONFIG: &str = include_str!("../../templates/kubeadm/kubeadm-config.yaml");

/// The local volume provisioner a bare kubeadm cluster needs for the
/// database's claim (pinned; a CSI driver can replace it through
/// `kubernetes.storage_class`).
const LOCAL_PATH_VERSION: &str = "v0.0.32";

/// (service, port, needs the database)
const SERVICES: [(&str, u16, bool); 2] = [("inventory", 8081, true), ("pricing", 8080, false)];

/// A YAML map body (indented two spaces) from key/values, quoted so any
/// value stays a string.
fn yaml_map(entries: &BTreeMap<String, String>) -> String {
    if entries.is_empty() {
        return "  {}".into();
    }
    entries
        .iter()
        .map(|(k, v)| format!("  {k}: {}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each service's environment in the cluster: the in-cluster addresses,
/// JSON logs, then `[services.<name>.env]` on top.
pub fn service_env(cfg: &Config, service: &str, port: u16) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("LISTEN_ADDR".to_owned(), format!("0.0.0.0:{port}")),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
    ]);
    if service == "pricing" {
        env.insert(
            "INVENTORY_URL".into(),
            format!("http://inventory.{}.svc:8081", cfg.kube.namespace),
        );
    }
    // Phase 10's trace export; credentials arrive as a file from the
    // Secret `otlp` (15-secret.yaml), never in the ConfigMap.
    if let Some((endpoint, headers)) = cfg.apm.otlp() {
        env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
        env.insert("OTEL_SERVICE_NAME".into(), service.to_owned());
        if headers.is_some() {
            env.insert(
                "OTEL_EXPORTER_OTLP_HEADERS_FILE".into(),
                "/run/secrets/otlp/headers".into(),
            );
        }
    }
    if let Some(extra) = cfg.service_env.get(service) {
        env.extend(extra.clone());
    }
    env
}

/// The images to run: what phase 2 last pushed, pinned by digest.
fn images(ctx: &Ctx) -> anyhow::Result<BTreeMap<String, String>> {
    let mut imgs = super::images::current_images(ctx).unwrap_or_default();
    imgs.extend(ctx.config.kube.images.clone());
    for (svc, _, _) in SERVICES {
        if !imgs.contains_key(svc) {
            if ctx.config.registry.is_empty() {
                return Err(crate::config::ConfigError(
                    "images.registry is empty: a cluster pulls the shop's images from a registry; set images.registry (phase 2 pushes there)".into(),
                )
                .into());
            }
            anyhow::bail!(
                "no pushed image for {svc}: run phase 2 first (eshop phase images apply)"
            );
        }
    }
    Ok(imgs)
}

/// The shop's objects, per template file. `images` None renders
/// placeholders (for review); `password` None likewise.
pub fn manifests(
    cfg: &Config,
    images: Option<&BTreeMap<String, String>>,
    password: Option<&str>,
) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let k = &cfg.kube;
    let labels = manifests::owner_labels(cfg, PHASE);
    let ns = k.namespace.clone();
    let mut files = Vec::new();
    let mut add = |name: &str, text: String| -> anyhow::Result<()> {
        files.push((name.to_owned(), manifests::parse(&text, name, &labels)?));
        Ok(())
    };
    add(
        "00-namespace.yaml",
        render(NAMESPACE, &[("namespace", ns.clone())], &[])?,
    )?;
    let envs: BTreeMap<&str, BTreeMap<String, String>> = SERVICES
        .iter()
        .map(|(s, p, _)| (*s, service_env(cfg, s, *p)))
        .collect();
    add(
        "10-config.yaml",
        render(
            CONFIG,
            &[
                ("namespace", ns.clone()),
                ("inventory_env", yaml_map(&envs["inventory"])),
                ("pricing_env", yaml_map(&envs["pricing"])),
            ],
            &[],
        )?,
    )?;
    // `password` None means a render for review: no credential at all.
    let otlp_headers = cfg.apm.otlp().and_then(|(_, h)| h);
    let otlp_headers_text = match (&otlp_headers, password) {
        (Some(h), Some(_)) => Value::String(h.expose().to_owned()).to_string(),
        (Some(_), None) => "\"FROM-THE-ENVIRONMENT\"".to_owned(),
        (None, _) => String::new(),
    };
    let otlp_flags: &[&str] = if otlp_headers.is_some() {
        &["otlp_headers"]
    } else {
        &[]
    };
    add(
        "15-secret.yaml",
        render(
            SECRET,
            &[
                ("namespace", ns.clone()),
                (
                    "db_password",
                    password.unwrap_or("GENERATED-AT-APPLY").to_owned(),
                ),
                ("otlp_headers", otlp_headers_text),
            ],
            otlp_flags,
        )?,
    )?;
    let mut db_flags = Vec::new();
    if k.storage_class.is_some() {
        db_flags.push("storage_class");
    }
    if !k.postgres_image.contains("@sha256:") {
        db_flags.push("postgres_by_tag");
    }
    add(
        "20-database.yaml",
        render(
            DATABASE,
            &[
                ("namespace", ns.clone()),
                ("postgres_image", k.postgres_image.clone()),
                ("database_storage_gib", k.database_storage_gib.to_string()),
                ("storage_class", k.storage_class.clone().unwrap_or_default()),
            ],
            &db_flags,
        )?,
    )?;
    for (svc, port, db) in SERVICES {
        let image = images
            .and_then(|m| m.get(svc).cloned())
            .unwrap_or_else(|| format!("{}:FROM-PHASE-2", super::images::repo(cfg, svc)));
        // The headers file is read at start: a new token must roll pods.
        let headers = otlp_headers.as_ref().map(|h| h.expose()).unwrap_or("");
        let config_hash = crate::util::short_hash(&[&yaml_map(&envs[svc]), headers]);
        let mut flags: Vec<&str> = Vec::new();
        if db {
            flags.push("db");
        }
        if otlp_headers.is_some() {
            flags.push("otlp");
        }
        add(
            &format!("30-{svc}.yaml"),
            render(
                SERVICE,
                &[
                    ("namespace", ns.clone()),
                    ("service", svc.to_owned()),
                    ("port", port.to_string()),
                    ("image", image),
                    ("config_hash", config_hash),
                    ("min_replicas", k.min_replicas.to_string()),
                    ("max_replicas", k.max_replicas.to_string()),
                    ("cpu_target_percent", k.cpu_target_percent.to_string()),
                    ("memory_target_percent", k.memory_target_percent.to_string()),
                ],
                &flags,
            )?,
        )?;
    }
    let (flags, host, class, node_port): (Vec<&str>, String, String, String) = match &k.entry {
        Entry::NodePort(p) => (
            vec!["nodeport"],
            String::new(),
            String::new(),
            p.to_string(),
        ),
        Entry::Ingress { host, class } => {
            let mut f = vec!["ingress"];
            if !host.is_empty() {
                f.push("host");
            }
            (f, host.clone(), class.clone(), String::new())
        }
    };
    add(
        "40-entry.yaml",
        render(
            ENTRY,
            &[
                ("namespace", ns),
                ("node_port", node_port),
                ("ingress_host", host),
                ("ingress_class", class),
            ],
            &flags,
        )?,
    )?;
    Ok(files)
}

fn flat(files: Vec<(String, Vec<Value>)>) -> Vec<Value> {
    files.into_iter().flat_map(|(_, o)| o).collect()
}

/// 32 letters and digits: URL-safe inside DATABASE_URL, ~190 bits.
pub fn password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

// --- the cluster ----------------------------------------------------------

/// Connects to the cluster this phase deploys to. Checks the file first,
/// so a bootstrap that has not run yet says so.
pub async fn cluster(cfg: &Config) -> anyhow::Result<Cluster> {
    let k = &cfg.kube;
    if !k.kubeconfig.exists() {
        anyhow::bail!(
            "kubeconfig {} does not exist{}",
            k.kubeconfig.display(),
            if k.mode == Mode::Bootstrap {
                ": phase 5 writes it when it bootstraps the cluster (eshop phase kubernetes apply)"
            } else {
                ": set kubernetes.kubeconfig (or KUBECONFIG) to your cluster's"
            }
        );
    }
    k8s::connect(&k.kubeconfig, k.context.as_deref()).await
}

/// The machines to bootstrap: `[[kubernetes.nodes]]`, or on target aws
/// phase 3's running instances found by tag (instance ids as node names).
async fn nodes(ctx: &Ctx) -> anyhow::Result<Vec<Node>> {
    let cfg = &ctx.config;
    if !cfg.kube.nodes.is_empty() {
        return Ok(cfg.kube.nodes.clone());
    }
    if cfg.target != Target::Aws {
        return Ok(Vec::new());
    }
    let found = super::infra::instances(ctx.aws().await, &cfg.project).await?;
    let nodes: Vec<Node> = found
        .into_iter()
        .map(|i| Node {
            name: i.id.clone(),
            address: if i.public_ip.is_empty() {
                i.private_ip.clone()
            } else {
                i.public_ip
            },
            private_address: i.private_ip,
            role: if i.role == "control-plane" {
                Role::ControlPlane
            } else {
                Role::Worker
            },
        })
        .collect();
    // No control plane: phase 3 has not run (plan says so; apply fails).
    if !nodes.iter().any(|n| n.role == Role::ControlPlane) {
        return Ok(Vec::new());
    }
    Ok(nodes)
}

async fn connect_all(
    ctx: &Ctx,
    nodes: &[Node],
    dir: &std::path::Path,
) -> anyhow::Result<Vec<Conn>> {
    let conns =
        futures_util::future::join_all(nodes.iter().map(|n| ssh::connect(n, &ctx.config.ssh, dir)))
            .await;
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for c in conns {
        match c {
            Ok(c) => ok.push(c),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        for c in ok {
            c.close().await;
        }
        anyhow::bail!("cannot reach every node:\n  {}", errors.join("\n  "));
    }
    Ok(ok)
}

/// Runs one script on several nodes at once, a spinner per node; fails
/// with every node that failed, by name.
async fn on_all(
    ctx: &Ctx,
    conns: &[&Conn],
    name: &str,
    body: &(dyn Fn(&Node) -> anyhow::Result<String> + Sync),
) -> anyhow::Result<usize> {
    let runs = conns.iter().map(|c| {
        let p = ctx.ui.spinner(PHASE, &format!("{}: {name}", c.node.name));
        let script = body(&c.node);
        async move {
            let ran = c
                .run(name, &script?, |s| {
                    p.set_message(format!("{}: {s}", c.node.name))
                })
                .await;
            match &ran {
                Ok(r) if r.changes.is_empty() => {
                    p.finish(&format!("{}: {name}: nothing to do", c.node.name))
                }
                Ok(r) => p.finish(&format!(
                    "{}: {name}: {}",
                    c.node.name,
                    r.changes.join("; ")
                )),
                Err(_) => drop(p),
            }
            ran
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut changed = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(r) => changed += r.changes.len(),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    Ok(changed)
}

/// Where the nodes reach the API: `host:port`.
fn endpoint(cfg: &Config, cp: &Node) -> String {
    match &cfg.kube.control_plane_endpoint {
        Some(e) if e.contains(':') => e.clone(),
        Some(e) => format!("{e}:6443"),
        None => format!("{}:6443", cp.private_address),
    }
}

fn kubeadm_config(cfg: &Config, cp: &Node) -> anyhow::Result<String> {
    let k = &cfg.kube;
    let mut sans: Vec<String> = vec![cp.address.clone(), cp.private_address.clone()];
    if let Some(api) = &k.api_server {
        if let Some(host) = api
            .split("://")
            .nth(1)
            .and_then(|r| r.split([':', '/']).next())
        {
            sans.push(host.to_owned());
        }
    }
    sans.sort();
    sans.dedup();
    render(
        KUBEADM_CONFIG,
        &[
            ("node_name", cp.name.clone()),
            ("k8s_version", k.version.clone()),
            ("project", cfg.project.clone()),
            ("endpoint", endpoint(cfg, cp)),
            ("pod_cidr", k.pod_cidr.to_string()),
            ("service_cidr", k.service_cidr.to_string()),
            (
                "cert_sans",
                sans.iter()
                    .map(|s| format!("    - \"{s}\""))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ],
        &[],
    )
}

fn init_script(cfg: &Config, cp: &Node) -> anyhow::Result<String> {
    let k = &cfg.kube;
    render(
        INIT,
        &[
            ("k8s_version", k.version.clone()),
            ("kubeadm_config", kubeadm_config(cfg, cp)?),
            ("calico_version", k.calico_version.clone()),
            (
                "calico_url",
                format!(
                    "https://raw.githubusercontent.com/projectcalico/calico/{}/manifests/calico.yaml",
                    k.calico_version
                ),
            ),
            ("metrics_server_version", k.metrics_server_version.clone()),
            (
                "metrics_server_url",
                format!(
                    "https://github.com/kubernetes-sigs/metrics-server/releases/download/{}/components.yaml",
                    k.metrics_server_version
                ),
            ),
            ("local_path_version", LOCAL_PATH_VERSION.to_owned()),
            (
                "local_path_url",
                format!(
                    "https://raw.githubusercontent.com/rancher/local-path-provisioner/{LOCAL_PATH_VERSION}/deploy/local-path-storage.yaml"
                ),
            ),
        ],
        &[],
    )
}

/// `kubeadm join HOST:PORT --token T --discovery-token-ca-cert-hash sha256:H`
/// → (endpoint, token, hash), checked so nothing else reaches a script.
pub fn parse_join(line: &str) -> anyhow::Result<(String, String, String)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    let bad = || anyhow::anyhow!("the control plane printed no usable join command");
    if words.first() != Some(&"kubeadm") || words.get(1) != Some(&"join") {
        return Err(bad());
    }
    let endpoint = words.get(2).map(|s| s.to_string()).ok_or_else(bad)?;
    let token = after("--token").ok_or_else(bad)?;
    let hash = after("--discovery-token-ca-cert-hash").ok_or_else(bad)?;
    let token_ok = token.len() == 23
        && token.as_bytes()[6] == b'.'
        && token
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 6 || b.is_ascii_lowercase() || b.is_ascii_digit());
    let hash_ok = hash
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let ep_ok = endpoint
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !(token_ok && hash_ok && ep_ok) {
        return Err(bad());
    }
    Ok((endpoint, token, hash))
}

/// What a node reports about itself (probe.sh).
#[derive(Debug, Default)]
struct Probe {
    kubeadm: String,
    role: String,
}

fn parse_probe(out: &str) -> Probe {
    let mut p = Probe::default();
    for line in out.lines() {
        match line.split_once('=') {
            Some(("kubeadm", v)) => p.kubeadm = v.to_owned(),
            Some(("role", v)) => p.role = v.to_owned(),
            _ => {}
        }
    }
    p
}

async fn probe_all(conns: &[Conn]) -> anyhow::Result<Vec<Probe>> {
    let r =
        futures_util::future::join_all(conns.iter().map(|c| c.run("probe", PROBE, |_| {}))).await;
    r.into_iter()
        .map(|x| x.map(|r| parse_probe(&r.stdout)))
        .collect()
}

/// A scratch directory for the SSH control sockets: short (socket paths
/// are limited to ~100 bytes) and private.
fn control_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("eshop-ssh")
        .tempdir_in("/tmp")?)
}

/// Bootstrap mode: converge every node, then fetch the admin kubeconfig.
async fn bootstrap(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let nodes = nodes(ctx).await?;
    if nodes.is_empty() {
        anyhow::bail!(
            "no running control plane tagged for project {:?}: run phase 3 first (eshop phase infra apply), or list [[kubernetes.nodes]]",
            cfg.project
        );
    }
    let dir = control_dir()?;
    let conns = connect_all(ctx, &nodes, dir.path()).await?;
    let result = bootstrap_on(ctx, &conns).await;
    for c in conns {
        c.close().await;
    }
    let mut changed = result?;
    // The kubeconfig eshop and the admin use: the control plane's, with a
    // server address reachable from here and a context named for the shop.
    changed += usize::from(write_kubeconfig(cfg, &nodes, dir.path()).await?);
    Ok(changed)
}

async fn bootstrap_on(ctx: &Ctx, conns: &[Conn]) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let k = &cfg.kube;
    let all: Vec<&Conn> = conns.iter().collect();
    let cp = *all
        .iter()
        .find(|c| c.node.role == Role::ControlPlane)
        .expect("validated: one control plane");
    let workers: Vec<&Conn> = all
        .iter()
        .copied()
        .filter(|c| c.node.role == Role::Worker)
        .collect();
    let prepare = |_: &Node| {
        render(
            PREPARE,
            &[("k8s_minor", k.minor()), ("k8s_package", k.package())],
            &[],
        )
    };
    let mut changed = on_all(ctx, &all, "prepare node", &prepare).await?;
    let init = |n: &Node| init_script(cfg, n);
    changed += on_all(ctx, &[cp], "control plane", &init).await?;

    // Only workers that have not joined get a token: a converged cluster
    // creates none.
    let probes =
        futures_util::future::join_all(workers.iter().map(|c| c.run("probe", PROBE, |_| {}))).await;
    let mut pending = Vec::new();
    for (c, p) in workers.iter().zip(probes) {
        if parse_probe(&p?.stdout).role == "none" {
            pending.push(*c);
        }
    }
    if !pending.is_empty() {
        let out = cp
            .run(
                "join command",
                &render(JOIN_COMMAND, &[("project", cfg.project.clone())], &[])?,
                |_| {},
            )
            .await?;
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("kubeadm join"))
            .unwrap_or_default();
        let (endpoint, token, hash) = parse_join(line)?;
        let join = |n: &Node| {
            render(
                JOIN,
                &[
                    ("endpoint", endpoint.clone()),
                    ("token", token.clone()),
                    ("ca_hash", hash.clone()),
                    ("node_name", n.name.clone()),
                ],
                &[],
            )
        };
        changed += on_all(ctx, &pending, "join", &join).await?;
    }
    let finish = |_: &Node| Ok(FINISH.to_owned());
    changed += on_all(ctx, &[cp], "serving certificates", &finish).await?;
    Ok(changed)
}

/// Writes the admin kubeconfig (0600) when its content changed. Its key
/// never reaches a log or the state file.
async fn write_kubeconfig(
    cfg: &Config,
    nodes: &[Node],
    dir: &std::path::Path,
) -> anyhow::Result<bool> {
    let k = &cfg.kube;
    let cp = nodes
        .iter()
        .find(|n| n.role == Role::ControlPlane)
        .expect("one control plane");
    let conn = ssh::connect(cp, &cfg.ssh, dir).await?;
    let text = conn.read_file("/etc/kubernetes/admin.conf").await;
    conn.close().await;
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&text?).map_err(|e| {
        anyhow::anyhow!(
            "node {}: /etc/kubernetes/admin.conf is not a kubeconfig: {e}",
            cp.name
        )
    })?;
    let name = k
        .context
        .clone()
        .unwrap_or_else(|| format!("eshop-{}", cfg.project));
    let server = k
        .api_server
        .clone()
        .unwrap_or_else(|| format!("https://{}:6443", cp.address));
    let user = format!("{name}-admin");
    let one = |v: &mut serde_yaml::Value, key: &str| -> anyhow::Result<serde_yaml::Value> {
        v[key]
            .as_sequence()
            .and_then(|s| s.first())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("node {}: admin.conf has no {key}", cp.name))
    };
    let mut cluster = one(&mut kc, "clusters")?;
    cluster["name"] = name.clone().into();
    cluster["cluster"]["server"] = server.into();
    let mut auth = one(&mut kc, "users")?;
    auth["name"] = user.clone().into();
    let context: serde_yaml::Value = serde_yaml::from_str(&format!(
        "name: {name}\ncontext:\n  cluster: {name}\n  user: {user}\n  namespace: {}\n",
        k.namespace
    ))?;
    kc["clusters"] = serde_yaml::Value::Sequence(vec![cluster]);
    kc["users"] = serde_yaml::Value::Sequence(vec![auth]);
    kc["contexts"] = serde_yaml::Value::Sequence(vec![context]);
    kc["current-context"] = name.into();
    let text = serde_yaml::to_string(&kc)?;
    if std::fs::read_to_string(&k.kubeconfig).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    write_private(&k.kubeconfig, &text)?;
    Ok(true)
}

/// Atomically writes a file only its owner can read.
pub fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubeconfig")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

async fn plan_bootstrap(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let nodes = nodes(ctx).await?;
    if nodes.is_empty() {
        // The shop's objects follow from plan(): there is no kubeconfig yet.
        return Ok(vec![Change::new(
            "cluster (kubeadm)",
            Action::Create,
            "no nodes yet: phase 3 creates them",
        )]);
    }
    let dir = control_dir()?;
    let conns = connect_all(ctx, &nodes, dir.path()).await?;
    let probes = probe_all(&conns).await;
    for c in conns {
        c.close().await;
    }
    let want = ctx.config.kube.package();
    let mut out = Vec::new();
    for (n, p) in nodes.iter().zip(probes?) {
        let res = format!("node {} ({})", n.name, n.address);
        let joined = match n.role {
            Role::ControlPlane => p.role == "control-plane",
            Role::Worker => p.role != "none",
        };
        let step = if n.role == Role::ControlPlane {
            "kubeadm init"
        } else {
            "kubeadm join"
        };
        out.push(if p.kubeadm != want {
            Change::new(
                res,
                if p.kubeadm.is_empty() {
                    Action::Create
                } else {
                    Action::Update
                },
                format!(
                    "install kubeadm {want}{}, then {step}",
                    if p.kubeadm.is_empty() {
                        String::new()
                    } else {
                        format!(" (has {})", p.kubeadm)
                    }
                ),
            )
        } else if !joined {
            Change::new(res, Action::Create, step)
        } else {
            Change::new(res, Action::NoOp, format!("{} {}", p.role, p.kubeadm))
        });
    }
    Ok(out)
}

async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    let mut out = Vec::new();
    if cfg.kube.mode == Mode::Bootstrap {
        out = plan_bootstrap(ctx).await?;
        if manifests::cluster_pending(cfg) {
            out.extend(manifests::plan_without_cluster(&flat(manifests(
                cfg, None, None,
            )?)));
            return Ok(out);
        }
    }
    let imgs = images(ctx)?;
    let cluster = cluster(cfg).await?;
    let objects = flat(manifests(cfg, Some(&imgs), Some("unused-by-plan"))?);
    out.extend(manifests::plan(&cluster, cfg, PHASE, &objects).await?);
    Ok(out)
}

async fn apply(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    // Everything checked before a node or the API is touched.
    let imgs = images(ctx)?;
    let mut changed = 0;
    if cfg.kube.mode == Mode::Bootstrap {
        changed += bootstrap(ctx).await?;
    }
    let cluster = cluster(cfg).await?;
    let version = cluster.version().await?;
    ctx.ui.info(
        PHASE,
        &format!("cluster {} (Kubernetes {version})", cluster.server),
    );
    let objects = flat(manifests(cfg, Some(&imgs), Some(&password()))?);
    changed += manifests::apply(ctx, &cluster, PHASE, &objects).await?;
    ctx.set_phase_state(
        PHASE,
        serde_json::json!({
            "mode": cfg.kube.mode.as_str(),
            "server": cluster.server,
            "version": version,
            "namespace": cfg.kube.namespace,
            "images": imgs,
        }),
    )?;
    Ok(changed)
}

async fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    match cfg.kube.mode {
        Mode::Off => Ok(0),
        Mode::Existing => {
            let cluster = cluster(cfg).await?;
            let n = manifests::destroy(ctx, &cluster, PHASE).await?;
            ctx.clear_phase_state(PHASE)?;
            Ok(n)
        }
        Mode::Bootstrap => {
            // Resetting the nodes removes the cluster and all it ran; no
            // machine left (phase 3 already destroyed) means nothing to do.
            let nodes = nodes(ctx).await?;
            let mut n = 0;
            let discovered = cfg.kube.nodes.is_empty();
            let bootstrapped = cfg.kube.kubeconfig.exists() || ctx.phase_state(PHASE).is_some();
            if discovered && !bootstrapped && !nodes.is_empty() {
                // Phase 3's machines with no sign of a cluster: nothing to
                // reset, and phase 3's destroy terminates them anyway.
                ctx.ui.info(
                    PHASE,
                    "no cluster was bootstrapped on phase 3's instances: nothing to reset",
                );
            } else if !nodes.is_empty() {
                let dir = control_dir()?;
                let conns = if discovered {
                    // Best effort on phase 3's machines: one that cannot be
                    // reached is about to be terminated anyway.
                    let tries = futures_util::future::join_all(
                        nodes.iter().map(|x| ssh::connect(x, &cfg.ssh, dir.path())),
                    )
                    .await;
                    let mut ok = Vec::new();
                    for t in tries {
                        match t {
                            Ok(c) => ok.push(c),
                            Err(e) => ctx.ui.info(PHASE, &format!("{e:#}: not reset")),
                        }
                    }
                    ok
                } else {
                    connect_all(ctx, &nodes, dir.path()).await?
                };
                let all: Vec<&Conn> = conns.iter().collect();
                let reset = |_: &Node| Ok(RESET.to_owned());
                let r = on_all(ctx, &all, "kubeadm reset", &reset).await;
                for c in conns {
                    c.close().await;
                }
                n += r?;
            }
            if cfg.kube.kubeconfig.exists() {
                std::fs::remove_file(&cfg.kube.kubeconfig)?;
                ctx.ui
                    .info(PHASE, &format!("removed {}", cfg.kube.kubeconfig.display()));
                n += 1;
            }
            ctx.clear_phase_state(PHASE)?;
            Ok(n)
        }
    }
}

/// Said once, where a phase would otherwise silently do nothing.
pub fn off_note(ctx: &Ctx, phase: &str) {
    ctx.ui.info(
        phase,
        "skipped: no cluster (kubernetes.mode = \"off\"; set \"existing\" with a kubeconfig context such as kind's, or \"bootstrap\" with nodes)",
    );
}

impl Phase for Kubernetes {
    fn number(&self) -> u8 {
        5
    }
    fn name(&self) -> &'static str {
        PHASE
    }
    fn about(&self) -> &'static str {
        "kubeadm over SSH (or an existing cluster), then the shop: PostgreSQL, Deployments, Services, autoscalers (server-side apply)"
    }
    fn targets(&self) -> &'static [Target] {
        &[Target::Local, Target::Aws]
    }
    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>> {
        Box::pin(async move {
            if ctx.config.kube.mode == Mode::Off {
                return Ok(Vec::new());
            }
            plan(ctx).await
        })
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
            if ctx.config.kube.mode == Mode::Off {
                off_note(ctx, PHASE);
                return Ok(Outcome::default());
            }
            Ok(Outcome {
                changed: apply(ctx).await?,
            })
        })
    }
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
            Ok(Outcome {
                changed: destroy(ctx).await?,
            })
        })
    }
    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>> {
        Box::pin(async move {
            let cfg = &ctx.config;
            if cfg.kube.mode == Mode::Off {
                return Ok(Vec::new());
            }
            let cluster = match cluster(cfg).await {
                Ok(c) => c,
                Err(e) => {
                    return Ok(vec![Status {
                        resource: "cluster".into(),
                        state: format!("{e:#}"),
                        healthy: false,
                    }])
                }
            };
            let mut out = vec![match cluster.version().await {
                Ok(v) => Status {
                    resource: "cluster".into(),
                    state: format!("{} Kubernetes {v}", cluster.server),
                    healthy: true,
                },
                Err(e) => Status {
                    resource: "cluster".into(),
                    state: format!("{e:#}"),
                    healthy: false,
                },
            }];
            if out[0].healthy {
                let objects = flat(manifests(cfg, None, None)?);
                out.extend(manifests::status(&cluster, &objects).await?);
            }
            Ok(out)
        })
    }
    fn render(&self, ctx: &Ctx, out: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let cfg = &ctx.config;
        let mut imgs = super::images::current_images(ctx).unwrap_or_default();
        imgs.extend(cfg.kube.images.clone());
        let files = manifests(cfg, Some(&imgs), None)?;
        let mut written = manifests::write(out, &files)?;
        // The node scripts as the nodes receive them (join values are
        // only known at apply time).
        let cp = cfg.kube.control_plane().cloned().unwrap_or(Node {
            name: "control-plane".into(),
            address: "CONTROL-PLANE-ADDRESS".into(),
            private_address: "CONTROL-PLANE-PRIVATE-ADDRESS".into(),
            role: Role::ControlPlane,
        });
        let k = &cfg.kube;
        let scripts = [
            (
                "prepare-node.sh",
                render(
                    PREPARE,
                    &[("k8s_minor", k.minor()), ("k8s_package", k.package())],
                    &[],
                )?,
            ),
            ("init-control-plane.sh", init_script(cfg, &cp)?),
            (
                "join-command.sh",
                render(JOIN_COMMAND, &[("project", cfg.project.clone())], &[])?,
            ),
            (
                "join-worker.sh",
                render(
                    JOIN,
                    &[
                        ("endpoint", endpoint(cfg, &cp)),
                        ("token", "TOKEN-FROM-CONTROL-PLANE".into()),
                        ("ca_hash", "sha256:CA-HASH-FROM-CONTROL-PLANE".into()),
                        ("node_name", "WORKER-NAME".into()),
                    ],
                    &[],
                )?,
            ),
            ("finish-cluster.sh", FINISH.to_owned()),
            ("reset-node.sh", RESET.to_owned()),
            ("probe.sh", PROBE.to_owned()),
        ];
        let dir = out.join("nodes");
        std::fs::create_dir_all(&dir)?;
        for (name, body) in scripts {
            let p = dir.join(name);
            std::fs::write(&p, ssh::script(&body))?;
            written.push(p);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_lines_are_parsed_strictly() {
        let h = "a".repeat(64);
        let ok = format!("kubeadm join 10.0.0.5:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:{h}");
        let (e, t, c) = parse_join(&ok).unwrap();
        assert_eq!(
            (e.as_str(), t.as_str()),
            ("10.0.0.5:6443", "abcdef.0123456789abcdef")
        );
        assert_eq!(c, format!("sha256:{h}"));
        assert!(
            parse_join("kubeadm join x --token bad --discovery-token-ca-cert-hash sha256:00")
                .is_err()
        );
        assert!(parse_join(&ok.replace("10.0.0.5", "$(reboot)")).is_err());
        assert!(parse_join("").is_err());
    }

    #[test]
    fn passwords_are_long_and_url_safe() {
        let (a, b) = (password(), password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
