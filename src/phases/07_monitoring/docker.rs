//! Monitoring beside the shop on Docker: Prometheus and Grafana as
//! labelled containers on the shop's network, their configuration baked
//! into small derived images (tag = hash of the rendered files and the
//! base image), so no host path is mounted and an unchanged configuration
//! means nothing to do.

use super::{DASHBOARDS_YML, DATASOURCE_YML, NAME, RULES_YML, SERVICES_DASHBOARD};
use crate::config::{Config, Secret};
use crate::engines::docker::{self, ContainerSpec};
use crate::phases::local::{container_name, display_host, network_name};
use crate::phases::{Action, Change, Ctx, Outcome, Status};
use crate::render::render_pairs as render;
use crate::shop::Service;
use crate::util::{poll_until, Pace};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMETHEUS_DOCKERFILE: &str =
    include_str!("../../../templates/monitoring/Dockerfile.prometheus");
const GRAFANA_DOCKERFILE: &str = include_str!("../../../templates/monitoring/Dockerfile.grafana");
const PROMETHEUS_YML: &str = include_str!("../../../templates/monitoring/prometheus.yml");

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
/// added as data (the job's name is the service's, labelled tier="shop",
/// as the rules and dashboards expect; the path is the catalogue's).
pub fn static_prometheus_yml(
    scrape_interval: &str,
    rules_path: &str,
    targets: &[(&Service, String)],
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
        .map(|(svc, addr)| {
            serde_yaml::to_value(json!({
                "job_name": svc.name,
                "metrics_path": svc.metrics_path,
                // The label the rules and dashboards select the shop by.
                "static_configs": [{"targets": [addr], "labels": {"tier": "shop"}}],
            }))
        })
        .collect::<Result<_, _>>()?;
    v["scrape_configs"] = serde_yaml::Value::Sequence(jobs);
    Ok(serde_yaml::to_string(&v)?)
}

fn bundles(cfg: &Config) -> anyhow::Result<Vec<Bundle>> {
    let targets: Vec<(&Service, String)> = cfg
        .shop
        .iter()
        .map(|s| (s, format!("{}:{}", container_name(cfg, s.name), s.port)))
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

/// Grafana's admin password: ESHOP_GRAFANA_ADMIN_PASSWORD, else one eshop
/// generated once and keeps in `.eshop/<project>-grafana-admin-password`,
/// so Grafana never runs as admin/admin. Plan only reads it; apply makes it.
fn grafana_password(ctx: &Ctx, create: bool) -> anyhow::Result<Option<Secret>> {
    if let Some(p) = &ctx.config.grafana_admin_password {
        return Ok(Some(p.clone()));
    }
    crate::phases::local::kept_password(
        ctx,
        NAME,
        "grafana-admin-password",
        "Grafana's admin password (user admin)",
        create,
    )
}

fn spec(cfg: &Config, b: &Bundle, grafana_password: Option<&Secret>) -> ContainerSpec {
    let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
    labels.insert(crate::labels::COMPONENT.into(), b.component.into());
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
            secrets: Vec::new(),
        },
        _ => {
            let mut env = vec![
                // Everyone logs in: the shop's metrics are not public.
                "GF_AUTH_ANONYMOUS_ENABLED=false".to_owned(),
                "GF_ANALYTICS_REPORTING_ENABLED=false".to_owned(),
                "GF_ANALYTICS_CHECK_FOR_UPDATES=false".to_owned(),
                // The root filesystem is read-only: log to the console only.
                "GF_LOG_MODE=console".to_owned(),
            ];
            // Grafana reads `<VAR>__FILE`: the password stays out of the
            // environment `docker inspect` shows.
            let secrets: Vec<docker::SecretFile> = grafana_password
                .map(|pw| docker::SecretFile {
                    name: "grafana-admin-password".into(),
                    content: pw.clone(),
                })
                .into_iter()
                .collect();
            for f in &secrets {
                env.push(format!("GF_SECURITY_ADMIN_PASSWORD__FILE={}", f.path()));
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
                secrets,
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

pub(super) async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
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
        let (_, hash) = spec(cfg, &b, grafana_password(ctx, false)?.as_ref()).body();
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

pub(super) async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
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
        let s = spec(
            cfg,
            &b,
            grafana_password(ctx, b.component == "grafana")?.as_ref(),
        );
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
    wait_ready(ctx).await?;
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

async fn wait_ready(ctx: &Ctx) -> anyhow::Result<()> {
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

/// Each component's readiness, asked over HTTP.
pub(super) async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let cfg = &ctx.config;
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

/// The derived images' files, for review.
pub(super) fn render_files(cfg: &Config, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for b in bundles(cfg)? {
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
