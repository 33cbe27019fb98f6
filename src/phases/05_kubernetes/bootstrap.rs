//! Bootstrap mode: kubeadm over SSH on every node (templates/kubeadm),
//! the admin kubeconfig fetched from the control plane, and the reset that
//! destroy runs.

use super::PHASE;
use crate::config::kube::{Node, Provisioner, Role};
use crate::config::{Config, Pinned, Target};
use crate::engines::ssh::{self, Conn};
use crate::phases::{Action, Change, Ctx};
use crate::pins::Fetched;
use crate::render::render_pairs as render;

pub(super) const PREPARE: &str = include_str!("../../../templates/kubeadm/prepare-node.sh");
pub(super) const INIT: &str = include_str!("../../../templates/kubeadm/init-control-plane.sh");
pub(super) const JOIN_COMMAND: &str = include_str!("../../../templates/kubeadm/join-command.sh");
pub(super) const JOIN: &str = include_str!("../../../templates/kubeadm/join-worker.sh");
pub(super) const FINISH: &str = include_str!("../../../templates/kubeadm/finish-cluster.sh");
pub(super) const RESET: &str = include_str!("../../../templates/kubeadm/reset-node.sh");
pub(super) const PROBE: &str = include_str!("../../../templates/kubeadm/probe.sh");
pub(super) const KUBEADM_CONFIG: &str =
    include_str!("../../../templates/kubeadm/kubeadm-config.yaml");

pub(super) const ADD_ON: &str = include_str!("../../../templates/kubeadm/add-on.sh");

// --- the cluster ----------------------------------------------------------

/// The machines to bootstrap: `[[kubernetes.nodes]]`, or on target aws
/// phase 3's running instances found by tag (instance ids as node names).
pub(crate) async fn nodes(ctx: &Ctx) -> anyhow::Result<Vec<Node>> {
    let cfg = &ctx.config;
    if !cfg.kube.nodes.is_empty() {
        return Ok(cfg.kube.nodes.clone());
    }
    if cfg.target != Target::Aws {
        return Ok(Vec::new());
    }
    let found = crate::phases::infra::instances(ctx.aws().await, &cfg.project).await?;
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

pub(super) async fn connect_all(
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
pub(super) async fn on_all(
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
pub(crate) fn endpoint(cfg: &Config, cp: &Node) -> String {
    match &cfg.kube.control_plane_endpoint {
        Some(e) if e.contains(':') => e.clone(),
        Some(e) => format!("{e}:6443"),
        None => format!("{}:6443", cp.private_address),
    }
}

pub(crate) fn kubeadm_config(cfg: &Config, cp: &Node) -> anyhow::Result<String> {
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
    let text = render(
        KUBEADM_CONFIG,
        &[
            ("node_name", cp.name.clone()),
            ("k8s_version", k.version.clone()),
            ("cluster_name", cluster_name(cfg)),
            ("endpoint", endpoint(cfg, cp)),
            ("pod_cidr", k.pod_cidr.to_string()),
            ("service_cidr", k.service_cidr.to_string()),
        ],
        &[],
    )?;
    // The SANs go in as data, then the documents are written back out.
    let mut out = String::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut v: serde_yaml::Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("kubeadm-config.yaml: {e}"))?;
        if v["kind"] == "ClusterConfiguration" {
            v["apiServer"]["certSANs"] = serde_yaml::to_value(&sans)?;
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&v)?);
    }
    Ok(out)
}

/// The name kubeadm gives the cluster (ClusterConfiguration.clusterName)
/// and each node records in /etc/eshop/cluster.
pub(crate) fn cluster_name(cfg: &Config) -> String {
    format!("eshop-{}", cfg.project)
}

pub(super) fn prepare_script(cfg: &Config) -> anyhow::Result<String> {
    let k = &cfg.kube;
    render(
        PREPARE,
        &[
            ("k8s_minor", k.minor()),
            ("k8s_package", k.package()),
            ("apt_key_fingerprint", k.apt_key_fingerprint.clone()),
        ],
        &[],
    )
}

