//! What the Kubernetes phases share: templates rendered to objects that
//! carry eshop's ownership labels, and the Phase contract over a set of
//! them — plan by dry-run server-side apply, apply in dependency order
//! with rollout waits, prune what is no longer rendered, destroy by label.

use super::{Action, Change, Ctx};
use crate::config::kube::Mode;
use crate::config::Config;
use crate::engines::kube::{self as k8s, Cluster, Kind, KINDS};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Objects eshop creates once and never re-applies: a Secret holds a
/// generated password that must not change under a running database.
/// Secrets whose value comes from the environment (tokens) are applied
/// every time instead, so a rotated token arrives.
fn create_only(obj: &Value) -> bool {
    obj["kind"] == "Secret" && obj["metadata"]["annotations"]["eshop/from-environment"] != "true"
}

fn is_workload(obj: &Value) -> bool {
    matches!(
        obj["kind"].as_str(),
        Some("Deployment" | "StatefulSet" | "DaemonSet")
    )
}

/// eshop's ownership labels for a phase's objects.
pub fn owner_labels(cfg: &Config, phase: &str) -> BTreeMap<&'static str, String> {
    let mut l = crate::labels::owner(&cfg.project, cfg.target.as_str(), phase);
    l.insert("app.kubernetes.io/managed-by", "eshop".to_owned());
    l
}

fn selector(cfg: &Config, phase: &str) -> Vec<(&'static str, String)> {
    owner_labels(cfg, phase)
        .into_iter()
        .filter(|(k, _)| k.starts_with("eshop/"))
        .collect()
}

/// Parses a rendered multi-document YAML file into objects, stamping each
/// with eshop's labels (and the claims a StatefulSet will create, so they
/// are found by label too).
pub fn parse(
    text: &str,
    source: &str,
    labels: &BTreeMap<&str, String>,
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("{source}: rendered YAML does not parse: {e}"))?;
        if v.is_null() {
            continue;
        }
        let mut v = v;
        stamp(&mut v, labels);
        // get_mut, not indexing: IndexMut would add the keys it looks for.
        let claims = v
            .get_mut("spec")
            .and_then(|s| s.get_mut("volumeClaimTemplates"))
            .and_then(Value::as_array_mut);
        if let Some(claims) = claims {
            for c in claims {
                stamp(c, labels);
            }
        }
        k8s::kind_of(&v).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        out.push(v);
    }
    Ok(out)
}

/// A ConfigMap carrying files (data key = file name), with eshop's labels.
pub fn config_map(
    name: &str,
    namespace: &str,
    data: &BTreeMap<&str, String>,
    labels: &BTreeMap<&str, String>,
) -> Value {
    let mut v = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    });
    stamp(&mut v, labels);
    v
}

fn stamp(v: &mut Value, labels: &BTreeMap<&str, String>) {
    if !v["metadata"].is_object() {
        v["metadata"] = json!({});
    }
    let meta = &mut v["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, val) in labels {
        meta["labels"][*k] = json!(val);
    }
}

// --- NetworkPolicy rules, for the phases that write policies ---------------

/// Pods named `app` (the services' and the database's label).
pub fn pods(app: &str) -> Value {
    json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": app}}})
}

pub fn tcp(port: u16) -> Value {
    json!([{"protocol": "TCP", "port": port}])
}

/// An egress rule: to the pods named `app`, on `port`.
pub fn rule_to(app: &str, port: u16) -> Value {
    json!({"to": [pods(app)], "ports": tcp(port)})
}

/// An ingress rule: from these peers (everyone when empty), on `port`.
pub fn rule_from(peers: Vec<Value>, port: u16) -> Value {
    if peers.is_empty() {
        json!({"ports": tcp(port)})
    } else {
        json!({"from": peers, "ports": tcp(port)})
    }
}

/// Objects in apply order: by kind (KINDS), then as rendered.
fn ordered(objects: &[Value]) -> Vec<&Value> {
    let rank = |o: &Value| {
        KINDS
            .iter()
            .position(|k| {
                Some(k.kind) == o["kind"].as_str()
                    && Some(k.api_version) == o["apiVersion"].as_str()
            })
            .unwrap_or(usize::MAX)
    };
    let mut v: Vec<&Value> = objects.iter().collect();
    v.sort_by_key(|o| rank(o)); // stable: rendered order within a kind
    v
}

