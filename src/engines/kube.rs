//! Kubernetes through the kube crate: server-side apply with field manager
//! `eshop`, listing and deleting by eshop's labels, rollout waits and the
//! certificate requests of `add-user`. Objects are plain JSON rendered from
//! templates/, addressed through a fixed table of the kinds eshop manages,
//! so no discovery round-trips are needed.

use crate::util::{poll_until, Pace, TimedOut};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

pub const FIELD_MANAGER: &str = "eshop";

/// A kind eshop renders: enough to build its REST paths.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Every kind eshop manages, in apply order: what others depend on first
/// (namespace, identities, config), workloads after, what points at
/// workloads last. Destroy walks it backwards.
pub const KINDS: &[Kind] = &[
    // Phase 10's operator brings its own resource types first.
    k(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    k("v1", "Namespace", "namespaces", false),
    k("v1", "ServiceAccount", "serviceaccounts", true),
    k(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    k(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    k("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    k(
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    // What pod managers' pods may not do (phase 6), before they exist.
    k(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
    ),
    k(
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    ),
    k("v1", "ConfigMap", "configmaps", true),
    k("v1", "Secret", "secrets", true),
    k(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    k("v1", "Service", "services", true),
    k(
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    k("apps/v1", "StatefulSet", "statefulsets", true),
    k("apps/v1", "Deployment", "deployments", true),
    k("apps/v1", "DaemonSet", "daemonsets", true),
    k(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    k(
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    k("networking.k8s.io/v1", "Ingress", "ingresses", true),
    // Webhooks only once the Deployment serving them has rolled out, or
    // they would refuse what comes after.
    k(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
    ),
    k(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    // Custom resources last: their definitions and webhooks exist by now.
    k("dynatrace.com/v1beta3", "DynaKube", "dynakubes", true),
];

const fn k(
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        api_version,
        kind,
        plural,
        namespaced,
    }
}

pub fn kind_of(obj: &Value) -> anyhow::Result<&'static Kind> {
    let av = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    KINDS
        .iter()
        .find(|k| k.api_version == av && k.kind == kind)
        .ok_or_else(|| {
            anyhow::anyhow!("eshop does not manage {av} {kind} (rendered by a template?)")
        })
}

/// Where an object lives, for messages and comparisons: `Kind ns/name`.
pub fn describe(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or("?");
    let name = obj["metadata"]["name"].as_str().unwrap_or("?");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn resource(k: &Kind) -> ApiResource {
    let (group, version) = match k.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", k.api_version),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, k.kind), k.plural)
}

/// The API said the object is not there.
fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub struct Cluster {
    client: Client,
    /// For messages: which API server.
    pub server: String,
}

/// Connects with `context` of `kubeconfig` (None: its current context).
/// Reads the file only; the first request is the caller's.
pub async fn connect(kubeconfig: &Path, context: Option<&str>) -> anyhow::Result<Cluster> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| anyhow::anyhow!("kubeconfig {}: {e}", kubeconfig.display()))?;
    let opts = kube::config::KubeConfigOptions {
        context: context.map(str::to_owned),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "kubeconfig {}{}: {e}",
                kubeconfig.display(),
                context.map(|c| format!(" context {c}")).unwrap_or_default()
            )
        })?;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| anyhow::anyhow!("kubernetes client for {server}: {e}"))?;
    Ok(Cluster { client, server })
}

impl Cluster {
    fn api(&self, k: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = resource(k);
        match (k.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            (true, None) => Api::all_with(self.client.clone(), &ar),
            (false, _) => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn api_for(&self, obj: &Value) -> anyhow::Result<(Api<DynamicObject>, String)> {
        let k = kind_of(obj)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{} has no metadata.name", describe(obj)))?
            .to_owned();
        Ok((self.api(k, obj["metadata"]["namespace"].as_str()), name))
    }

    /// The API server's version: proves the kubeconfig works.
    pub async fn version(&self) -> anyhow::Result<String> {
        let v = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| anyhow::anyhow!("kubernetes API {}: {e}", self.server))?;
        Ok(v.git_version)
    }

    pub async fn get(&self, obj: &Value) -> anyhow::Result<Option<Value>> {
        let (api, name) = self.api_for(obj)?;
        match api.get(&name).await {
            Ok(o) => Ok(Some(serde_json::to_value(o)?)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: get: {e}", describe(obj))),
        }
    }

    /// Server-side apply as `eshop`, taking over fields another manager
    /// set (eshop's rendering is the truth for what it renders). With
    /// `dry_run`, the API server computes the result and stores nothing.
    pub async fn apply(&self, obj: &Value, dry_run: bool) -> anyhow::Result<Value> {
        let (api, name) = self.api_for(obj)?;
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        pp.dry_run = dry_run;
        let o = api
            .patch(&name, &pp, &Patch::Apply(obj))
            .await
            .map_err(|e| anyhow::anyhow!("{}: apply: {e}", describe(obj)))?;
        Ok(serde_json::to_value(o)?)
    }

    /// Creates `obj` unless it exists; true when it created it. For what
    /// must never be re-applied (a generated password).
    pub async fn create_if_absent(&self, obj: &Value) -> anyhow::Result<bool> {
        let (api, _) = self.api_for(obj)?;
        let o: DynamicObject = serde_json::from_value(obj.clone())?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match api.create(&pp, &o).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(anyhow::anyhow!("{}: create: {e}", describe(obj))),
        }
    }

    /// Every object of `kind` carrying all of `labels`, in any namespace.
    pub async fn list(&self, kind: &Kind, labels: &[(&str, &str)]) -> anyhow::Result<Vec<Value>> {
        let sel: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let lp = ListParams::default().labels(&sel.join(","));
        let list = match self.api(kind, None).list(&lp).await {
            Ok(l) => l,
            // A custom resource whose definition is not installed: none.
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::anyhow!("{}: list: {e}", kind.plural)),
        };
        list.items
            .into_iter()
            .map(|o| {
                let mut v = serde_json::to_value(o)?;
                // Lists leave apiVersion/kind off their items.
                v["apiVersion"] = json!(kind.api_version);
                v["kind"] = json!(kind.kind);
                Ok(v)
            })
            .collect()
    }

    /// Deletes; true if it was there. Dependents go in the background.
    pub async fn delete(&self, obj: &Value) -> anyhow::Result<bool> {
        let (api, name) = self.api_for(obj)?;
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(anyhow::anyhow!("{}: delete: {e}", describe(obj))),
        }
    }

    /// Waits until a Deployment, StatefulSet or DaemonSet runs its current
    /// generation on every replica, calling `progress` with what it sees.
    pub async fn wait_rollout(
        &self,
        obj: &Value,
        timeout: Duration,
        progress: impl Fn(&str),
    ) -> anyhow::Result<()> {
        let last = std::sync::Mutex::new(String::new());
        let waited = poll_until(
            timeout,
            Pace::Backoff(Duration::from_millis(200), Duration::from_secs(3)),
            &describe(obj),
            || async {
                let live = self.get(obj).await?.ok_or_else(|| {
                    anyhow::anyhow!("{} disappeared while rolling out", describe(obj))
                })?;
                let (done, what) = rollout(&live);
                progress(&what);
                *last.lock().unwrap_or_else(|e| e.into_inner()) = what;
                Ok(done.then_some(()))
            },
        )
        .await;
        match waited {
            Err(e) if e.is::<TimedOut>() => {
                let what = last.into_inner().unwrap_or_else(|e| e.into_inner());
                anyhow::bail!(
                    "{} did not finish rolling out in {}s: {what} (kubectl -n {} describe {} {})",
                    describe(obj),
                    timeout.as_secs(),
                    obj["metadata"]["namespace"].as_str().unwrap_or("default"),
                    obj["kind"].as_str().unwrap_or("").to_lowercase(),
                    obj["metadata"]["name"].as_str().unwrap_or("")
                )
            }
            other => other,
        }
    }

    /// Submits and approves a client certificate request, returning the
    /// signed certificate (PEM). The request is deleted afterwards: it has
    /// served its purpose and holds nothing secret.
    pub async fn sign_client_certificate(
        &self,
        name: &str,
        csr_pem: &str,
        expiration: Duration,
        labels: Value,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let kind = KINDS_CSR;
        let api = self.api(&kind, None);
        let obj = json!({
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "request": b64.encode(csr_pem),
                "signerName": "kubernetes.io/kube-apiserver-client",
                "expirationSeconds": expiration.as_secs(),
                "usages": ["client auth"],
            }
        });
        let what = format!("CertificateSigningRequest {name}");
        // A leftover request of the same name (an interrupted run) would
        // carry another key: start over.
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if not_found(&e) => {}
            Err(e) => anyhow::bail!("{what}: delete: {e}"),
        }
        let o: DynamicObject = serde_json::from_value(obj)?;
        api.create(&PostParams::default(), &o)
            .await
            .map_err(|e| anyhow::anyhow!("{what}: create: {e}"))?;
        let mut approval = serde_json::to_value(
            api.get(name)
                .await
                .map_err(|e| anyhow::anyhow!("{what}: get: {e}"))?,
        )?;
        approval["apiVersion"] = json!(kind.api_version);
        approval["kind"] = json!(kind.kind);
        approval["status"]["conditions"] = json!([{
            "type": "Approved",
            "status": "True",
            "reason": "EshopAddUser",
            "message": "approved by eshop phase security add-user",
        }]);
        api.replace_subresource("approval", name, &PostParams::default(), &approval)
            .await
            .map_err(|e| anyhow::anyhow!("{what}: approve: {e}"))?;
        let cert = poll_until(
            timeout,
            Pace::Every(Duration::from_millis(300)),
            &format!("{what}: approved but not signed"),
            || async {
                let o = serde_json::to_value(
                    api.get(name)
                        .await
                        .map_err(|e| anyhow::anyhow!("{what}: get: {e}"))?,
                )?;
                match o["status"]["certificate"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                {
                    Some(c) => Ok(Some(b64.decode(c).map_err(|e| {
                        anyhow::anyhow!("{what}: certificate is not base64: {e}")
                    })?)),
                    None => Ok(None),
                }
            },
        )
        .await?;
        let _ = api.delete(name, &DeleteParams::default()).await;
        String::from_utf8(cert).map_err(|e| anyhow::anyhow!("{what}: certificate is not text: {e}"))
    }
}

const KINDS_CSR: Kind = k(
    "certificates.k8s.io/v1",
    "CertificateSigningRequest",
    "certificatesigningrequests",
    false,
);

/// Whether a workload runs its current generation everywhere, and a short
/// account of where it stands.
pub fn rollout(live: &Value) -> (bool, String) {
    let kind = live["kind"].as_str().unwrap_or_default();
    let gen = live["metadata"]["generation"].as_i64().unwrap_or(0);
    let s = &live["status"];
    let observed = s["observedGeneration"].as_i64().unwrap_or(-1);
    let n = |k: &str| s[k].as_i64().unwrap_or(0);
    if observed < gen {
        return (
            false,
            "waiting for the controller to see the new spec".into(),
        );
    }
    match kind {
        "Deployment" => {
            let want = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let (updated, available, total) =
                (n("updatedReplicas"), n("availableReplicas"), n("replicas"));
            let done = updated >= want && available >= want && total == updated;
            (
                done,
                format!("{updated}/{want} updated, {available} available"),
            )
        }
        "StatefulSet" => {
            let want = live["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = n("readyReplicas");
            let same_rev =
                s["updateRevision"].is_null() || s["currentRevision"] == s["updateRevision"];
            let done =
                ready >= want && n("updatedReplicas").max(n("currentReplicas")) >= want && same_rev;
            (done, format!("{ready}/{want} ready"))
        }
        "DaemonSet" => {
            let want = n("desiredNumberScheduled");
            let ready = n("numberReady");
            let updated = n("updatedNumberScheduled");
            (
                ready >= want && updated >= want,
                format!("{ready}/{want} ready"),
            )
        }
        _ => (true, "no rollout".into()),
    }
}

/// The parts of an object its manifest speaks for: what plan compares
/// between a dry-run apply and the live object.
pub fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendered_kind_is_known_and_namespaces_come_first() {
        // Only resource definitions may precede namespaces.
        let ns = KINDS.iter().position(|k| k.kind == "Namespace").unwrap();
        assert!(KINDS[..ns]
            .iter()
            .all(|k| k.kind == "CustomResourceDefinition"));
        // Custom resources after every definition and webhook.
        assert_eq!(KINDS.last().unwrap().kind, "DynaKube");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}});
        assert_eq!(kind_of(&d).unwrap().plural, "deployments");
        assert!(kind_of(&json!({"apiVersion": "v1", "kind": "Pod"})).is_err());
    }

    #[test]
    fn rollouts_wait_for_the_current_generation_on_every_replica() {
        let d = |gen: i64, obs: i64, upd: i64, avail: i64, total: i64| {
            json!({"kind": "Deployment", "metadata": {"generation": gen}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": obs, "updatedReplicas": upd, "availableReplicas": avail, "replicas": total}})
        };
        assert!(!rollout(&d(2, 1, 2, 2, 2)).0, "old generation observed");
        assert!(!rollout(&d(2, 2, 1, 2, 3)).0, "one old pod left");
        assert!(!rollout(&d(2, 2, 2, 1, 2)).0, "not available yet");
        assert!(rollout(&d(2, 2, 2, 2, 2)).0);
    }
}
