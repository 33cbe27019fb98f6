//! Phase 2, images: one image per service of the catalogue, tagged by
//! content hash, pushed to the configured registry; on the local target
//! also run them: a labelled network, a volume per database-owning
//! service, one container per service with a healthcheck, then wait until
//! every one is healthy and load the demo data into an empty shop.
//!
//! Idempotency comes from the content: the tag is the hash of the rendered
//! Dockerfile and everything copied into the image, and each container
//! carries a hash of its whole spec (`eshop/spec`). Equal hash, nothing to do.

use super::local::{container_name, network_name, volume_name};
use super::{
    check_digest, Action, Change, Ctx, Info, Outcome, Phase, Recalled, Status, EVERYWHERE,
};
use crate::config::{Config, Target, Variant};
use crate::engines::docker::{self, Engine, Health};
use crate::phases::build::built_binaries;
use crate::shop::Service;
use crate::util::{content_tag, poll_until, Pace, Tar};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod container;
mod demo;

pub(crate) use container::container_spec;

pub struct Images;

pub const NAME: &str = "images";
const RUNTIME_DOCKERFILE: &str = include_str!("../../../templates/images/Dockerfile.runtime");
const MULTISTAGE_DOCKERFILE: &str = include_str!("../../../templates/images/Dockerfile.multistage");
/// Where a database-owning service keeps its SQLite file in the container.
pub(super) const DATA_DIR: &str = "/data";

/// An image ready to build: its reference and the build context.
pub struct Planned {
    svc: &'static Service,
    repo: String,
    tag: String,
    /// None until phase 1 has built the binary (plan only).
    context: Option<Vec<u8>>,
}

impl Planned {
    fn reference(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
}

pub fn repo(cfg: &Config, svc: &str) -> String {
    if cfg.registry.is_empty() {
        format!("{}-{svc}", cfg.project)
    } else {
        format!("{}/{}-{svc}", cfg.registry, cfg.project)
    }
}

fn dockerfile(cfg: &Config, svc: &Service) -> anyhow::Result<String> {
    let vars = [
        ("service", svc.name.to_owned()),
        ("port", svc.port.to_string()),
        ("base_image", cfg.base_image.clone()),
        ("builder_image", cfg.builder_image.clone()),
        ("data_dir", DATA_DIR.to_owned()),
    ];
    let flags: &[&str] = if svc.database { &["data"] } else { &[] };
    let template = match cfg.variant {
        Variant::Runtime => RUNTIME_DOCKERFILE,
        Variant::Multistage => MULTISTAGE_DOCKERFILE,
    };
    crate::render::render_pairs(template, &vars, flags)
}

/// For the multi-stage variant the context is the workspace source.
fn add_sources(t: &mut Tar, root: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n == "target" || n.starts_with('.') {
            continue;
        }
        let path = e.path();
        let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            t.dir(&rel)?;
            add_sources(t, root, &path)?;
        } else {
            t.file(&rel, 0o644, &std::fs::read(&path)?)?;
        }
    }
    Ok(())
}

fn plan_images(ctx: &Ctx) -> anyhow::Result<Vec<Planned>> {
    let cfg = &ctx.config;
    let bins = built_binaries(ctx);
    let mut out = Vec::new();
    for svc in cfg.shop {
        let df = dockerfile(cfg, svc)?;
        let context = match cfg.variant {
            Variant::Runtime => match &bins {
                Some(b) => {
                    let path = &b[svc.name];
                    let bin = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                    let mut t = Tar::new();
                    t.file("Dockerfile", 0o644, df.as_bytes())?;
                    t.file(svc.name, 0o755, &bin)?;
                    if svc.database {
                        // COPY chowns the entries it copies, not the
                        // directories it creates: ship the data dir as an
                        // entry so it belongs to the service user.
                        t.dir("rootfs")?;
                        t.dir(&format!("rootfs{DATA_DIR}"))?;
                    }
                    Some(t.finish()?)
                }
                None => None,
            },
            Variant::Multistage => {
                let mut t = Tar::new();
                t.file("Dockerfile", 0o644, df.as_bytes())?;
                for f in ["Cargo.toml", "Cargo.lock"] {
                    t.file(f, 0o644, &std::fs::read(cfg.source_dir.join(f))?)?;
                }
                for d in ["services", "src", "templates"] {
                    let p = cfg.source_dir.join(d);
                    if p.is_dir() {
                        t.dir(d)?;
                        add_sources(&mut t, &cfg.source_dir, &p)?;
                    }
                }
                Some(t.finish()?)
            }
        };
        let tag = match &context {
            Some(c) => content_tag(c),
            None => "pending-build".to_owned(),
        };
        out.push(Planned {
            svc,
            repo: repo(cfg, svc.name),
            tag,
            context,
        });
    }
    Ok(out)
}

