//! Phase 6 security: RBAC and NetworkPolicies for the shop's namespace
//! (templates/security), and `add-user`, which gives a person a
//! certificate-based kubeconfig limited to pods.
//!
//! The service accounts are phase 5's (a Deployment cannot start before
//! its account exists); none of them may reach the API: no token is
//! mounted and no role is bound to them.

use super::manifests;
use super::{BoxFut, Change, Ctx, Outcome, Phase, Status};
use crate::config::kube::Mode;
use crate::config::{Config, Target};
use crate::render::render_pairs as render;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Security;

pub const PHASE: &str = "security";

const RBAC: &str = include_str!("../../templates/security/10-rbac.yaml");
const POLICIES: &str = include_str!("../../templates/security/20-network-policies.yaml");

/// The group `add-user` certificates name; the Role is bound to it.
pub fn users_group(cfg: &Config) -> String {
    format!("eshop-{}-pod-managers", cfg.project)
}

/// Where Prometheus runs (phase 7 on Kubernetes): the shop's namespace.
pub fn monitoring_namespace(cfg: &Config) -> String {
    cfg.kube.namespace.clone()
}

pub fn manifests(cfg: &Config) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let labels = manifests::owner_labels(cfg, PHASE);
    let ns = cfg.kube.namespace.clone();
    let rbac = render(
        RBAC,
        &[("namespace", ns.clone()), ("users_group", users_group(cfg))],
        &[],
    )?;
    // Traces leave for the configured receiver (phase 10), wherever it is.
    let otlp_port = cfg.apm.otlp_port();
    let policies = render(
        POLICIES,
        &[
            ("namespace", ns),
            ("monitoring_namespace", monitoring_namespace(cfg)),
            (
                "otlp_port",
                otlp_port.map(|p| p.to_string()).unwrap_or_default(),
            ),
        ],
        if otlp_port.is_some() { &["otlp"] } else { &[] },
    )?;
    Ok(vec![
        (
            "10-rbac.yaml".into(),
            manifests::parse(&rbac, "10-rbac.yaml", &labels)?,
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
    let cluster = super::kubernetes::cluster(cfg).await?;
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
    labels["eshop/user"] = json!(name);
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
    super::kubernetes::write_private(path, &serde_yaml::to_string(&doc)?)
}

impl Phase for Security {
    fn number(&self) -> u8 {
        6
    }
    fn name(&self) -> &'static str {
        PHASE
    }
    fn about(&self) -> &'static str {
        "RBAC (a pod-manager role, add-user with a signed certificate) and NetworkPolicies: default deny, only the shop's own flows"
    }
    fn targets(&self) -> &'static [Target] {
        &[Target::Local, Target::Aws]
    }
    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>> {
        Box::pin(async move {
            let cfg = &ctx.config;
            if cfg.kube.mode == Mode::Off {
                return Ok(Vec::new());
            }
            manifests::plan_on_cluster(cfg, PHASE, &flat(cfg)?).await
        })
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
            let cfg = &ctx.config;
            if cfg.kube.mode == Mode::Off {
                super::kubernetes::off_note(ctx, PHASE);
                return Ok(Outcome::default());
            }
            let objects = flat(cfg)?;
            let cluster = super::kubernetes::cluster(cfg).await?;
            Ok(Outcome {
                changed: manifests::apply(ctx, &cluster, PHASE, &objects).await?,
            })
        })
    }
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
            let cfg = &ctx.config;
            match cfg.kube.mode {
                Mode::Off => Ok(Outcome::default()),
                // Phase 5's destroy resets the nodes: the cluster goes with
                // everything in it, and it may already be gone.
                Mode::Bootstrap => Ok(Outcome::default()),
                Mode::Existing => {
                    let cluster = super::kubernetes::cluster(cfg).await?;
                    Ok(Outcome {
                        changed: manifests::destroy(ctx, &cluster, PHASE).await?,
                    })
                }
            }
        })
    }
    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>> {
        Box::pin(async move {
            let cfg = &ctx.config;
            if cfg.kube.mode == Mode::Off {
                return Ok(Vec::new());
            }
            let cluster = super::kubernetes::cluster(cfg).await?;
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
        })
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
}
