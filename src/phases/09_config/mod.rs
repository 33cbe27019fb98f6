//! Phase 9 config: the nodes phase 5 bootstraps, configured by Ansible.
//!
//! An inventory of those nodes (phase 3's instances or
//! `[[kubernetes.nodes]]`, reached with eshop's own SSH settings) and an
//! extra-vars file from eshop's configuration, then the playbooks of
//! templates/ansible (embedded in the binary, written to the state folder)
//! in order: provision.yml, cluster.yml, deploy.yml, etcd-backup.yml.
//! `plan` and `status` are Ansible's check mode; every result is read from
//! the `eshop_events` callback, so the counts are Ansible's own.
//! With `kubernetes.provisioner = "ansible"` phase 5 runs provision.yml
//! and cluster.yml through the same runner instead of its scripts.

mod files;
mod inventory;
mod runner;

use super::{Action, Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::kube::{Mode, Node, Role};
use crate::config::{Config, Pinned};
use crate::phases::kubernetes::{self, bootstrap};
use crate::pins::Fetched;
use std::path::{Path, PathBuf};

pub struct Configure;

pub const PHASE: &str = "config";

/// In the order they run.
const PLAYBOOKS: [&str; 4] = [
    "provision.yml",
    "cluster.yml",
    "deploy.yml",
    "etcd-backup.yml",
];

/// Phase 5's Secrets: created once through the API and kept (a re-render
/// makes new credentials), so deploy.yml never carries them and no
/// credential is written to this machine's disk.
const SECRETS_FILE: &str = "15-secret.yaml";

/// `.eshop/<project>-config/`: what ansible-playbook reads and writes here.
fn state_dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(format!("{}-config", cfg.project))
}

/// The shop's manifests as phase 5 renders them, without the Secrets;
/// files it no longer renders are removed (deploy.yml mirrors the folder).
fn write_manifests(
    dir: &Path,
    cfg: &Config,
    imgs: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Vec<PathBuf>> {
    let files: Vec<_> = kubernetes::manifests(cfg, Some(imgs), false)?
        .into_iter()
        .filter(|(name, _)| name != SECRETS_FILE)
        .collect();
    if dir.exists() {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !files.iter().any(|(n, _)| *n == name) {
                std::fs::remove_file(e.path())?;
            }
        }
    }
    let written = super::manifests::write(dir, &files)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(written)
}

/// The state folder made ready for a run.
struct Prepared {
    program: PathBuf,
    facts: PathBuf,
    config: PathBuf,
    written: inventory::Written,
}

impl Prepared {
    fn setup(&self) -> runner::Setup<'_> {
        runner::Setup {
            program: &self.program,
            config: &self.config,
            facts: &self.facts,
            inventory: &self.written.inventory,
            vars: &self.written.vars,
            playbooks: self.config.parent().unwrap_or(&self.facts),
            events: &self.written.events,
            log: &self.written.log,
        }
    }
}

/// Writes the playbooks, inventory, vars, add-ons and (`deploy`) the
/// manifests; finds ansible-playbook first, so nothing is written for a
/// run that cannot happen.
fn prepare(
    ctx: &Ctx,
    nodes: &[Node],
    add_ons: &[(Pinned, Fetched)],
    deploy: bool,
) -> anyhow::Result<Prepared> {
    let cfg = &ctx.config;
    let program = runner::playbook_command()?;
    let dir = state_dir(cfg);
    std::fs::create_dir_all(&dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let config = runner::write_templates(&dir.join("ansible"))?;
    let manifests = dir.join("manifests");
    if deploy {
        write_manifests(&manifests, cfg, &kubernetes::images(ctx)?)?;
    }
    let add_ons = inventory::add_ons(&dir.join("addons"), add_ons)?;
    let inv = inventory::inventory(cfg, nodes)?;
    let vars = inventory::vars(cfg, nodes, add_ons, &manifests)?;
    let written = inventory::write(&dir, &inv, &vars)?;
    let facts = dir.join("facts");
    std::fs::create_dir_all(&facts)?;
    Ok(Prepared {
        program,
        config,
        written,
        facts,
    })
}

/// Phase 5 with `kubernetes.provisioner = "ansible"`: provision.yml, then
/// cluster.yml, on the nodes it bootstraps; Ansible's change count.
pub(crate) async fn provision_cluster(
    ctx: &Ctx,
    nodes: &[Node],
    add_ons: &[(Pinned, Fetched)],
) -> anyhow::Result<usize> {
    let p = prepare(ctx, nodes, add_ons, false)?;
    Ok(runner::run(
        &ctx.ui,
        kubernetes::PHASE,
        &p.setup(),
        &PLAYBOOKS[..2],
        false,
    )
    .await?
    .changed_count())
}

/// Every playbook in order (`check`: Ansible's check mode), or None when
/// there are no nodes yet.
async fn run_all(ctx: &Ctx, check: bool) -> anyhow::Result<Option<runner::Run>> {
    let nodes = bootstrap::nodes(ctx).await?;
    if nodes.is_empty() {
        return Ok(None);
    }
    // Before any node is touched: a manifest that fails its pin stops here.
    let add_ons = bootstrap::fetch_add_ons(ctx, !check).await?;
    let p = prepare(ctx, &nodes, &add_ons, true)?;
    Ok(Some(
        runner::run(&ctx.ui, PHASE, &p.setup(), &PLAYBOOKS, check).await?,
    ))
}

const NO_NODES: &str = "no nodes yet: phase 3 creates them";

async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let Some(run) = run_all(ctx, true).await? else {
        return Ok(vec![Change::new("nodes", Action::Create, NO_NODES)]);
    };
    let mut out = Vec::new();
    for (host, task, play) in run.changed() {
        out.push(Change::new(
            format!("node {host}: {task}"),
            Action::Update,
            play,
        ));
    }
    for h in run.stats.keys() {
        if !out
            .iter()
            .any(|c| c.resource.starts_with(&format!("node {h}: ")))
        {
            out.push(Change::new(
                format!("node {h}"),
                Action::NoOp,
                "converged (Ansible check mode: 0 changes)",
            ));
        }
    }
    Ok(out)
}