/// Service → the reference a cluster should pull: `repo:tag@digest` once
/// pushed (the digest pins the content; the tag tells people what it is).
fn current(images: &[Planned], pushed: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    images
        .iter()
        .map(|p| {
            let r = p.reference();
            let pinned = match pushed.get(&r) {
                Some(d) if !d.is_empty() => format!("{r}@{d}"),
                _ => r,
            };
            (p.svc.name.to_owned(), pinned)
        })
        .collect()
}

/// What phase 2 records: per reference the digest the registry gave it,
/// and per service the reference phase 5 deploys.
#[derive(Default, PartialEq, Serialize, Deserialize)]
struct Recorded {
    #[serde(default)]
    pushed: BTreeMap<String, String>,
    #[serde(default)]
    current: BTreeMap<String, String>,
}

impl Recalled for Recorded {
    fn check(&self, cfg: &Config) -> Result<(), String> {
        for (r, digest) in &self.pushed {
            check_reference(r)?;
            if !digest.is_empty() {
                check_digest(digest)?;
            }
        }
        for (svc, r) in &self.current {
            if crate::shop::find(cfg.shop, svc).is_none() {
                return Err(format!(
                    "an image for {svc:?}, which is not a service of the shop"
                ));
            }
            check_reference(r)?;
        }
        Ok(())
    }
}

/// An image reference read back from the state file: the characters an
/// image reference may hold, and a digest that is a digest.
fn check_reference(r: &str) -> Result<(), String> {
    let kept = crate::config::check_image_ref(r).map_err(|e| format!("{r:?}: {e}"))?;
    if kept != r {
        return Err(format!("{r:?}: surrounding whitespace"));
    }
    match r.split_once('@') {
        Some((_, d)) => check_digest(d),
        None => Ok(()),
    }
}

fn recorded(ctx: &Ctx) -> Recorded {
    ctx.recall(NAME).unwrap_or_default()
}

/// What phase 2 last made current, for phase 5 (None before any push).
pub fn current_images(ctx: &Ctx) -> Option<BTreeMap<String, String>> {
    Some(recorded(ctx).current).filter(|c| !c.is_empty())
}

impl Images {
    /// The image's digest in the registry, asked every time: the state
    /// file only remembers what was pushed, and a wiped or replaced
    /// registry must be refilled.
    async fn in_registry(
        &self,
        ctx: &Ctx,
        engine: &Engine,
        p: &Planned,
    ) -> anyhow::Result<Option<String>> {
        let creds = crate::engines::registry_auth::credentials(
            &ctx.config.registry,
            ctx.config.registry_auth.as_ref(),
        );
        engine.registry_digest(&p.reference(), creds).await
    }

    async fn plan_now(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let images = plan_images(ctx)?;
        let mut plan = Vec::new();
        for p in &images {
            let r = p.reference();
            if p.context.is_none() {
                plan.push(Change::new(
                    format!("image {}", p.repo),
                    Action::Create,
                    "after phase 1 builds the binary",
                ));
                continue;
            }
            plan.push(if engine.image_id(&r).await?.is_some() {
                Change::new(format!("image {r}"), Action::NoOp, "content unchanged")
            } else {
                Change::new(format!("image {r}"), Action::Create, "new content hash")
            });
            if cfg.push {
                plan.push(match self.in_registry(ctx, engine, p).await? {
                    Some(_) => Change::new(format!("push {r}"), Action::NoOp, "in the registry"),
                    None => Change::new(
                        format!("push {r}"),
                        Action::Create,
                        format!("not in {}", cfg.registry),
                    ),
                });
            }
        }
        if cfg.target == Target::Local {
            plan.extend(self.plan_local(ctx, engine, &images).await?);
        }
        Ok(plan)
    }

    /// The network, the data volumes and the containers.
    async fn plan_local(
        &self,
        ctx: &Ctx,
        engine: &Engine,
        images: &[Planned],
    ) -> anyhow::Result<Vec<Change>> {
        let cfg = &ctx.config;
        let (project, target) = (cfg.project.as_str(), cfg.target.as_str());
        let mut plan = Vec::new();
        let exists = |what: String, yes: bool| {
            if yes {
                Change::new(what, Action::NoOp, "exists")
            } else {
                Change::new(what, Action::Create, "absent")
            }
        };
        let net = network_name(cfg);
        let nets = engine.networks(project, target, None).await?;
        plan.push(exists(format!("network {net}"), nets.contains(&net)));
        let vols = engine.volumes(project, target, None).await?;
        for svc in cfg.shop.iter().filter(|s| s.database) {
            let vol = volume_name(cfg, svc);
            plan.push(exists(format!("volume {vol}"), vols.contains(&vol)));
        }
        let have = engine.containers_by_name(project, target).await?;
        for p in images {
            let name = container_name(cfg, p.svc.name);
            let what = format!("container {name}");
            let (_, spec) = container_spec(ctx, p.svc, &p.reference(), false)?.body();
            let built = p.context.is_some();
            plan.push(match have.get(&name) {
                None => Change::new(what, Action::Create, "absent"),
                Some(f) if f.spec == spec && f.running && built => {
                    Change::new(what, Action::NoOp, "running, spec unchanged")
                }
                Some(f) if f.spec == spec && built => {
                    Change::new(what, Action::Update, "not running")
                }
                Some(_) => Change::new(what, Action::Update, "image or settings changed"),
            });
        }
        Ok(plan)
    }