/// Resets a node only if it is in the cluster eshop built for this project.
pub(super) fn reset_script(cfg: &Config) -> anyhow::Result<String> {
    render(RESET, &[("cluster_name", cluster_name(cfg))], &[])
}

/// The add-ons a bootstrapped cluster gets, in the order they are applied.
pub(crate) fn add_ons(cfg: &Config) -> [&Pinned; 3] {
    let k = &cfg.kube;
    [&k.calico, &k.metrics_server, &k.local_path]
}

/// Downloads every add-on and checks it against its pin (before any node
/// is touched: a changed manifest stops here); `record`: write first-use
/// pins to eshop.lock.
pub(crate) async fn fetch_add_ons(
    ctx: &Ctx,
    record: bool,
) -> anyhow::Result<Vec<(Pinned, Fetched)>> {
    let mut out = Vec::new();
    for p in add_ons(&ctx.config) {
        let f = crate::pins::fetch(&ctx.config, &ctx.ui, PHASE, p, record).await?;
        out.push((p.clone(), f));
    }
    Ok(out)
}

/// Writes the checked add-on manifests on the control plane.
fn add_on_script(add_ons: &[(Pinned, Fetched)]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (p, f) in add_ons {
        out.push_str(&render(
            ADD_ON,
            &[
                ("name", p.name.to_owned()),
                ("version", p.version.clone()),
                ("sha256", f.sha256.clone()),
                (
                    "content_base64",
                    crate::render::base64_word(f.text.as_bytes()),
                ),
            ],
            &[],
        )?);
    }
    Ok(out)
}

