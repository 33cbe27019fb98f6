//! Phase 2, images: one image per service, tagged by content hash, pushed to
//! the configured registry; on the local target also run them: a labelled
//! network, a volume for inventory's SQLite, one container per service with
//! a healthcheck, then wait until both are healthy.
//!
//! Idempotency comes from the content: the tag is the hash of the rendered
//! Dockerfile and everything copied into the image, and each container
//! carries a hash of its whole spec (`eshop/spec`). Equal hash, nothing to do.

use super::{Action, BoxFut, Change, Ctx, Outcome, Phase, Status};
use crate::config::{Config, Target, Variant};
use crate::engines::docker::{self, ContainerSpec, Engine};
use crate::phases::build::{built_binaries, hex};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Images;

const NAME: &str = "images";
const RUNTIME_DOCKERFILE: &str = include_str!("../../templates/images/Dockerfile.runtime");
const MULTISTAGE_DOCKERFILE: &str = include_str!("../../templates/images/Dockerfile.multistage");
/// Where inventory keeps its SQLite file inside the container.
const DATA_DIR: &str = "/data";

struct Svc {
    name: &'static str,
    port: u16,
    data: bool,
}

const SVCS: [Svc; 2] = [
    Svc {
        name: "inventory",
        port: 8081,
        data: true,
    },
    Svc {
        name: "pricing",
        port: 8080,
        data: false,
    },
];