    async fn build(
        &self,
        ctx: &Ctx,
        engine: &Engine,
        p: &Planned,
        context: &[u8],
    ) -> anyhow::Result<()> {
        let cfg = &ctx.config;
        let r = p.reference();
        let progress = ctx.ui.spinner(NAME, &format!("building {r}"));
        let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
        for (k, v) in [
            (
                "org.opencontainers.image.title",
                format!("eshop {}", p.svc.name),
            ),
            (
                "org.opencontainers.image.version",
                env!("CARGO_PKG_VERSION").into(),
            ),
            ("org.opencontainers.image.revision", p.tag.clone()),
            ("org.opencontainers.image.licenses", "Apache-2.0".into()),
        ] {
            labels.insert(k.into(), v);
        }
        engine
            .build(&r, context.to_vec(), labels, |line| {
                progress.set_message(format!("{r}: {line}"))
            })
            .await?;
        progress.finish(&format!("built {r}"));
        Ok(())
    }

    /// Pushes unless the registry already holds the tag; returns the
    /// digest and whether it pushed.
    async fn push(
        &self,
        ctx: &Ctx,
        engine: &Engine,
        p: &Planned,
    ) -> anyhow::Result<(String, bool)> {
        let r = p.reference();
        if let Some(d) = self.in_registry(ctx, engine, p).await? {
            ctx.ui.debug(NAME, &format!("{r} is in the registry ({d})"));
            return Ok((d, false));
        }
        let progress = ctx.ui.spinner(NAME, &format!("pushing {r}"));
        let creds = crate::engines::registry_auth::credentials(
            &ctx.config.registry,
            ctx.config.registry_auth.as_ref(),
        );
        let digest = engine
            .push(&p.repo, &p.tag, creds, |line| {
                progress.set_message(format!("{r}: {line}"))
            })
            .await?
            .unwrap_or_default();
        progress.finish(&format!("pushed {r} {digest}"));
        Ok((digest, true))
    }

    async fn apply_now(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let (mut changed, images) = self.build_and_push(ctx, cfg.push).await?;
        if cfg.target == Target::Local {
            let engine = ctx.docker().await?;
            changed += self.run_local(ctx, engine, &images).await?;
        }
        Ok(Outcome { changed })
    }

    /// One content-tagged image per service (from phase 1's binaries),
    /// pushed when `push`: what apply does before running anything, and
    /// what the pipeline's image and push stages call. Returns the
    /// changes and the images.
    pub async fn build_and_push(
        &self,
        ctx: &Ctx,
        push: bool,
    ) -> anyhow::Result<(usize, Vec<Planned>)> {
        let engine = ctx.docker().await?;
        let images = plan_images(ctx)?;
        let mut changed = 0;
        let before = recorded(ctx);
        let mut pushed = before.pushed.clone();
        for p in &images {
            let Some(context) = &p.context else {
                anyhow::bail!(
                    "no binary for {}: run phase 1 (eshop phase build apply) first",
                    p.svc.name
                );
            };
            let r = p.reference();
            if engine.image_id(&r).await?.is_none() {
                self.build(ctx, engine, p, context).await?;
                changed += 1;
            } else {
                ctx.ui.debug(NAME, &format!("{r} exists"));
            }
            if push {
                let (digest, did) = self.push(ctx, engine, p).await?;
                changed += usize::from(did);
                if pushed.get(&r) != Some(&digest) {
                    pushed.insert(r.clone(), digest);
                    let record = Recorded {
                        current: current(&images, &pushed),
                        pushed: pushed.clone(),
                    };
                    ctx.set_phase_state(NAME, serde_json::to_value(&record)?)?;
                }
            }
        }
        // Phase 5 deploys what this run made current; written only when it
        // moved, so a no-op run leaves the state file alone.
        let now = Recorded {
            current: current(&images, &pushed),
            pushed,
        };
        if push && recorded(ctx) != now {
            ctx.set_phase_state(NAME, serde_json::to_value(&now)?)?;
        }
        Ok((changed, images))
    }

