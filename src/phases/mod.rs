//! The Phase contract and the registry.
//!
//! Every phase answers `plan` (what apply would change, touching nothing),
//! `apply` (converge; safe to re-run and after a crash), `destroy` (remove
//! exactly what it owns, found by labels) and `status`. A phase is listed
//! here only once it works.

use crate::config::{Config, Target};
use crate::engines::aws::Clients;
use crate::engines::docker::Engine;
use crate::state::Store;
use crate::ui::Ui;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

#[path = "10_apm.rs"]
pub mod apm;
#[path = "01_build.rs"]
pub mod build;
#[cfg(test)]
mod catalogue_test;
#[path = "09_config/mod.rs"]
pub mod config;
#[path = "02_images/mod.rs"]
pub mod images;
#[path = "03_infra/mod.rs"]
pub mod infra;
#[path = "05_kubernetes/mod.rs"]
pub mod kubernetes;
pub mod local;
pub mod manifests;
#[path = "07_monitoring/mod.rs"]
pub mod monitoring;
#[path = "08_pipeline/mod.rs"]
pub mod pipeline;
#[path = "04_schedule/mod.rs"]
pub mod schedule;
#[path = "06_security.rs"]
pub mod security;

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    #[serde(rename = "no-op")]
    NoOp,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::NoOp => "=",
        }
    }
}

/// One line of a plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub resource: String,
    pub action: Action,
    pub reason: String,
}

impl Change {
    pub fn new(resource: impl Into<String>, action: Action, reason: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            action,
            reason: reason.into(),
        }
    }
}

/// One line of `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub resource: String,
    pub state: String,
    pub healthy: bool,
}

/// What apply or destroy did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Outcome {
    pub changed: usize,
}

/// Everything a phase may use. The state store sits behind a mutex that is
/// never held across an await.
pub struct Ctx {
    pub config: Config,
    pub ui: Ui,
    pub store: std::sync::Mutex<Store>,
    pub purge_data: bool,
    docker: tokio::sync::OnceCell<Engine>,
    aws: tokio::sync::OnceCell<Clients>,
    kube: tokio::sync::OnceCell<crate::engines::kube::Cluster>,
}

impl Ctx {
    pub fn new(config: Config, ui: Ui, store: Store, purge_data: bool) -> Self {
        Self {
            config,
            ui,
            store: std::sync::Mutex::new(store),
            purge_data,
            docker: tokio::sync::OnceCell::new(),
            aws: tokio::sync::OnceCell::new(),
            kube: tokio::sync::OnceCell::new(),
        }
    }

    /// Connects on first use, so commands that need no Docker never touch it.
    pub async fn docker(&self) -> anyhow::Result<&Engine> {
        self.docker.get_or_try_init(Engine::connect).await
    }

    /// Built on first use from `[aws]`; no call is made until a phase asks.
    pub async fn aws(&self) -> &Clients {
        self.aws
            .get_or_init(|| Clients::connect(&self.config.aws))
            .await
    }

    /// The cluster phases 5-7 and 10 deploy to, connected on first use.
    /// Checks the kubeconfig first, so a bootstrap that has not run yet
    /// says so instead of failing to parse a missing file.
    pub async fn kube(&self) -> anyhow::Result<&crate::engines::kube::Cluster> {
        use crate::config::kube::Mode;
        self.kube
            .get_or_try_init(|| async {
                let k = &self.config.kube;
                if !k.kubeconfig.exists() {
                    anyhow::bail!(
                        "kubeconfig {} does not exist{}",
                        k.kubeconfig.display(),
                        if k.mode == Mode::Bootstrap {
                            ": phase 5 writes it when it bootstraps the cluster (eshop phase kubernetes apply)"
                        } else {
                            ": set kubernetes.kubeconfig (or KUBECONFIG) to your cluster's"
                        }
                    );
                }
                crate::engines::kube::connect(&k.kubeconfig, k.context.as_deref()).await
            })
            .await
    }

    /// What `phase` recorded in the state file, re-validated. The file is
    /// a cache anyone who can write the folder can edit, so nothing read
    /// from it is rendered or run before passing the checks a config
    /// value would; what fails them is ignored, with a warning.
    pub fn recall<T: Recalled>(&self, phase: &str) -> Option<T> {
        let v = self.phase_state(phase)?;
        let checked = serde_json::from_value::<T>(v)
            .map_err(|e| e.to_string())
            .and_then(|t| t.check(&self.config).map(|()| t));
        match checked {
            Ok(t) => Some(t),
            Err(why) => {
                self.ui.warn(
                    phase,
                    &format!("state file: what this phase recorded is not valid ({why}); ignored, the state is only a cache"),
                );
                None
            }
        }
    }

    /// Whether `phase` recorded anything (its content is not read).
    pub fn has_phase_state(&self, phase: &str) -> bool {
        self.phase_state(phase).is_some()
    }

    fn phase_state(&self, phase: &str) -> Option<serde_json::Value> {
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .phase(phase)
            .cloned()
    }

    pub fn set_phase_state(&self, phase: &str, v: serde_json::Value) -> anyhow::Result<()> {
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_phase(phase, v)
    }

    pub fn clear_phase_state(&self, phase: &str) -> anyhow::Result<()> {
        self.store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear_phase(phase)
    }
}

/// A phase's record in the state file, checked when read back
/// ([`Ctx::recall`]).
pub trait Recalled: serde::de::DeserializeOwned {
    fn check(&self, cfg: &Config) -> Result<(), String>;
}

