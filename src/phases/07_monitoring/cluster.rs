//! Monitoring on the shop's cluster: Prometheus discovering the shop's
//! pods (its own Role: get/list/watch pods in the namespace, nothing
//! else), kube-state-metrics for replicas vs autoscalers and restarts,
//! Grafana with a generated admin password, and NetworkPolicies for all
//! three, applied like phase 5's objects (server-side apply, prune, by
//! label).

use super::{DASHBOARDS_YML, DATASOURCE_YML, NAME, RULES_YML, SERVICES_DASHBOARD};
use crate::config::Config;
use crate::phases::{manifests, Change, Ctx, Outcome, Status};
use crate::render::render_pairs as render;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const KUBE_DASHBOARD: &str =
    include_str!("../../../templates/monitoring/dashboards/eshop-kubernetes.json");
const KUBE_RULES_YML: &str = include_str!("../../../templates/monitoring/rules-kubernetes.yml");
const KUBE_PROMETHEUS_YML: &str =
    include_str!("../../../templates/monitoring/kubernetes/prometheus.yml");
const KUBE_PROMETHEUS: &str =
    include_str!("../../../templates/monitoring/kubernetes/70-prometheus.yaml");
const KUBE_KSM: &str =
    include_str!("../../../templates/monitoring/kubernetes/71-kube-state-metrics.yaml");
const KUBE_GRAFANA: &str = include_str!("../../../templates/monitoring/kubernetes/72-grafana.yaml");
const KUBE_POLICIES: &str =
    include_str!("../../../templates/monitoring/kubernetes/73-network-policies.yaml");

/// The in-cluster configuration: pod discovery in the shop's namespace,
/// keeping the catalogue's services' "http" ports.
pub fn kube_prometheus_yml(cfg: &Config) -> anyhow::Result<String> {
    let text = render(
        KUBE_PROMETHEUS_YML,
        &[
            ("scrape_interval", format!("{}s", cfg.scrape_interval_secs)),
            ("namespace", cfg.kube.namespace.clone()),
        ],
        &[],
    )?;
    // The keep-regex goes in as data (a regex is not a template value).
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let keep = doc["scrape_configs"][0]["relabel_configs"][0]
        .get_mut("regex")
        .ok_or_else(|| anyhow::anyhow!("kubernetes/prometheus.yml: no keep regex to fill"))?;
    *keep = format!("({});http", crate::shop::names(cfg.shop).join("|")).into();
    Ok(serde_yaml::to_string(&doc)?)
}

fn by_tag(image: &str) -> bool {
    !image.contains("@sha256:")
}

