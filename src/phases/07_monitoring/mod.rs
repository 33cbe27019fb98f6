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
//!
//! The two places live in `docker.rs` and `cluster.rs`; this file picks.

mod cluster;
mod docker;

use super::{manifests, Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::kube::Mode;
use crate::config::{Config, Target};
use std::path::{Path, PathBuf};

pub use cluster::{kube_manifests, kube_prometheus_yml};
pub use docker::static_prometheus_yml;

pub struct Monitoring;

const NAME: &str = "monitoring";
const RULES_YML: &str = include_str!("../../../templates/monitoring/rules.yml");
const DATASOURCE_YML: &str = include_str!("../../../templates/monitoring/grafana/datasource.yml");
const DASHBOARDS_YML: &str = include_str!("../../../templates/monitoring/grafana/dashboards.yml");
const SERVICES_DASHBOARD: &str =
    include_str!("../../../templates/monitoring/dashboards/eshop-services.json");

fn on_kubernetes(cfg: &Config) -> bool {
    cfg.kube.mode != Mode::Off
}

/// What `eshop phases` says this phase does.
const ABOUT: &str = "Prometheus (scraping every service, alert rules) and Grafana (datasource + dashboards): containers beside the shop, or on its cluster with kube-state-metrics";

impl Phase for Monitoring {
    const INFO: Info = Info::new(7, NAME, ABOUT, EVERYWHERE);

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
            cluster::plan(ctx).await
        } else {
            docker::plan(ctx).await
        }
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        if on_kubernetes(&ctx.config) {
            cluster::apply(ctx).await
        } else {
            docker::apply(ctx).await
        }
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        // Where no cluster is configured on AWS there is nothing of this
        // phase's anywhere.
        if Phase::skip(self, &ctx.config).is_some() {
            return Ok(Outcome::default());
        }
        if on_kubernetes(&ctx.config) {
            return cluster::destroy(ctx).await;
        }
        let engine = ctx.docker().await?;
        let changed =
            super::remove_labelled(ctx, engine, Some(NAME), NAME, super::Kinds::All).await?;
        Ok(Outcome { changed })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        if on_kubernetes(cfg) {
            return cluster::status(ctx).await;
        }
        docker::status(ctx).await
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        if on_kubernetes(&ctx.config) {
            return manifests::write(out, &cluster::kube_manifests(&ctx.config, None)?);
        }
        docker::render_files(&ctx.config, out)
    }
}
