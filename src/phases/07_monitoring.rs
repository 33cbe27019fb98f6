//! Phase 7, monitoring: Prometheus scraping both services with eshop's
//! alert rules, and Grafana with the Prometheus datasource and dashboards
//! provisioned. Where the shop runs decides where monitoring runs:
//!
//! - On Docker (kubernetes.mode = "off"): labelled containers beside the
//!   shop on its network. The configuration is baked into small derived
//!   images (tag = hash of the rendered files and the base image), so no
//!   host paths are mounted and a changed rule or dashboard means a new
//!   tag and a new container, while nothing changed means nothing to do.
//! - On Kubernetes: Prometheus discovering the shop's pods (its own Role:
//!   get/list/watch pods in the namespace, nothing else),
//!   kube-state-metrics for replicas vs autoscalers and restarts, Grafana
//!   with a generated admin password, and NetworkPolicies for all three,
//!   applied like phase 5's objects (server-side apply, prune, by label).

use super::{manifests, Action, Change, Ctx, Info, Outcome, Phase, Status};
use crate::config::kube::Mode;
use crate::config::{Config, Target};
use crate::engines::docker::{self, ContainerSpec};
use crate::phases::local::{container_name, display_host, network_name};
use crate::render::render_pairs as render;
use crate::util::{poll_until, Pace};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Monitoring;

const NAME: &str = "monitoring";
const PROMETHEUS_DOCKERFILE: &str =
    include_str!("../../templates/monitoring/Dockerfile.prometheus");
const GRAFANA_DOCKERFILE: &str = include_str!("../../templates/monitoring/Dockerfile.grafana");
const PROMETHEUS_YML: &str = include_str!("../../templates/monitoring/prometheus.yml");
const RULES_YML: &str = include_str!("../../templates/monitoring/rules.yml");
const DATASOURCE_YML: &str = include_str!("../../templates/monitoring/grafana/datasource.yml");
const DASHBOARDS_YML: &str = include_str!("../../templates/monitoring/grafana/dashboards.yml");
const SERVICES_DASHBOARD: &str =
    include_str!("../../templates/monitoring/dashboards/eshop-services.json");
const KUBE_DASHBOARD: &str =
    include_str!("../../templates/monitoring/dashboards/eshop-kubernetes.json");
const KUBE_RULES_YML: &str = include_str!("../../templates/monitoring/rules-kubernetes.yml");
const KUBE_PROMETHEUS_YML: &str =
    include_str!("../../templates/monitoring/kubernetes/prometheus.yml");
const KUBE_PROMETHEUS: &str =
    include_str!("../../templates/monitoring/kubernetes/70-prometheus.yaml");
const KUBE_KSM: &str =
    include_str!("../../templates/monitoring/kubernetes/71-kube-state-metrics.yaml");
const KUBE_GRAFANA: &str = include_str!("../../templates/monitoring/kubernetes/72-grafana.yaml");
const KUBE_POLICIES: &str =
    include_str!("../../templates/monitoring/kubernetes/73-network-policies.yaml");

/// One derived image: its rendered files and where they come from.
struct Bundle {
    component: &'static str,
    files: Vec<(String, String)>,
    base: String,
}

impl Bundle {
    fn tag(&self) -> String {
        let mut parts = vec![self.base.as_str()];
        for (name, body) in &self.files {
            parts.extend([name.as_str(), body.as_str()]);
        }
        crate::util::short_hash(&parts)
    }

    fn reference(&self, cfg: &Config) -> String {
        format!("eshop-{}-{}:{}", cfg.project, self.component, self.tag())
    }

    fn context(&self) -> anyhow::Result<Vec<u8>> {
        let mut t = crate::util::Tar::new();
        for (name, body) in &self.files {
            t.file(name, 0o644, body.as_bytes())?;
        }
        t.finish()
    }
}

fn prometheus_name(cfg: &Config) -> String {
    container_name(cfg, "prometheus")
}

fn grafana_name(cfg: &Config) -> String {
    container_name(cfg, "grafana")
}