/// Phase 7's objects on Kubernetes, per file. `grafana_password` None
/// renders a placeholder (for review); apply generates one, and the
/// Secret is created once and never re-applied.
pub fn kube_manifests(
    cfg: &Config,
    grafana_password: Option<&str>,
) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let labels = manifests::owner_labels(cfg, NAME);
    let ns = cfg.kube.namespace.clone();
    let storage_class = cfg.kube.storage_class.clone().unwrap_or_default();
    let mut files = Vec::new();

    let prometheus_data = BTreeMap::from([
        ("prometheus.yml", kube_prometheus_yml(cfg)?),
        ("rules.yml", RULES_YML.to_owned()),
        ("rules-kubernetes.yml", KUBE_RULES_YML.to_owned()),
    ]);
    let hash_of = |data: &BTreeMap<&str, String>| {
        let parts: Vec<&str> = data.values().map(String::as_str).collect();
        crate::util::short_hash(&parts)
    };
    let mut flags = Vec::new();
    if !storage_class.is_empty() {
        flags.push("storage_class");
    }
    if by_tag(&cfg.prometheus_image) {
        flags.push("prometheus_by_tag");
    }
    let text = render(
        KUBE_PROMETHEUS,
        &[
            ("namespace", ns.clone()),
            ("storage_class", storage_class),
            ("prometheus_image", cfg.prometheus_image.clone()),
            ("config_hash", hash_of(&prometheus_data)),
        ],
        &flags,
    )?;
    let mut objects = manifests::parse(&text, "70-prometheus.yaml", &labels)?;
    objects.insert(
        0,
        manifests::config_map("prometheus", &ns, &prometheus_data, &labels),
    );
    files.push(("70-prometheus.yaml".to_owned(), objects));

    if !cfg.kube_state_metrics_image.is_empty() {
        let text = render(
            KUBE_KSM,
            &[
                ("namespace", ns.clone()),
                (
                    "kube_state_metrics_image",
                    cfg.kube_state_metrics_image.clone(),
                ),
            ],
            if by_tag(&cfg.kube_state_metrics_image) {
                &["ksm_by_tag"]
            } else {
                &[]
            },
        )?;
        files.push((
            "71-kube-state-metrics.yaml".to_owned(),
            manifests::parse(&text, "71-kube-state-metrics.yaml", &labels)?,
        ));
    }

    if !cfg.grafana_image.is_empty() {
        let provisioning = BTreeMap::from([
            (
                "datasource.yml",
                render(
                    DATASOURCE_YML,
                    &[("prometheus_url", format!("http://prometheus.{ns}.svc:9090"))],
                    &[],
                )?,
            ),
            ("dashboards.yml", DASHBOARDS_YML.to_owned()),
        ]);
        let dashboards = BTreeMap::from([
            ("eshop-services.json", SERVICES_DASHBOARD.to_owned()),
            ("eshop-kubernetes.json", KUBE_DASHBOARD.to_owned()),
        ]);
        let mut all = provisioning.clone();
        all.extend(dashboards.clone());
        let text = render(
            KUBE_GRAFANA,
            &[
                ("namespace", ns.clone()),
                ("grafana_image", cfg.grafana_image.clone()),
                (
                    "grafana_password",
                    grafana_password.unwrap_or("GENERATED-AT-APPLY").to_owned(),
                ),
                ("config_hash", hash_of(&all)),
            ],
            if by_tag(&cfg.grafana_image) {
                &["grafana_by_tag"]
            } else {
                &[]
            },
        )?;
        let mut objects = vec![
            manifests::config_map("grafana-provisioning", &ns, &provisioning, &labels),
            manifests::config_map("grafana-dashboards", &ns, &dashboards, &labels),
        ];
        objects.extend(manifests::parse(&text, "72-grafana.yaml", &labels)?);
        files.push(("72-grafana.yaml".to_owned(), objects));
    }

    let text = render(KUBE_POLICIES, &[("namespace", ns)], &[])?;
    let mut policies = manifests::parse(&text, "73-network-policies.yaml", &labels)?;
    // Prometheus scrapes every service of the catalogue on its port.
    for p in policies.iter_mut() {
        if p["metadata"]["name"] == "prometheus" {
            let egress = p["spec"]["egress"].as_array_mut().ok_or_else(|| {
                anyhow::anyhow!("73-network-policies.yaml: prometheus has no egress list")
            })?;
            for (i, svc) in cfg.shop.iter().enumerate() {
                egress.insert(i, manifests::rule_to(svc.name, svc.port));
            }
        }
    }
    files.push(("73-network-policies.yaml".to_owned(), policies));
    Ok(files)
}

fn kube_objects(cfg: &Config, grafana_password: Option<&str>) -> anyhow::Result<Vec<Value>> {
    Ok(kube_manifests(cfg, grafana_password)?
        .into_iter()
        .flat_map(|(_, o)| o)
        .collect())
}

pub(super) async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    manifests::plan_on_cluster(ctx, NAME, &kube_objects(cfg, None)?).await
}

pub(super) async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let cfg = &ctx.config;
    // Only used if the Secret does not exist yet (create-only).
    let password = crate::util::random_password();
    let objects = kube_objects(cfg, Some(&password))?;
    let cluster = ctx.kube().await?;
    let changed = manifests::apply(ctx, cluster, NAME, &objects).await?;
    let ns = &cfg.kube.namespace;
    let ctx_flag = cfg
        .kube
        .context
        .as_ref()
        .map(|c| format!(" --context {c}"))
        .unwrap_or_default();
    let kubectl = format!(
        "kubectl --kubeconfig {}{ctx_flag} -n {ns}",
        cfg.kube.kubeconfig.display()
    );
    ctx.ui.event(
        "result",
        Some(NAME),
        &format!("Prometheus: {kubectl} port-forward svc/prometheus 9090, then http://127.0.0.1:9090/alerts"),
        json!({"prometheus": format!("{kubectl} port-forward svc/prometheus 9090")}),
    );
    if !cfg.grafana_image.is_empty() {
        ctx.ui.event(
            "result",
            Some(NAME),
            &format!(
                "Grafana: {kubectl} port-forward svc/grafana 3000, then http://127.0.0.1:3000/d/eshop-kubernetes (user admin; password: {kubectl} get secret grafana-admin -o jsonpath='{{.data.admin-password}}' | base64 -d)"
            ),
            json!({"grafana": format!("{kubectl} port-forward svc/grafana 3000")}),
        );
    }
    Ok(Outcome { changed })
}

pub(super) async fn destroy(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let cfg = &ctx.config;
    // A cluster eshop never bootstrapped holds nothing of this phase.
    if manifests::cluster_pending(cfg) {
        return Ok(Outcome::default());
    }
    let cluster = ctx.kube().await?;
    Ok(Outcome {
        changed: manifests::destroy(ctx, cluster, NAME).await?,
    })
}

pub(super) async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let cfg = &ctx.config;
    let cluster = ctx.kube().await?;
    manifests::status(cluster, &kube_objects(cfg, None)?).await
}