/// A registry digest as phase 2 records it: `sha256:` and 64 hex digits.
pub fn check_digest(d: &str) -> Result<(), String> {
    crate::util::is_sha256_digest(d)
        .then_some(())
        .ok_or_else(|| format!("{d:?} is not a sha256 digest"))
}

/// What `eshop phases` lists about a phase.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    pub number: u8,
    pub name: &'static str,
    pub about: &'static str,
    pub targets: &'static [Target],
}

impl Info {
    pub const fn new(
        number: u8,
        name: &'static str,
        about: &'static str,
        targets: &'static [Target],
    ) -> Info {
        Info {
            number,
            name,
            about,
            targets,
        }
    }
}

/// Runs on both targets.
pub const EVERYWHERE: &[Target] = &[Target::Local, Target::Aws];
/// Runs on AWS only.
pub const AWS_ONLY: &[Target] = &[Target::Aws];

/// The contract every phase keeps. `plan` touches nothing; `apply`
/// converges and is safe to re-run, also after a crash; `destroy` removes
/// exactly what the phase owns, found by its labels; `status` says what
/// exists and whether it is healthy.
pub trait Phase: Sync {
    const INFO: Info;

    /// Why this phase has nothing to do under this configuration (no
    /// cluster, nothing configured), asked once by the runner before
    /// plan, apply and status, like kubeadm's RunIf. Destroy is never
    /// skipped: it finds what the phase owns by label, whatever the
    /// configuration says today.
    fn skip(&self, _cfg: &Config) -> Option<String> {
        None
    }
    fn plan(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<Vec<Change>>> + Send;
    fn apply(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
    fn destroy(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<Outcome>> + Send;
    fn status(&self, ctx: &Ctx) -> impl Future<Output = anyhow::Result<Vec<Status>>> + Send;
    /// Writes the phase's rendered templates for review; returns the files.
    fn render(&self, _ctx: &Ctx, _out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        Ok(Vec::new())
    }
}

/// A phase as the runner holds it (the registry is a list of different
/// phases, so their futures are boxed here, once, for all of them).
pub trait Runnable: Sync {
    fn info(&self) -> Info;
    fn skip(&self, cfg: &Config) -> Option<String>;
    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>>;
    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome>;
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome>;
    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>>;
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>>;
}

impl<P: Phase> Runnable for P {
    fn info(&self) -> Info {
        P::INFO
    }
    fn skip(&self, cfg: &Config) -> Option<String> {
        Phase::skip(self, cfg)
    }
    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>> {
        Box::pin(Phase::plan(self, ctx))
    }
    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(Phase::apply(self, ctx))
    }
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(Phase::destroy(self, ctx))
    }
    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>> {
        Box::pin(Phase::status(self, ctx))
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        Phase::render(self, ctx, out)
    }
}

/// The skip reason of the phases that need a cluster.
pub fn needs_cluster(cfg: &Config) -> Option<String> {
    (cfg.kube.mode == crate::config::kube::Mode::Off).then(|| {
        "no cluster (kubernetes.mode = \"off\"; set \"existing\" with a kubeconfig context such as kind's, or \"bootstrap\" with nodes)".to_owned()
    })
}

/// What [`remove_labelled`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    Containers,
    VolumesAndImages,
    All,
}

/// Removes this project's and target's labelled containers, volumes (only
/// with --purge-data; otherwise says what it kept) and images; with
/// `phase`, only that phase's. Found by label, so no state file is needed.
pub async fn remove_labelled(
    ctx: &Ctx,
    engine: &Engine,
    phase: Option<&str>,
    ui_phase: &str,
    kinds: Kinds,
) -> anyhow::Result<usize> {
    let (p, t) = (ctx.config.project.as_str(), ctx.config.target.as_str());
    let mut n = 0;
    if kinds != Kinds::VolumesAndImages {
        for c in engine.containers(p, t, phase).await? {
            let name = c.names.and_then(|n| n.first().cloned()).unwrap_or_default();
            let name = name.trim_start_matches('/');
            engine.remove_container(name).await?;
            ctx.ui.info(ui_phase, &format!("removed container {name}"));
            n += 1;
        }
    }
    if kinds == Kinds::Containers {
        return Ok(n);
    }
    let vols = engine.volumes(p, t, phase).await?;
    if ctx.purge_data {
        for v in vols {
            engine.remove_volume(&v).await?;
            ctx.ui.info(ui_phase, &format!("removed volume {v}"));
            n += 1;
        }
    } else if !vols.is_empty() {
        ctx.ui.info(
            ui_phase,
            &format!(
                "kept volume(s) {} (use --purge-data to delete data)",
                vols.join(", ")
            ),
        );
    }
    for (id, tags) in engine.images(p, t, phase).await? {
        // By tag first, so layers shared with untagged look-alikes stay.
        for tag in &tags {
            engine.remove_image(tag).await?;
        }
        engine.remove_image(&id).await?;
        ctx.ui
            .info(ui_phase, &format!("removed image {}", tags.join(", ")));
        n += 1;
    }
    Ok(n)
}

/// In execution order.
pub fn registry() -> Vec<&'static dyn Runnable> {
    vec![
        &build::Build,
        &images::Images,
        &infra::Infra,
        &schedule::Schedule,
        &kubernetes::Kubernetes,
        &security::Security,
        &monitoring::Monitoring,
        &pipeline::Pipeline,
        &config::Configure,
        &apm::Apm,
    ]
}

/// By number ("2", "02") or name ("images").
pub fn find(key: &str) -> Option<&'static dyn Runnable> {
    let n: Option<u8> = key.parse().ok();
    registry()
        .into_iter()
        .find(|p| Some(p.info().number) == n || p.info().name == key)
}