/// Prometheus's configuration for services at fixed addresses: the
/// template's settings, then one scrape job per `(service, host:port)`,
/// added as data (the job's name is the service's, as the rules and
/// dashboards expect).
pub fn static_prometheus_yml(
    scrape_interval: &str,
    rules_path: &str,
    targets: &[(&str, String)],
) -> anyhow::Result<String> {
    let text = render(
        PROMETHEUS_YML,
        &[
            ("scrape_interval", scrape_interval.to_owned()),
            ("rules_path", rules_path.to_owned()),
        ],
        &[],
    )?;
    let mut v: serde_yaml::Value = serde_yaml::from_str(&text)?;
    let jobs: Vec<serde_yaml::Value> = targets
        .iter()
        .map(|(job, addr)| {
            serde_yaml::to_value(json!({
                "job_name": job,
                "static_configs": [{"targets": [addr]}],
            }))
        })
        .collect::<Result<_, _>>()?;
    v["scrape_configs"] = serde_yaml::Value::Sequence(jobs);
    Ok(serde_yaml::to_string(&v)?)
}

/// The in-cluster configuration: pod discovery in the shop's namespace,
/// keeping the catalogue's services' "http" ports.
pub fn kube_prometheus_yml(cfg: &Config) -> anyhow::Result<String> {
    render(
        KUBE_PROMETHEUS_YML,
        &[
            ("scrape_interval", format!("{}s", cfg.scrape_interval_secs)),
            ("namespace", cfg.kube.namespace.clone()),
            ("services", crate::shop::names(cfg.shop).join("|")),
        ],
        &[],
    )
}

fn bundles(cfg: &Config) -> anyhow::Result<Vec<Bundle>> {
    let targets: Vec<(&str, String)> = cfg
        .shop
        .iter()
        .map(|s| {
            (
                s.name,
                format!("{}:{}", container_name(cfg, s.name), s.port),
            )
        })
        .collect();
    let prometheus_yml = static_prometheus_yml(
        &format!("{}s", cfg.scrape_interval_secs),
        "/etc/prometheus/rules.yml",
        &targets,
    )?;
    let mut out = vec![Bundle {
        component: "prometheus",
        base: cfg.prometheus_image.clone(),
        files: vec![
            (
                "Dockerfile".into(),
                render(
                    PROMETHEUS_DOCKERFILE,
                    &[("prometheus_image", cfg.prometheus_image.clone())],
                    &[],
                )?,
            ),
            ("prometheus.yml".into(), prometheus_yml),
            ("rules.yml".into(), RULES_YML.into()),
        ],
    }];
    if !cfg.grafana_image.is_empty() {
        out.push(Bundle {
            component: "grafana",
            base: cfg.grafana_image.clone(),
            files: vec![
                (
                    "Dockerfile".into(),
                    render(
                        GRAFANA_DOCKERFILE,
                        &[("grafana_image", cfg.grafana_image.clone())],
                        &[],
                    )?,
                ),
                (
                    "datasource.yml".into(),
                    render(
                        DATASOURCE_YML,
                        &[(
                            "prometheus_url",
                            format!("http://{}:9090", prometheus_name(cfg)),
                        )],
                        &[],
                    )?,
                ),
                ("dashboards.yml".into(), DASHBOARDS_YML.into()),
                (
                    "dashboards/eshop-services.json".into(),
                    SERVICES_DASHBOARD.into(),
                ),
            ],
        });
    }
    Ok(out)
}