/// An image ready to build: its reference and the build context.
struct Planned {
    svc: &'static Svc,
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

pub fn container_name(cfg: &Config, svc: &str) -> String {
    format!("eshop-{}-{svc}", cfg.project)
}

pub fn network_name(cfg: &Config) -> String {
    format!("eshop-{}", cfg.project)
}

pub fn volume_name(cfg: &Config) -> String {
    format!("eshop-{}-inventory-data", cfg.project)
}

fn dockerfile(cfg: &Config, svc: &Svc) -> anyhow::Result<String> {
    let vars = BTreeMap::from([
        ("service", svc.name.to_owned()),
        ("port", svc.port.to_string()),
        ("base_image", cfg.base_image.clone()),
        ("builder_image", cfg.builder_image.clone()),
        ("data_dir", DATA_DIR.to_owned()),
    ]);
    let flags: &[&str] = if svc.data { &["data"] } else { &[] };
    let template = match cfg.variant {
        Variant::Runtime => RUNTIME_DOCKERFILE,
        Variant::Multistage => MULTISTAGE_DOCKERFILE,
    };
    crate::render::render(template, &vars, flags)
}

/// A tar with fixed mtimes and owners, so equal inputs give equal bytes
/// and therefore equal tags.
struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.b.append_data(&mut h, path, bytes)?;
        Ok(())
    }
    fn dir(&mut self, path: &str) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Directory);
        self.b.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    }
    fn finish(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.b.into_inner()?)
    }
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
    for svc in &SVCS {
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
                    if svc.data {
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
            Some(c) => hex(&Sha256::digest(c))[..16].to_owned(),
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

/// What phase 2 last made current, for phase 5 (None before any push).
pub fn current_images(ctx: &Ctx) -> Option<BTreeMap<String, String>> {
    ctx.phase_state(NAME)
        .and_then(|s| serde_json::from_value(s.get("current")?.clone()).ok())
}

fn pushed(ctx: &Ctx) -> BTreeMap<String, String> {
    ctx.phase_state(NAME)
        .and_then(|s| serde_json::from_value(s.get("pushed")?.clone()).ok())
        .unwrap_or_default()
}

/// The whole desired container for a service.
fn container_spec(ctx: &Ctx, svc: &Svc, image_ref: &str) -> ContainerSpec {
    let cfg = &ctx.config;
    let mut env: Vec<String> = Vec::new();
    if svc.name == "pricing" {
        env.push(format!(
            "INVENTORY_URL=http://{}:8081",
            container_name(cfg, "inventory")
        ));
    }
    // Phase 10's trace export: the endpoint, and its credentials (the
    // container's environment is as private as Docker makes it).
    if let Some((endpoint, headers)) = cfg.apm.otlp() {
        env.push(format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"));
        env.push(format!("OTEL_SERVICE_NAME={}", svc.name));
        if let Some(h) = headers {
            env.push(format!("OTEL_EXPORTER_OTLP_HEADERS={}", h.expose()));
        }
    }
    if let Some(extra) = cfg.service_env.get(svc.name) {
        env.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    }
    let host_port = cfg.local_ports[svc.name];
    let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
    labels.insert("eshop/service".into(), svc.name.into());
    ContainerSpec {
        image: image_ref.to_owned(),
        env,
        labels,
        network: network_name(cfg),
        ports: vec![(svc.port, cfg.bind.to_string(), host_port)],
        volumes: if svc.data {
            vec![(volume_name(cfg), DATA_DIR.to_owned())]
        } else {
            Vec::new()
        },
        // Idle RSS is under 10 MB; 256 MiB leaves room for load and caches.
        memory_mib: 256,
    }
}

impl Images {
    async fn plan_now(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let images = plan_images(ctx)?;
        let pushed = pushed(ctx);
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
            if engine.image_id(&r).await?.is_some() {
                plan.push(Change::new(
                    format!("image {r}"),
                    Action::NoOp,
                    "content unchanged",
                ));
            } else {
                plan.push(Change::new(
                    format!("image {r}"),
                    Action::Create,
                    "new content hash",
                ));
            }
            if cfg.push {
                if pushed.contains_key(&r) {
                    plan.push(Change::new(
                        format!("push {r}"),
                        Action::NoOp,
                        "already pushed",
                    ));
                } else {
                    plan.push(Change::new(
                        format!("push {r}"),
                        Action::Create,
                        format!("to {}", cfg.registry),
                    ));
                }
            }
        }
        if cfg.target == Target::Local {
            let nets = engine
                .networks(&cfg.project, cfg.target.as_str(), None)
                .await?;
            let net = network_name(cfg);
            plan.push(if nets.contains(&net) {
                Change::new(format!("network {net}"), Action::NoOp, "exists")
            } else {
                Change::new(format!("network {net}"), Action::Create, "absent")
            });
            let vols = engine
                .volumes(&cfg.project, cfg.target.as_str(), None)
                .await?;
            let vol = volume_name(cfg);
            plan.push(if vols.contains(&vol) {
                Change::new(format!("volume {vol}"), Action::NoOp, "exists")
            } else {
                Change::new(format!("volume {vol}"), Action::Create, "absent")
            });
            let have = engine
                .containers_by_name(&cfg.project, cfg.target.as_str())
                .await?;
            for p in &images {
                let name = container_name(cfg, p.svc.name);
                let (_, spec) = container_spec(ctx, p.svc, &p.reference()).body();
                let change = match have.get(&name) {
                    None => Change::new(format!("container {name}"), Action::Create, "absent"),
                    Some(f) if f.spec == spec && f.running && p.context.is_some() => Change::new(
                        format!("container {name}"),
                        Action::NoOp,
                        "running, spec unchanged",
                    ),
                    Some(f) if f.spec == spec && p.context.is_some() => {
                        Change::new(format!("container {name}"), Action::Update, "not running")
                    }
                    Some(_) => Change::new(
                        format!("container {name}"),
                        Action::Update,
                        "image or settings changed",
                    ),
                };
                plan.push(change);
            }
        }
        Ok(plan)
    }

    async fn apply_now(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let engine = ctx.docker().await?;
        let images = plan_images(ctx)?;
        let mut changed = 0;
        let mut pushed = pushed(ctx);
        for p in &images {
            let Some(context) = &p.context else {
                anyhow::bail!(
                    "no binary for {}: run phase 1 (eshop phase build apply) first",
                    p.svc.name
                );
            };
            let r = p.reference();
            if engine.image_id(&r).await?.is_none() {
                let progress = ctx.ui.spinner(NAME, &format!("building {r}"));
                let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
                labels.insert(
                    "org.opencontainers.image.title".into(),
                    format!("eshop {}", p.svc.name),
                );
                labels.insert(
                    "org.opencontainers.image.version".into(),
                    env!("CARGO_PKG_VERSION").into(),
                );
                labels.insert("org.opencontainers.image.revision".into(), p.tag.clone());
                labels.insert(
                    "org.opencontainers.image.licenses".into(),
                    "Apache-2.0".into(),
                );
                engine
                    .build(&r, context.clone(), labels, |line| {
                        progress.set_message(format!("{r}: {line}"))
                    })
                    .await?;
                progress.finish(&format!("built {r}"));
                changed += 1;
            } else {
                ctx.ui.debug(NAME, &format!("{r} exists"));
            }
            if cfg.push && !pushed.contains_key(&r) {
                let progress = ctx.ui.spinner(NAME, &format!("pushing {r}"));
                let digest = engine
                    .push(
                        &p.repo,
                        &p.tag,
                        docker::credentials(&cfg.registry, cfg.registry_auth.as_ref()),
                        |line| progress.set_message(format!("{r}: {line}")),
                    )
                    .await?;
                let digest = digest.unwrap_or_default();
                progress.finish(&format!("pushed {r} {digest}"));
                pushed.insert(r.clone(), digest);
                ctx.set_phase_state(
                    NAME,
                    json!({"pushed": pushed, "current": current(&images, &pushed)}),
                )?;
                changed += 1;
            }
        }
        // Phase 5 deploys what this run made current; written only when it
        // moved, so a no-op run leaves the state file alone.
        let now = current(&images, &pushed);
        if cfg.push
            && ctx
                .phase_state(NAME)
                .and_then(|s| s.get("current").cloned())
                != Some(json!(now))
        {
            ctx.set_phase_state(NAME, json!({"pushed": pushed, "current": now}))?;
        }
        if cfg.target != Target::Local {
            return Ok(Outcome { changed });
        }

        let labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
        if engine
            .ensure_network(&network_name(cfg), labels.clone())
            .await?
        {
            changed += 1;
        }
        if engine.ensure_volume(&volume_name(cfg), labels).await? {
            changed += 1;
        }
        let have = engine
            .containers_by_name(&cfg.project, cfg.target.as_str())
            .await?;
        for p in &images {
            let name = container_name(cfg, p.svc.name);
            let spec = container_spec(ctx, p.svc, &p.reference());
            if engine.converge(&name, &spec, &have).await? {
                ctx.ui.info(NAME, &format!("started {name}"));
                changed += 1;
            }
        }
        self.wait_healthy(ctx, engine).await?;
        ctx.ui.event(
            "result",
            Some(NAME),
            &format!(
                "the shop is up: http://{}:{}/",
                display_host(cfg),
                cfg.host_port(crate::shop::public(cfg.shop))
            ),
            json!({"url": format!("http://{}:{}/", display_host(cfg), cfg.host_port(crate::shop::public(cfg.shop)))}),
        );
        Ok(Outcome { changed })
    }

    async fn wait_healthy(&self, ctx: &Ctx, engine: &Engine) -> anyhow::Result<()> {
        let cfg = &ctx.config;
        let progress = ctx.ui.spinner(NAME, "waiting for /readyz");
        let deadline = std::time::Instant::now() + cfg.ready_timeout;
        loop {
            let mut all = true;
            for svc in &SVCS {
                let name = container_name(cfg, svc.name);
                match engine.health(&name).await? {
                    Some(true) => {}
                    Some(false) => {
                        anyhow::bail!(
                            "container {name} is unhealthy or stopped; see `docker logs {name}`"
                        )
                    }
                    _ => all = false,
                }
            }
            if all {
                progress.finish("all services ready");
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "services not ready after {:?}; see `docker logs`",
                    cfg.ready_timeout
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

pub fn display_host(cfg: &Config) -> String {
    if cfg.bind.is_unspecified() {
        "127.0.0.1".into()
    } else {
        cfg.bind.to_string()
    }
}

impl Phase for Images {
    fn number(&self) -> u8 {
        2
    }
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "build one image per service (content-hash tags), push them; on local also run them"
    }
    fn targets(&self) -> &'static [Target] {
        &[Target::Local, Target::Aws]
    }

    fn plan<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Change>> {
        Box::pin(self.plan_now(ctx))
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(self.apply_now(ctx))
    }

    /// Everything labelled for this project and target, found by label so
    /// it works without the state file; volumes only with --purge-data.
    fn destroy<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Outcome> {
        Box::pin(async move {
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
                super::remove_labelled(ctx, engine, None, NAME, super::Kinds::VolumesAndImages)
                    .await?;
            ctx.clear_phase_state(NAME)?;
            Ok(Outcome { changed })
        })
    }

    fn status<'a>(&'a self, ctx: &'a Ctx) -> BoxFut<'a, Vec<Status>> {
        Box::pin(async move {
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
            for svc in &SVCS {
                let name = container_name(cfg, svc.name);
                let st = match engine.health(&name).await {
                    Ok(Some(true)) => ("running, healthy", true),
                    Ok(Some(false)) => ("unhealthy or stopped", false),
                    Ok(None) => ("starting", false),
                    Err(_) => ("absent", false),
                };
                out.push(Status {
                    resource: format!("container {name}"),
                    state: st.0.into(),
                    healthy: st.1,
                });
            }
            Ok(out)
        })
    }

    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for svc in &SVCS {
            let dir = out.join(svc.name);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("Dockerfile");
            std::fs::write(&path, dockerfile(&ctx.config, svc)?)?;
            files.push(path);
        }
        Ok(files)
    }
}
