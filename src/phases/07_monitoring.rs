//! Phase 7, monitoring (local target): Prometheus scraping both services
//! with eshop's alert rules, and Grafana with the Prometheus datasource and
//! the services dashboard provisioned, as labelled containers beside the
//! shop on its network.
//!
//! The configuration is baked into small derived images (tag = hash of the
//! rendered files and the base image reference), so no host paths are
//! mounted and a changed rule or dashboard means a new tag and a new
//! container, while nothing changed means nothing to do.

use super::{Action, BoxFut, Change, Ctx, Outcome, Phase, Status};
use crate::config::{Config, Target};
use crate::engines::docker::{self, ContainerSpec};
use crate::phases::build::hex;
use crate::phases::images::{container_name, network_name};
use serde_json::json;
use sha2::{Digest, Sha256};
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

/// One derived image: its rendered files and where they come from.
struct Bundle {
    component: &'static str,
    files: Vec<(String, String)>,
    base: String,
}

impl Bundle {
    fn tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.base.as_bytes());
        for (name, body) in &self.files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(body.as_bytes());
            h.update([0]);
        }
        hex(&h.finalize())[..16].to_owned()
    }

    fn reference(&self, cfg: &Config) -> String {
        format!("eshop-{}-{}:{}", cfg.project, self.component, self.tag())
    }

    fn context(&self) -> anyhow::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in &self.files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, body.as_bytes())?;
        }
        Ok(b.into_inner()?)
    }
}

fn prometheus_name(cfg: &Config) -> String {
    container_name(cfg, "prometheus")
}

fn grafana_name(cfg: &Config) -> String {
    container_name(cfg, "grafana")
}

fn bundles(cfg: &Config) -> anyhow::Result<Vec<Bundle>> {
    let render = |t: &str, vars: &[(&'static str, String)]| {
        crate::render::render(t, &vars.iter().cloned().collect::<BTreeMap<_, _>>(), &[])
    };
    let prometheus_yml = render(
        PROMETHEUS_YML,
        &[
            ("scrape_interval", format!("{}s", cfg.scrape_interval_secs)),
            ("rules_path", "/etc/prometheus/rules.yml".into()),
            (
                "inventory_target",
                format!("{}:8081", container_name(cfg, "inventory")),
            ),
            (
                "pricing_target",
                format!("{}:8080", container_name(cfg, "pricing")),
            ),
        ],
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
            ];
            if let Ok(pw) = std::env::var("ESHOP_GRAFANA_ADMIN_PASSWORD") {
                env.push(format!("GF_SECURITY_ADMIN_PASSWORD={pw}"));
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
    format!("http://{}:{port}", crate::phases::images::display_host(cfg))
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
        let deadline = Instant::now() + cfg.ready_timeout;
        for (what, u) in checks {
            loop {
                if http
                    .get(&u)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!("{what} not ready at {u} after {:?}", cfg.ready_timeout);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        progress.finish("monitoring ready");
        Ok(())
    }
}

impl Phase for Monitoring {
    fn number(&self) -> u8 {
        7
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Prometheus (scraping both services, alert rules) and Grafana (datasource + dashboards) beside the shop"
    }
    fn targets(&self) -> &'static [Target] {
        &[Target::Local]
    }
    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>> {
        Box::pin(self.plan_now(ctx))
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(self.apply_now(ctx))
    }
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
            let engine = ctx.docker().await?;
            let changed =
                super::remove_labelled(ctx, engine, Some(NAME), NAME, super::Kinds::All).await?;
            Ok(Outcome { changed })
        })
    }
    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>> {
        Box::pin(async move {
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
        })
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