    /// The local target: network, volumes, one container per service in
    /// catalogue order, then wait until every one is healthy.
    pub async fn run_local(
        &self,
        ctx: &Ctx,
        engine: &Engine,
        images: &[Planned],
    ) -> anyhow::Result<usize> {
        let cfg = &ctx.config;
        let mut changed = 0;
        let labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
        if engine
            .ensure_network(&network_name(cfg), labels.clone())
            .await?
        {
            changed += 1;
        }
        for svc in cfg.shop.iter().filter(|s| s.database) {
            if engine
                .ensure_volume(&volume_name(cfg, svc), labels.clone())
                .await?
            {
                changed += 1;
            }
        }
        let have = engine
            .containers_by_name(&cfg.project, cfg.target.as_str())
            .await?;
        for p in images {
            let name = container_name(cfg, p.svc.name);
            let spec = container_spec(ctx, p.svc, &p.reference(), true)?;
            if engine.converge(&name, &spec, &have).await? {
                ctx.ui.info(NAME, &format!("started {name}"));
                changed += 1;
            }
        }
        self.wait_healthy(ctx, engine).await?;
        let url = super::local::shop_url(cfg);
        ctx.ui.event(
            "result",
            Some(NAME),
            &format!("the shop is up: {url}"),
            json!({"url": url}),
        );
        if cfg.demo_data {
            changed += demo::load_demo(ctx).await?;
        }
        Ok(changed)
    }

    async fn wait_healthy(&self, ctx: &Ctx, engine: &Engine) -> anyhow::Result<()> {
        let cfg = &ctx.config;
        let progress = ctx.ui.spinner(NAME, "waiting for /readyz");
        poll_until(
            cfg.ready_timeout,
            Pace::Every(std::time::Duration::from_millis(250)),
            "services not ready (see `docker logs`)",
            || async {
                let mut all = true;
                for svc in cfg.shop {
                    let name = container_name(cfg, svc.name);
                    match engine.health(&name).await? {
                        Health::Healthy => {}
                        Health::Starting => all = false,
                        Health::Unhealthy | Health::Absent => anyhow::bail!(
                            "container {name} is unhealthy or stopped; see `docker logs {name}`"
                        ),
                    }
                }
                Ok(all.then_some(()))
            },
        )
        .await?;
        progress.finish("all services ready");
        Ok(())
    }

    async fn status_now(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let mut out = Vec::new();
        for (_, tags) in engine
            .images(&cfg.project, cfg.target.as_str(), None)
            .await?
        {
            for t in tags {
                out.push(Status {
                    resource: format!("image {t}"),
                    state: "present".into(),
                    healthy: true,
                });
            }
        }
        // Containers run on the local target only; elsewhere the shop runs
        // on the cluster and phase 5 reports it.
        if cfg.target != Target::Local {
            return Ok(out);
        }
        for svc in cfg.shop {
            let name = container_name(cfg, svc.name);
            let (state, healthy) = match engine.health(&name).await? {
                Health::Healthy => ("running, healthy", true),
                Health::Unhealthy => ("unhealthy or stopped", false),
                Health::Starting => ("starting", false),
                Health::Absent => ("absent", false),
            };
            out.push(Status {
                resource: format!("container {name}"),
                state: state.into(),
                healthy,
            });
        }
        Ok(out)
    }
}

/// What `eshop phases` says this phase does.
const ABOUT: &str =
    "build one image per service (content-hash tags), push them; on local also run them";

impl Phase for Images {
    const INFO: Info = Info::new(2, NAME, ABOUT, EVERYWHERE);

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        demo::warn_if_exposed(ctx);
        self.plan_now(ctx).await
    }

    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        demo::warn_if_exposed(ctx);
        self.apply_now(ctx).await
    }

    /// Everything labelled for this project and target, found by label so
    /// it works without the state file; volumes only with --purge-data.
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        // Containers first (of every phase: they all sit on this
        // phase's network), then the network, volumes and images.
        let mut changed =
            super::remove_labelled(ctx, engine, None, NAME, super::Kinds::Containers).await?;
        for n in engine
            .networks(&cfg.project, cfg.target.as_str(), None)
            .await?
        {
            engine.remove_network(&n).await?;
            ctx.ui.info(NAME, &format!("removed network {n}"));
            changed += 1;
        }
        changed +=
            super::remove_labelled(ctx, engine, None, NAME, super::Kinds::VolumesAndImages).await?;
        ctx.clear_phase_state(NAME)?;
        Ok(Outcome { changed })
    }

    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        self.status_now(ctx).await
    }

    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for svc in ctx.config.shop {
            let dir = out.join(svc.name);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("Dockerfile");
            std::fs::write(&path, dockerfile(&ctx.config, svc)?)?;
            files.push(path);
        }
        Ok(files)
    }
}