async fn apply(ctx: &Ctx) -> anyhow::Result<usize> {
    let Some(run) = run_all(ctx, false).await? else {
        anyhow::bail!(
            "no running control plane tagged for project {:?}: run phase 3 first (eshop phase infra apply), or list [[kubernetes.nodes]]",
            ctx.config.project
        );
    };
    let changed = run.changed_count();
    let names: Vec<&String> = run.stats.keys().collect();
    ctx.set_phase_state(
        PHASE,
        serde_json::json!({ "nodes": names, "playbooks": PLAYBOOKS, "changed": changed }),
    )?;
    Ok(changed)
}

async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let run = match run_all(ctx, true).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Ok(vec![Status {
                resource: "nodes".into(),
                state: NO_NODES.into(),
                healthy: false,
            }])
        }
        Err(e) => {
            return Ok(vec![Status {
                resource: "nodes".into(),
                state: format!("{e:#}"),
                healthy: false,
            }])
        }
    };
    let mut per_host: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for h in run.stats.keys() {
        per_host.entry(h.clone()).or_default();
    }
    for (host, task, _) in run.changed() {
        per_host.entry(host).or_default().push(task);
    }
    Ok(per_host
        .into_iter()
        .map(|(h, tasks)| Status {
            resource: format!("node {h}"),
            healthy: tasks.is_empty(),
            state: if tasks.is_empty() {
                "configured (Ansible check mode: 0 changes)".into()
            } else {
                format!("{} task(s) would change: {}", tasks.len(), tasks.join("; "))
            },
        })
        .collect())
}

/// The nodes for `render`: the configured ones, or placeholders (phase
/// 3's instances are only known at apply time).
fn render_nodes(cfg: &Config) -> Vec<Node> {
    if !cfg.kube.nodes.is_empty() {
        return cfg.kube.nodes.clone();
    }
    vec![
        Node {
            name: "control-plane".into(),
            address: "CONTROL-PLANE-ADDRESS".into(),
            private_address: "CONTROL-PLANE-PRIVATE-ADDRESS".into(),
            role: Role::ControlPlane,
        },
        Node {
            name: "worker".into(),
            address: "WORKER-ADDRESS".into(),
            private_address: "WORKER-PRIVATE-ADDRESS".into(),
            role: Role::Worker,
        },
    ]
}

fn render(ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let cfg = &ctx.config;
    let ansible = out.join("ansible");
    runner::write_templates(&ansible)?;
    let mut written: Vec<PathBuf> = files::FILES.iter().map(|(p, _)| ansible.join(p)).collect();
    let mut imgs = crate::phases::images::current_images(ctx).unwrap_or_default();
    imgs.extend(cfg.kube.images.clone());
    let manifests = out.join("manifests");
    written.extend(write_manifests(&manifests, cfg, &imgs)?);
    // The add-ons are downloaded and checked at apply time.
    let add_ons: Vec<serde_json::Value> = bootstrap::add_ons(cfg)
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "version": p.version,
                "src": format!("ADD-ON-FETCHED-AT-APPLY/{}.yaml", p.name),
                "sha256": "SHA256-CHECKED-AT-APPLY",
            })
        })
        .collect();
    let nodes = render_nodes(cfg);
    let inv = inventory::inventory(cfg, &nodes)?;
    let vars = inventory::vars(cfg, &nodes, add_ons, &manifests)?;
    let w = inventory::write(out, &inv, &vars)?;
    written.extend([w.inventory, w.vars]);
    Ok(written)
}

const ABOUT: &str = "Ansible on phase 5's nodes: provision, cluster, deploy, scheduled etcd snapshots (plan: check mode)";

impl Phase for Configure {
    const INFO: Info = Info::new(9, PHASE, ABOUT, EVERYWHERE);

    fn skip(&self, cfg: &Config) -> Option<String> {
        (cfg.kube.mode != Mode::Bootstrap).then(|| {
            format!(
                "no nodes to configure: phase 5 does not bootstrap here (kubernetes.mode = \"{}\"; \"bootstrap\" on target aws or with [[kubernetes.nodes]])",
                cfg.kube.mode.as_str()
            )
        })
    }
    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        plan(ctx).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: apply(ctx).await?,
        })
    }
    /// What this phase owns is here: the nodes' packages, cluster and
    /// timer go with phase 5's reset and phase 3's machines.
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let dir = state_dir(&ctx.config);
        let mut changed = 0;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            ctx.ui.info(PHASE, &format!("removed {}", dir.display()));
            changed += 1;
        }
        ctx.ui.info(
            PHASE,
            "what the playbooks set up on the nodes goes with phase 5's kubeadm reset and phase 3's machines",
        );
        ctx.clear_phase_state(PHASE)?;
        Ok(Outcome { changed })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        status(ctx).await
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        render(ctx, out)
    }
}
