//! Phase 6 security: RBAC and NetworkPolicies for the shop's namespace
//! (templates/security), and `add-user`, which gives a person a
//! certificate-based kubeconfig limited to pods.
//!
//! The service accounts are phase 5's (a Deployment cannot start before
//! its account exists); none of them may reach the API: no token is
//! mounted and no role is bound to them.

use super::manifests::{self, pods, rule_from, rule_to, tcp};
use super::{Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::kube::Mode;
use crate::config::Config;
use crate::render::render_pairs as render;
use crate::shop::Service;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Security;

pub const PHASE: &str = "security";

const POD_MANAGER_POLICY: &str =
    include_str!("../../templates/security/15-pod-manager-policy.yaml");
const RBAC: &str = include_str!("../../templates/security/10-rbac.yaml");
const POLICIES: &str = include_str!("../../templates/security/20-network-policies.yaml");
const SERVICE_POLICY: &str = include_str!("../../templates/security/30-service-policy.yaml");
/// The database's port (templates/kubernetes/20-database.yaml).
const POSTGRES_PORT: u16 = 5432;

/// The group `add-user` certificates name; the Role is bound to it.
pub fn users_group(cfg: &Config) -> String {
    format!("eshop-{}-pod-managers", cfg.project)
}

/// Where Prometheus runs (phase 7 on Kubernetes): the shop's namespace.
pub fn monitoring_namespace(cfg: &Config) -> String {
    cfg.kube.namespace.clone()
}

/// One service's NetworkPolicy: the catalogue's edges into and out of it.
fn service_policy(cfg: &Config, svc: &Service, otlp_port: Option<u16>) -> anyhow::Result<Value> {
    let text = render(
        SERVICE_POLICY,
        &[
            ("namespace", cfg.kube.namespace.clone()),
            ("service", svc.name.to_owned()),
        ],
        &[],
    )?;
    let mut v: Value = serde_yaml::from_str(&text)?;
    let mut ingress = Vec::new();
    if svc.public {
        // The entry is public: the NodePort/Ingress brings outside traffic
        // from any address (Prometheus included).
        ingress.push(rule_from(Vec::new(), svc.port));
    } else {
        let callers: Vec<Value> = svc.callers(cfg.shop).map(|c| pods(c.name)).collect();
        if !callers.is_empty() {
            ingress.push(rule_from(callers, svc.port));
        }
        let mut prometheus = pods("prometheus");
        prometheus["namespaceSelector"] =
            json!({"matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace(cfg)}});
        ingress.push(rule_from(vec![prometheus], svc.port));
    }
    let mut egress: Vec<Value> = svc
        .callees(cfg.shop)
        .map(|c| rule_to(c.name, c.port))
        .collect();
    if svc.database {
        egress.push(rule_to("postgres", POSTGRES_PORT));
    }
    // Traces leave for the configured receiver (phase 10) only.
    if let Some(p) = otlp_port {
        egress.push(json!({"to": otlp_peers(cfg), "ports": tcp(p)}));
    }
    v["spec"]["ingress"] = Value::Array(ingress);
    v["spec"]["egress"] = Value::Array(egress);
    Ok(v)
}

/// Where traces may go. The receiver's address when it is an IP; its
/// namespace when it is a cluster service name (`name.ns.svc…`);
/// otherwise (a SaaS tenant, a short in-cluster name) the cluster's pods
/// and public addresses, never the VPC, the nodes or the instance
/// metadata service (169.254.169.254), where a service's credentials
/// have no business going.
fn otlp_peers(cfg: &Config) -> Vec<Value> {
    let (host, ip) = cfg.apm.otlp_host().unwrap_or_default();
    if let Some(ip) = ip {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        return vec![json!({"ipBlock": {"cidr": format!("{ip}/{len}")}})];
    }
    let labels: Vec<&str> = host.split('.').collect();
    let in_cluster = host.ends_with(".svc") || host.ends_with(".svc.cluster.local");
    if in_cluster && labels.len() >= 3 {
        return vec![
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": labels[1]}}}),
        ];
    }
    vec![
        json!({"namespaceSelector": {}}),
        json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": [
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10", "127.0.0.0/8"
        ]}}),
    ]
}

