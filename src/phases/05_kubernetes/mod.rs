//! Phase 5 kubernetes: a cluster, then the shop on it.
//!
//! Bootstrap mode prepares every node over SSH in parallel (containerd,
//! pinned kubeadm/kubelet/kubectl), runs `kubeadm init` on the control
//! plane with a rendered configuration, installs Calico (it enforces
//! NetworkPolicies), metrics-server (the autoscalers read it) and a local
//! volume provisioner, joins the workers with a fresh token, and fetches
//! the admin kubeconfig. Existing mode uses a kubeconfig context instead
//! (kind, k3d, EKS). Either way the shop's manifests (templates/kubernetes)
//! are then server-side applied in order and rolled out.

pub(crate) mod bootstrap;
pub mod etcd;
mod shop;

use super::manifests;
use super::{Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::kube::{Mode, Node, Role};
use crate::config::Config;
use crate::engines::ssh::{self, Conn};
use bootstrap::*;
use shop::flat;
pub(crate) use shop::images;
pub use shop::{manifests, service_env};

pub struct Kubernetes;

pub const PHASE: &str = "kubernetes";

async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    let mut out = Vec::new();
    if cfg.kube.mode == Mode::Bootstrap {
        out = plan_bootstrap(ctx).await?;
        if manifests::cluster_pending(cfg) {
            out.extend(manifests::plan_without_cluster(&flat(manifests(
                cfg, None, false,
            )?)));
            return Ok(out);
        }
    }
    let imgs = images(ctx)?;
    let cluster = ctx.kube().await?;
    let objects = flat(manifests(cfg, Some(&imgs), false)?);
    out.extend(manifests::plan(ctx, cluster, PHASE, &objects).await?);
    Ok(out)
}

async fn apply(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    // Everything checked before a node or the API is touched.
    let imgs = images(ctx)?;
    let mut changed = 0;
    if cfg.kube.mode == Mode::Bootstrap {
        changed += bootstrap(ctx).await?;
    }
    let cluster = ctx.kube().await?;
    let version = cluster.version().await?;
    ctx.ui.info(
        PHASE,
        &format!("cluster {} (Kubernetes {version})", cluster.server),
    );
    let objects = flat(manifests(cfg, Some(&imgs), true)?);
    changed += manifests::apply(ctx, cluster, PHASE, &objects).await?;
    ctx.set_phase_state(
        PHASE,
        serde_json::json!({
            "mode": cfg.kube.mode.as_str(),
            "server": cluster.server,
            "version": version,
            "namespace": cfg.kube.namespace,
            "images": imgs,
        }),
    )?;
    Ok(changed)
}

async fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    match cfg.kube.mode {
        Mode::Off => Ok(0),
        Mode::Existing => {
            let cluster = ctx.kube().await?;
            let n = manifests::destroy(ctx, cluster, PHASE).await?;
            ctx.clear_phase_state(PHASE)?;
            Ok(n)
        }
        Mode::Bootstrap => {
            // Resetting the nodes removes the cluster and all it ran; no
            // machine left (phase 3 already destroyed) means nothing to do.
            let nodes = nodes(ctx).await?;
            let mut n = 0;
            let discovered = cfg.kube.nodes.is_empty();
            let bootstrapped = cfg.kube.kubeconfig.exists() || ctx.has_phase_state(PHASE);
            if discovered && !bootstrapped && !nodes.is_empty() {
                // Phase 3's machines with no sign of a cluster: nothing to
                // reset, and phase 3's destroy terminates them anyway.
                ctx.ui.info(
                    PHASE,
                    "no cluster was bootstrapped on phase 3's instances: nothing to reset",
                );
            } else if !nodes.is_empty() {
                let dir = control_dir()?;
                let conns = if discovered {
                    // Best effort on phase 3's machines: one that cannot be
                    // reached is about to be terminated anyway.
                    let tries = futures_util::future::join_all(
                        nodes.iter().map(|x| ssh::connect(x, &cfg.ssh, dir.path())),
                    )
                    .await;
                    let mut ok = Vec::new();
                    for t in tries {
                        match t {
                            Ok(c) => ok.push(c),
                            Err(e) => ctx.ui.info(PHASE, &format!("{e:#}: not reset")),
                        }
                    }
                    ok
                } else {
                    connect_all(ctx, &nodes, dir.path()).await?
                };
                let all: Vec<&Conn> = conns.iter().collect();
                let reset = |_: &Node| reset_script(cfg);
                let r = on_all(ctx, &all, "kubeadm reset", &reset).await;
                for c in conns {
                    c.close().await;
                }
                n += r?;
            }
            if cfg.kube.kubeconfig.exists() {
                std::fs::remove_file(&cfg.kube.kubeconfig)?;
                ctx.ui
                    .info(PHASE, &format!("removed {}", cfg.kube.kubeconfig.display()));
                n += 1;
            }
            ctx.clear_phase_state(PHASE)?;
            Ok(n)
        }
    }
}

/// What `eshop phases` says this phase does.
const ABOUT: &str = "kubeadm over SSH (or an existing cluster), then the shop: PostgreSQL, Deployments, Services, autoscalers (server-side apply)";

impl Phase for Kubernetes {
    const INFO: Info = Info::new(5, PHASE, ABOUT, EVERYWHERE);

    fn skip(&self, cfg: &Config) -> Option<String> {
        super::needs_cluster(cfg)
    }
    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        plan(ctx).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: apply(ctx).await?,
        })
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: destroy(ctx).await?,
        })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        let cluster = match ctx.kube().await {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Status {
                    resource: "cluster".into(),
                    state: format!("{e:#}"),
                    healthy: false,
                }])
            }
        };
        let mut out = vec![match cluster.version().await {
            Ok(v) => Status {
                resource: "cluster".into(),
                state: format!("{} Kubernetes {v}", cluster.server),
                healthy: true,
            },
            Err(e) => Status {
                resource: "cluster".into(),
                state: format!("{e:#}"),
                healthy: false,
            },
        }];
        if out[0].healthy {
            let objects = flat(manifests(cfg, None, false)?);
            out.extend(manifests::status(cluster, &objects).await?);
        }
        Ok(out)
    }
    fn render(&self, ctx: &Ctx, out: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        let cfg = &ctx.config;
        let mut imgs = crate::phases::images::current_images(ctx).unwrap_or_default();
        imgs.extend(cfg.kube.images.clone());
        let files = manifests(cfg, Some(&imgs), false)?;
        let mut written = manifests::write(out, &files)?;
        // The node scripts as the nodes receive them (join values are
        // only known at apply time).
        let cp = cfg.kube.control_plane().cloned().unwrap_or(Node {
            name: "control-plane".into(),
            address: "CONTROL-PLANE-ADDRESS".into(),
            private_address: "CONTROL-PLANE-PRIVATE-ADDRESS".into(),
            role: Role::ControlPlane,
        });
        let scripts = node_scripts(cfg, &cp)?;
        let p = out.join("add-ons.txt");
        std::fs::write(&p, bootstrap::add_ons_text(cfg)?)?;
        written.push(p);
        let dir = out.join("nodes");
        std::fs::create_dir_all(&dir)?;
        for (name, body) in scripts {
            let p = dir.join(name);
            std::fs::write(&p, ssh::script(&body))?;
            written.push(p);
        }
        Ok(written)
    }
}