fn key(o: &Value) -> (String, String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        s(&o["apiVersion"]),
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

/// What the cluster has of this phase that `objects` no longer renders.
async fn strays(
    ctx: &Ctx,
    cluster: &Cluster,
    phase: &str,
    objects: &[Value],
) -> anyhow::Result<Vec<Value>> {
    let cfg = &ctx.config;
    let want: std::collections::BTreeSet<_> = objects.iter().map(key).collect();
    let sel = selector(cfg, phase);
    let sel: Vec<(&str, &str)> = sel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut out = Vec::new();
    for kind in KINDS {
        for o in cluster.list(kind, &sel).await? {
            if want.contains(&key(&o)) || kept_with_data(kind) {
                continue;
            }
            // Deleting a namespace deletes the claims in it, which only
            // destroy --purge-data may do: a changed kubernetes.namespace
            // stops here, naming the old one.
            if kind.kind == "Namespace" {
                let old = o["metadata"]["name"].as_str().unwrap_or_default();
                anyhow::bail!(
                    "namespace {old} holds this project's shop (and its database's claims) but kubernetes.namespace is now {:?}: eshop does not move or delete it on its own. Set kubernetes.namespace back to {old:?}; to start over elsewhere, first remove the old shop and its data with that setting (eshop phase kubernetes destroy --purge-data)",
                    cfg.kube.namespace
                );
            }
            out.push(o);
        }
    }
    Ok(out)
}

/// eshop adopts no namespace: one that exists without this project's
/// labels (someone else's, or made by hand) is refused before anything is
/// applied, since apply would stamp eshop's labels and restricted Pod
/// Security on it and destroy --purge-data would delete it.
async fn refuse_foreign_namespaces(
    cluster: &Cluster,
    cfg: &Config,
    objects: &[Value],
) -> anyhow::Result<()> {
    for o in objects.iter().filter(|o| o["kind"] == "Namespace") {
        let Some(live) = cluster.get(o).await? else {
            continue;
        };
        let labels = &live["metadata"]["labels"];
        let ours = labels[crate::labels::PROJECT] == cfg.project.as_str()
            && labels[crate::labels::TARGET] == cfg.target.as_str();
        if !ours {
            anyhow::bail!(
                "namespace {} exists and is not eshop's for project {} (no matching {} label): eshop does not adopt it; choose another kubernetes.namespace",
                live["metadata"]["name"].as_str().unwrap_or_default(),
                cfg.project,
                crate::labels::PROJECT
            );
        }
    }
    Ok(())
}

/// Claims are never pruned: they hold the database. Only `destroy
/// --purge-data` removes them.
fn kept_with_data(kind: &Kind) -> bool {
    kind.kind == "PersistentVolumeClaim"
}

/// The top-level fields where two objects differ, for plan's reasons.
fn differing(a: &Value, b: &Value) -> String {
    let mut fields: Vec<String> = Vec::new();
    if let (Some(x), Some(y)) = (a.as_object(), b.as_object()) {
        for k in x.keys().chain(y.keys()) {
            if x.get(k) != y.get(k) && !fields.contains(k) {
                fields.push(k.clone());
            }
        }
    }
    if fields.is_empty() {
        "differs".into()
    } else {
        format!("{} differ(s)", fields.join(", "))
    }
}

/// Bootstrap mode before phase 5 has written the kubeconfig: there is no
/// cluster to ask (plan) and none holding anything of eshop's (destroy).
pub fn cluster_pending(cfg: &Config) -> bool {
    cfg.kube.mode == Mode::Bootstrap && !cfg.kube.kubeconfig.exists()
}

/// A phase's plan: against the cluster, or everything to create while the
/// cluster does not exist yet.
pub async fn plan_on_cluster(
    ctx: &Ctx,
    phase: &str,
    objects: &[Value],
) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    if cluster_pending(cfg) {
        return Ok(plan_without_cluster(objects));
    }
    let cluster = ctx.kube().await?;
    plan(ctx, cluster, phase, objects).await
}

/// The plan while the cluster does not exist yet: everything to create.
pub fn plan_without_cluster(objects: &[Value]) -> Vec<Change> {
    objects
        .iter()
        .map(|o| {
            Change::new(
                k8s::describe(o),
                Action::Create,
                "the cluster is not bootstrapped yet",
            )
        })
        .collect()
}

pub async fn plan(
    ctx: &Ctx,
    cluster: &Cluster,
    phase: &str,
    objects: &[Value],
) -> anyhow::Result<Vec<Change>> {
    refuse_foreign_namespaces(cluster, &ctx.config, objects).await?;
    let mut out = Vec::new();
    for o in ordered(objects) {
        let what = k8s::describe(o);
        let change = match cluster.get(o).await? {
            None => Change::new(what, Action::Create, "absent"),
            Some(_) if create_only(o) => {
                Change::new(what, Action::NoOp, "created once, never re-applied")
            }
            Some(live) => {
                let would = cluster.apply(o, true).await?;
                let (w, l) = (k8s::comparable(&would), k8s::comparable(&live));
                if w == l {
                    Change::new(what, Action::NoOp, "as rendered")
                } else {
                    Change::new(what, Action::Update, differing(&w, &l))
                }
            }
        };
        out.push(change);
    }
    for s in strays(ctx, cluster, phase, objects).await? {
        out.push(Change::new(
            k8s::describe(&s),
            Action::Delete,
            "no longer rendered",
        ));
    }
    Ok(out)
}