fn spec(cfg: &Config, b: &Bundle) -> ContainerSpec {
    let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
    labels.insert("eshop/component".into(), b.component.into());
    let bind = cfg.bind.to_string();
    match b.component {
        "prometheus" => ContainerSpec {
            image: b.reference(cfg),
            env: Vec::new(),
            labels,
            network: network_name(cfg),
            ports: vec![(9090, bind, cfg.prometheus_port)],
            volumes: vec![(
                format!("eshop-{}-prometheus-data", cfg.project),
                "/prometheus".into(),
            )],
            memory_mib: 1024,
        },
        _ => {
            let mut env = vec![
                // A local demo: dashboards readable without logging in.
                "GF_AUTH_ANONYMOUS_ENABLED=true".to_owned(),
                "GF_AUTH_ANONYMOUS_ORG_ROLE=Viewer".to_owned(),
                "GF_ANALYTICS_REPORTING_ENABLED=false".to_owned(),
                "GF_ANALYTICS_CHECK_FOR_UPDATES=false".to_owned(),
                // The root filesystem is read-only: log to the console only.
                "GF_LOG_MODE=console".to_owned(),
            ];
            if let Some(pw) = &cfg.grafana_admin_password {
                env.push(format!("GF_SECURITY_ADMIN_PASSWORD={}", pw.expose()));
            }
            ContainerSpec {
                image: b.reference(cfg),
                env,
                labels,
                network: network_name(cfg),
                ports: vec![(3000, bind, cfg.grafana_port)],
                volumes: vec![(
                    format!("eshop-{}-grafana-data", cfg.project),
                    "/var/lib/grafana".into(),
                )],
                memory_mib: 512,
            }
        }
    }
}

fn url(cfg: &Config, port: u16) -> String {
    format!("http://{}:{port}", display_host(cfg))
}

/// (component, readiness URL) for what this configuration runs.
fn endpoints(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut v = vec![(
        "prometheus",
        format!("{}/-/ready", url(cfg, cfg.prometheus_port)),
    )];
    if !cfg.grafana_image.is_empty() {
        v.push((
            "grafana",
            format!("{}/api/health", url(cfg, cfg.grafana_port)),
        ));
    }
    v
}

impl Monitoring {
    async fn plan_now(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let have = engine
            .containers_by_name(&cfg.project, cfg.target.as_str())
            .await?;
        let mut plan = Vec::new();
        for b in bundles(cfg)? {
            let r = b.reference(cfg);
            plan.push(match engine.image_id(&r).await? {
                Some(_) => Change::new(
                    format!("image {r}"),
                    Action::NoOp,
                    "configuration unchanged",
                ),
                None => Change::new(
                    format!("image {r}"),
                    Action::Create,
                    format!("{} + eshop configuration", b.base),
                ),
            });
            let name = container_name(cfg, b.component);
            let (_, hash) = spec(cfg, &b).body();
            plan.push(match have.get(&name) {
                None => Change::new(format!("container {name}"), Action::Create, "absent"),
                Some(f) if f.running && f.spec == hash => Change::new(
                    format!("container {name}"),
                    Action::NoOp,
                    "running, spec unchanged",
                ),
                Some(_) => Change::new(
                    format!("container {name}"),
                    Action::Update,
                    "configuration or image changed",
                ),
            });
        }
        if cfg.grafana_image.is_empty() && have.contains_key(&grafana_name(cfg)) {
            plan.push(Change::new(
                format!("container {}", grafana_name(cfg)),
                Action::Delete,
                "monitoring.grafana_image is empty",
            ));
        }
        Ok(plan)
    }

    async fn apply_now(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let net = network_name(cfg);
        if !engine
            .networks(&cfg.project, cfg.target.as_str(), None)
            .await?
            .contains(&net)
        {
            anyhow::bail!("network {net} does not exist: run phase 2 (images) first; monitoring joins the shop's network");
        }
        let mut changed = 0;
        let have = engine
            .containers_by_name(&cfg.project, cfg.target.as_str())
            .await?;
        let labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
        for b in bundles(cfg)? {
            let r = b.reference(cfg);
            if engine.image_id(&r).await?.is_none() {
                let progress = ctx.ui.spinner(NAME, &format!("building {r}"));
                engine
                    .build(&r, b.context()?, labels.clone(), |line| {
                        progress.set_message(format!("{r}: {line}"))
                    })
                    .await?;
                progress.finish(&format!("built {r}"));
                changed += 1;
            }
            let s = spec(cfg, &b);
            for (vol, _) in &s.volumes {
                if engine.ensure_volume(vol, labels.clone()).await? {
                    changed += 1;
                }
            }
            let name = container_name(cfg, b.component);
            if engine.converge(&name, &s, &have).await? {
                ctx.ui.info(NAME, &format!("started {name}"));
                changed += 1;
            }
        }
        if cfg.grafana_image.is_empty() && have.contains_key(&grafana_name(cfg)) {
            engine.remove_container(&grafana_name(cfg)).await?;
            changed += 1;
        }
        self.wait_ready(ctx).await?;
        let prom = url(cfg, cfg.prometheus_port);
        ctx.ui.event(
            "result",
            Some(NAME),
            &format!("Prometheus: {prom}/alerts"),
            json!({"prometheus": prom}),
        );
        if !cfg.grafana_image.is_empty() {
            let g = url(cfg, cfg.grafana_port);
            ctx.ui.event(
                "result",
                Some(NAME),
                &format!("Grafana: {g}/d/eshop-services"),
                json!({"grafana": format!("{g}/d/eshop-services")}),
            );
        }
        Ok(Outcome { changed })
    }