/// The namespace-wide policies, then one per service, the database's
/// ingress from its owners: every flow follows the catalogue.
fn network_policies(cfg: &Config) -> anyhow::Result<String> {
    let text = render(POLICIES, &[("namespace", cfg.kube.namespace.clone())], &[])?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut v: Value = serde::Deserialize::deserialize(doc)?;
        if v["metadata"]["name"] == "postgres" {
            let owners: Vec<Value> = cfg
                .shop
                .iter()
                .filter(|s| s.database)
                .map(|s| pods(s.name))
                .collect();
            v["spec"]["ingress"] = json!([rule_from(owners, POSTGRES_PORT)]);
        }
        docs.push(v);
    }
    let at = docs.len().saturating_sub(1);
    let otlp_port = cfg.apm.otlp_port();
    for (i, svc) in cfg.shop.iter().enumerate() {
        docs.insert(at + i, service_policy(cfg, svc, otlp_port)?);
    }
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d)?);
    }
    Ok(out)
}

pub fn manifests(cfg: &Config) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let labels = manifests::owner_labels(cfg, PHASE);
    let ns = cfg.kube.namespace.clone();
    let rbac = render(
        RBAC,
        &[("namespace", ns), ("users_group", users_group(cfg))],
        &[],
    )?;
    let admission = render(
        POD_MANAGER_POLICY,
        &[
            ("namespace", cfg.kube.namespace.clone()),
            ("users_group", users_group(cfg)),
        ],
        &[],
    )?;
    let policies = network_policies(cfg)?;
    Ok(vec![
        (
            "10-rbac.yaml".into(),
            manifests::parse(&rbac, "10-rbac.yaml", &labels)?,
        ),
        (
            "15-pod-manager-policy.yaml".into(),
            manifests::parse(&admission, "15-pod-manager-policy.yaml", &labels)?,
        ),
        (
            "20-network-policies.yaml".into(),
            manifests::parse(&policies, "20-network-policies.yaml", &labels)?,
        ),
    ])
}

fn flat(cfg: &Config) -> anyhow::Result<Vec<Value>> {
    Ok(manifests(cfg)?.into_iter().flat_map(|(_, o)| o).collect())
}

/// A user name Kubernetes and a file name both take as is.
fn check_user(name: &str) -> Result<(), crate::UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::UsageError(format!(
            "user name {name:?}: use 1-64 of a-z A-Z 0-9 . _ - @, starting with a letter or digit"
        )))
    }
}

/// Makes a key and a certificate request for `name` in the users' group,
/// has the cluster sign it, and writes a kubeconfig for that user (0600).
/// The key never leaves this machine and is never printed.
pub async fn add_user(
    ctx: &Ctx,
    name: &str,
    days: u32,
    out: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let cfg = &ctx.config;
    check_user(name)?;
    if cfg.kube.mode == Mode::Off {
        return Err(crate::UsageError(
            "add-user needs a cluster: kubernetes.mode is \"off\"".into(),
        )
        .into());
    }
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => cfg
            .state_dir
            .join("users")
            .join(format!("{name}.kubeconfig")),
    };
    let cluster = ctx.kube().await?;
    // Without the binding the certificate would grant nothing.
    let binding = flat(cfg)?
        .into_iter()
        .find(|o| o["kind"] == "RoleBinding")
        .expect("rendered");
    if cluster.get(&binding).await?.is_none() {
        anyhow::bail!(
            "RoleBinding {}/pod-managers is absent: run eshop phase security apply first",
            cfg.kube.namespace
        );
    }
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, users_group(cfg));
    let csr = params.serialize_request(&key)?.pem()?;
    let mut labels = json!(manifests::owner_labels(cfg, PHASE));
    labels[crate::labels::USER] = json!(name);
    let request = format!(
        "eshop-{}-{}",
        cfg.project,
        name.to_lowercase().replace(['_', '@'], "-")
    );
    let cert = cluster
        .sign_client_certificate(
            &request,
            &csr,
            Duration::from_secs(u64::from(days) * 86_400),
            labels,
            Duration::from_secs(60),
        )
        .await?;
    write_user_kubeconfig(cfg, name, &cert, &key.serialize_pem(), &path)?;
    Ok(path)
}