pub(super) fn init_script(cfg: &Config, cp: &Node) -> anyhow::Result<String> {
    let k = &cfg.kube;
    render(
        INIT,
        &[
            ("k8s_version", k.version.clone()),
            ("cluster_name", cluster_name(cfg)),
            (
                "kubeadm_config_base64",
                crate::render::base64_word(kubeadm_config(cfg, cp)?.as_bytes()),
            ),
            ("calico_version", k.calico.version.clone()),
            ("metrics_server_version", k.metrics_server.version.clone()),
            ("local_path_version", k.local_path.version.clone()),
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
    let hash_ok = crate::util::is_sha256_digest(&hash);
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
pub(crate) fn control_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("eshop-ssh")
        .tempdir_in("/tmp")?)
}

/// Bootstrap mode: converge every node, then fetch the admin kubeconfig.
pub(super) async fn bootstrap(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let nodes = nodes(ctx).await?;
    if nodes.is_empty() {
        anyhow::bail!(
            "no running control plane tagged for project {:?}: run phase 3 first (eshop phase infra apply), or list [[kubernetes.nodes]]",
            cfg.project
        );
    }
    // Before any node is touched: a manifest that fails its pin stops here.
    let add_ons = fetch_add_ons(ctx, true).await?;
    if cfg.kube.provisioner == Provisioner::Ansible {
        // Phase 9's provision.yml and cluster.yml instead of the scripts.
        let mut changed = crate::phases::config::provision_cluster(ctx, &nodes, &add_ons).await?;
        let dir = control_dir()?;
        changed += usize::from(write_kubeconfig(cfg, &nodes, dir.path()).await?);
        return Ok(changed);
    }
    let dir = control_dir()?;
    let conns = connect_all(ctx, &nodes, dir.path()).await?;
    let result = bootstrap_on(ctx, &conns, &add_ons).await;
    for c in conns {
        c.close().await;
    }
    let mut changed = result?;
    // The kubeconfig eshop and the admin use: the control plane's, with a
    // server address reachable from here and a context named for the shop.
    changed += usize::from(write_kubeconfig(cfg, &nodes, dir.path()).await?);
    Ok(changed)
}

pub(super) async fn bootstrap_on(
    ctx: &Ctx,
    conns: &[Conn],
    add_ons: &[(Pinned, Fetched)],
) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
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
    let prepare = |_: &Node| prepare_script(cfg);
    let mut changed = on_all(ctx, &all, "prepare node", &prepare).await?;
    let upload = |_: &Node| add_on_script(add_ons);
    changed += on_all(ctx, &[cp], "add-ons", &upload).await?;
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
                    ("cluster_name", cluster_name(cfg)),
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
pub(crate) async fn write_kubeconfig(
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
    // Built as data: a context name is whatever the user chose.
    let context = serde_yaml::to_value(serde_json::json!({
        "name": name,
        "context": {"cluster": name, "user": user, "namespace": k.namespace},
    }))?;
    kc["clusters"] = serde_yaml::Value::Sequence(vec![cluster]);
    kc["users"] = serde_yaml::Value::Sequence(vec![auth]);
    kc["contexts"] = serde_yaml::Value::Sequence(vec![context]);
    kc["current-context"] = name.into();
    let text = serde_yaml::to_string(&kc)?;
    if std::fs::read_to_string(&k.kubeconfig).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    crate::util::write_atomic(&k.kubeconfig, text.as_bytes(), 0o600)?;
    Ok(true)
}

/// What the add-ons' pins are (plan downloads nothing: apply checks).
fn plan_add_ons(cfg: &Config) -> anyhow::Result<Vec<Change>> {
    add_ons(cfg)
        .into_iter()
        .map(|p| {
            let (pin, _) = crate::pins::pin(cfg, p)?;
            Ok(Change::new(
                format!("add-on {} {}", p.name, p.version),
                if pin.is_some() {
                    Action::NoOp
                } else {
                    Action::Create
                },
                crate::pins::describe(cfg, p)?,
            ))
        })
        .collect()
}

pub(super) async fn plan_bootstrap(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let nodes = nodes(ctx).await?;
    let mut out = plan_add_ons(&ctx.config)?;
    if nodes.is_empty() {
        // The shop's objects follow from plan(): there is no kubeconfig yet.
        out.push(Change::new(
            "cluster (kubeadm)",
            Action::Create,
            "no nodes yet: phase 3 creates them",
        ));
        return Ok(out);
    }
    let dir = control_dir()?;
    let conns = connect_all(ctx, &nodes, dir.path()).await?;
    let probes = probe_all(&conns).await;
    for c in conns {
        c.close().await;
    }
    let want = ctx.config.kube.package();
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

/// For review: what add-on.sh writes before init (the manifests
/// themselves are downloaded and checked at apply time).
pub(super) fn add_ons_text(cfg: &Config) -> anyhow::Result<String> {
    let mut out = String::from(
        "# Written to /etc/eshop/addons/NAME.yaml by add-on.sh before init-control-plane.sh\n\
         # applies them; eshop downloads each and checks its sha256 first.\n",
    );
    for p in add_ons(cfg) {
        out.push_str(&format!(
            "# {} {}: {}\n#   {}\n",
            p.name,
            p.version,
            p.source,
            crate::pins::describe(cfg, p)?
        ));
    }
    Ok(out)
}

/// The node scripts as the nodes receive them, for review (join values
/// are only known at apply time: placeholders stand for them).
pub(super) fn node_scripts(cfg: &Config, cp: &Node) -> anyhow::Result<Vec<(&'static str, String)>> {
    let scripts = vec![
        ("prepare-node.sh", prepare_script(cfg)?),
        ("init-control-plane.sh", init_script(cfg, cp)?),
        (
            "join-command.sh",
            render(JOIN_COMMAND, &[("project", cfg.project.clone())], &[])?,
        ),
        (
            "join-worker.sh",
            render(
                JOIN,
                &[
                    ("endpoint", endpoint(cfg, cp)),
                    ("token", "TOKEN-FROM-CONTROL-PLANE".into()),
                    ("ca_hash", "sha256:CA-HASH-FROM-CONTROL-PLANE".into()),
                    ("node_name", "WORKER-NAME".into()),
                    ("cluster_name", cluster_name(cfg)),
                ],
                &[],
            )?,
        ),
        ("finish-cluster.sh", FINISH.to_owned()),
        ("reset-node.sh", reset_script(cfg)?),
        ("probe.sh", PROBE.to_owned()),
    ];
    Ok(scripts)
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
}