    async fn wait_ready(&self, ctx: &Ctx) -> anyhow::Result<()> {
        let cfg = &ctx.config;
        let checks = endpoints(cfg);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let progress = ctx.ui.spinner(NAME, "waiting for Prometheus and Grafana");
        let start = Instant::now();
        for (what, u) in checks {
            let left = cfg.ready_timeout.saturating_sub(start.elapsed());
            let http = &http;
            poll_until(
                left,
                Pace::Every(Duration::from_millis(250)),
                &format!("{what} not ready at {u}"),
                || async {
                    let ok = http
                        .get(&u)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    Ok(ok.then_some(()))
                },
            )
            .await?;
        }
        progress.finish("monitoring ready");
        Ok(())
    }
}

// --- on Kubernetes ----------------------------------------------------------

fn on_kubernetes(cfg: &Config) -> bool {
    cfg.kube.mode != Mode::Off
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

async fn kube_plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    manifests::plan_on_cluster(ctx, NAME, &kube_objects(cfg, None)?).await
}

async fn kube_apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
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

async fn kube_destroy(ctx: &Ctx) -> anyhow::Result<Outcome> {
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

async fn kube_status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let cfg = &ctx.config;
    let cluster = ctx.kube().await?;
    manifests::status(cluster, &kube_objects(cfg, None)?).await
}

impl Phase for Monitoring {
    const INFO: Info = Info {
        number: 7,
        name: NAME,
        about: "Prometheus (scraping both services, alert rules) and Grafana (datasource + dashboards): containers beside the shop, or on its cluster with kube-state-metrics",
        targets: &[Target::Local, Target::Aws],
    };

    /// On AWS the shop only runs on Kubernetes.
    fn skip(&self, cfg: &Config) -> Option<String> {
        if cfg.target == Target::Aws {
            super::needs_cluster(cfg)
        } else {
            None
        }
    }
    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        if on_kubernetes(&ctx.config) {
            kube_plan(ctx).await
        } else {
            self.plan_now(ctx).await
        }
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        if on_kubernetes(&ctx.config) {
            kube_apply(ctx).await
        } else {
            self.apply_now(ctx).await
        }
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        // Where no cluster is configured on AWS there is nothing of this
        // phase's anywhere.
        if Phase::skip(self, &ctx.config).is_some() {
            return Ok(Outcome::default());
        }
        if on_kubernetes(&ctx.config) {
            return kube_destroy(ctx).await;
        }
        let engine = ctx.docker().await?;
        let changed =
            super::remove_labelled(ctx, engine, Some(NAME), NAME, super::Kinds::All).await?;
        Ok(Outcome { changed })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        if on_kubernetes(cfg) {
            return kube_status(ctx).await;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let mut out = Vec::new();
        for (c, u) in endpoints(cfg) {
            let ok = http
                .get(&u)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            out.push(Status {
                resource: format!("container {}", container_name(cfg, c)),
                state: if ok {
                    format!("ready ({u})")
                } else {
                    format!("not answering at {u}")
                },
                healthy: ok,
            });
        }
        Ok(out)
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        if on_kubernetes(&ctx.config) {
            return manifests::write(out, &kube_manifests(&ctx.config, None)?);
        }
        let mut files = Vec::new();
        for b in bundles(&ctx.config)? {
            for (name, body) in &b.files {
                let path = out.join(b.component).join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, body)?;
                files.push(path);
            }
        }
        Ok(files)
    }
}