/// The user's kubeconfig: the cluster entry of the one eshop uses (server
/// and CA), the user's certificate and key, a context in the shop's
/// namespace.
fn write_user_kubeconfig(
    cfg: &Config,
    name: &str,
    cert_pem: &str,
    key_pem: &str,
    path: &Path,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let k = &cfg.kube;
    let text = std::fs::read_to_string(&k.kubeconfig)
        .map_err(|e| anyhow::anyhow!("{}: {e}", k.kubeconfig.display()))?;
    let admin: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", k.kubeconfig.display()))?;
    let ctx_name = k
        .context
        .clone()
        .or_else(|| admin["current-context"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let find = |list: &str, n: &str| -> Option<serde_yaml::Value> {
        admin[list]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(n))
            .cloned()
    };
    let context = find("contexts", &ctx_name)
        .ok_or_else(|| anyhow::anyhow!("{}: no context {ctx_name:?}", k.kubeconfig.display()))?;
    let cluster_name = context["context"]["cluster"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cluster = find("clusters", &cluster_name).ok_or_else(|| {
        anyhow::anyhow!("{}: no cluster {cluster_name:?}", k.kubeconfig.display())
    })?;
    let user_ctx = format!("{name}@{cluster_name}");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [serde_json::to_value(&cluster)?],
        "users": [{"name": name, "user": {
            "client-certificate-data": b64.encode(cert_pem),
            "client-key-data": b64.encode(key_pem),
        }}],
        "contexts": [{"name": user_ctx, "context": {
            "cluster": cluster_name, "user": name, "namespace": k.namespace,
        }}],
        "current-context": user_ctx,
    });
    crate::util::write_atomic(path, serde_yaml::to_string(&doc)?.as_bytes(), 0o600)
}

/// What `eshop phases` says this phase does.
const ABOUT: &str = "RBAC (a pod-manager role, add-user with a signed certificate) and NetworkPolicies: default deny, only the shop's own flows";

impl Phase for Security {
    const INFO: Info = Info::new(6, PHASE, ABOUT, EVERYWHERE);

    fn skip(&self, cfg: &Config) -> Option<String> {
        super::needs_cluster(cfg)
    }
    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let cfg = &ctx.config;
        manifests::plan_on_cluster(ctx, PHASE, &flat(cfg)?).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let objects = flat(cfg)?;
        let cluster = ctx.kube().await?;
        Ok(Outcome {
            changed: manifests::apply(ctx, cluster, PHASE, &objects).await?,
        })
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        match cfg.kube.mode {
            Mode::Off => Ok(Outcome::default()),
            // Phase 5's destroy resets the nodes: the cluster goes with
            // everything in it, and it may already be gone.
            Mode::Bootstrap => Ok(Outcome::default()),
            Mode::Existing => {
                let cluster = ctx.kube().await?;
                Ok(Outcome {
                    changed: manifests::destroy(ctx, cluster, PHASE).await?,
                })
            }
        }
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        let cluster = ctx.kube().await?;
        let mut out = Vec::new();
        for o in flat(cfg)? {
            let present = cluster.get(&o).await?.is_some();
            out.push(Status {
                resource: crate::engines::kube::describe(&o),
                state: if present { "present" } else { "absent" }.into(),
                healthy: present,
            });
        }
        Ok(out)
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        manifests::write(out, &manifests(&ctx.config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert!(check_user("alice").is_ok() && check_user("bob.smith@example.com").is_ok());
        assert!(check_user("").is_err() && check_user("-x").is_err() && check_user("a b").is_err());
        assert!(check_user("../etc/passwd").is_err());
    }

    /// Traces go to the configured receiver, not anywhere on port 443
    /// (inventory holds the database's credentials).
    #[test]
    fn trace_egress_is_limited_to_the_receiver() {
        let peers = |url: &str| {
            let cfg = Config::parse_for(
                crate::shop::SHOP,
                &format!("[apm]\notlp_endpoint = \"{url}\"\n"),
                Path::new("eshop.toml"),
                Path::new("."),
                &std::collections::BTreeMap::<String, String>::new(),
                &crate::config::Overrides::default(),
            )
            .unwrap();
            serde_json::to_string(&otlp_peers(&cfg)).unwrap()
        };
        assert_eq!(
            peers("http://10.1.2.3:4318"),
            r#"[{"ipBlock":{"cidr":"10.1.2.3/32"}}]"#
        );
        assert_eq!(
            peers("http://collector.observability.svc:4318"),
            r#"[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"observability"}}}]"#
        );
        let saas = peers("https://abc12345.live.dynatrace.com");
        assert!(
            saas.contains(r#""cidr":"0.0.0.0/0""#)
                && saas.contains("169.254.0.0/16")
                && saas.contains("10.0.0.0/8"),
            "{saas}"
        );
    }
}