/// Applies every object in order, waiting for each workload to roll out
/// before the next (a service starts once the services it calls serve),
/// then prunes.
/// Returns how many objects were created, changed or deleted.
pub async fn apply(
    ctx: &Ctx,
    cluster: &Cluster,
    phase: &str,
    objects: &[Value],
) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    refuse_foreign_namespaces(cluster, cfg, objects).await?;
    // Strays first, too: a refused namespace change stops before anything
    // is applied (they are still deleted last, below).
    let strays = strays(ctx, cluster, phase, objects).await?;
    let mut changed = 0;
    for o in ordered(objects) {
        let what = k8s::describe(o);
        if create_only(o) {
            if cluster.create_if_absent(o).await? {
                ctx.ui.info(phase, &format!("created {what}"));
                changed += 1;
            }
            continue;
        }
        let before = cluster.get(o).await?;
        let after = cluster.apply(o, false).await?;
        let rv = |v: &Value| v["metadata"]["resourceVersion"].clone();
        match &before {
            None => {
                ctx.ui.info(phase, &format!("created {what}"));
                changed += 1;
            }
            Some(b) if rv(b) != rv(&after) => {
                ctx.ui.info(phase, &format!("updated {what}"));
                changed += 1;
            }
            Some(_) => ctx.ui.debug(phase, &format!("{what} unchanged")),
        }
        if is_workload(o) {
            let p = ctx.ui.spinner(phase, &format!("{what}: rolling out"));
            cluster
                .wait_rollout(o, cfg.kube.rollout_timeout, |s| {
                    p.set_message(format!("{what}: {s}"))
                })
                .await?;
            p.finish(&format!("{what} rolled out"));
        }
    }
    for s in strays.iter().rev() {
        if cluster.delete(s).await? {
            ctx.ui.info(
                phase,
                &format!("pruned {} (no longer rendered)", k8s::describe(s)),
            );
            changed += 1;
        }
    }
    Ok(changed)
}

/// Deletes everything labelled for this phase, dependents first. Without
/// `purge_data` the database's claims stay, and so does their namespace.
pub async fn destroy(ctx: &Ctx, cluster: &Cluster, phase: &str) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let sel = selector(cfg, phase);
    let sel: Vec<(&str, &str)> = sel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut kept = Vec::new();
    let mut removed = 0;
    for kind in KINDS.iter().rev() {
        for o in cluster.list(kind, &sel).await? {
            let keep_ns = kind.kind == "Namespace" && !kept.is_empty();
            if (kept_with_data(kind) && !ctx.purge_data) || keep_ns {
                kept.push(k8s::describe(&o));
                continue;
            }
            if cluster.delete(&o).await? {
                ctx.ui
                    .info(phase, &format!("deleted {}", k8s::describe(&o)));
                removed += 1;
            }
        }
    }
    if !kept.is_empty() {
        ctx.ui.info(
            phase,
            &format!(
                "kept {} (data; use --purge-data to delete it)",
                kept.join(", ")
            ),
        );
    }
    Ok(removed)
}

/// One status line per workload: its rollout.
pub async fn status(cluster: &Cluster, objects: &[Value]) -> anyhow::Result<Vec<super::Status>> {
    let mut out = Vec::new();
    for o in objects.iter().filter(|o| is_workload(o)) {
        let what = k8s::describe(o);
        out.push(match cluster.get(o).await? {
            None => super::Status {
                resource: what,
                state: "absent".into(),
                healthy: false,
            },
            Some(live) => {
                let (done, s) = k8s::rollout(&live);
                super::Status {
                    resource: what,
                    state: s,
                    healthy: done,
                }
            }
        });
    }
    Ok(out)
}

/// Writes objects as YAML files, one per source template, for review.
pub fn write(
    out: &std::path::Path,
    files: &[(String, Vec<Value>)],
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, objects) in files {
        let mut text = String::new();
        for o in objects {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(o)?);
        }
        let p = out.join(name);
        std::fs::write(&p, text)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_stamps_labels_on_objects_and_claims_and_rejects_unknown_kinds() {
        let labels = BTreeMap::from([("eshop/project", "p".to_owned())]);
        let objs = parse(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  volumeClaimTemplates:\n  - metadata: {name: data}\n---\n",
            "t.yaml",
            &labels,
        )
        .unwrap();
        assert_eq!(objs.len(), 1);
        let svc = parse(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n",
            "t.yaml",
            &labels,
        )
        .unwrap();
        assert_eq!(svc[0]["spec"], json!({}), "parsing must not add fields");
        assert_eq!(objs[0]["metadata"]["labels"]["eshop/project"], "p");
        assert_eq!(
            objs[0]["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"]["eshop/project"],
            "p"
        );
        assert!(parse(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
            "t.yaml",
            &labels
        )
        .is_err());
    }
}
