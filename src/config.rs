//! `eshop.toml` + `ESHOP_*` environment + flags, validated before anything
//! is touched. Precedence: flags > environment > file > defaults, for
//! every key through one helper ([`layer`]); relative paths are relative
//! to the config file's folder, everywhere.
//!
//! Every error names the key and, for file values, the line, so a typo
//! fails in milliseconds instead of half-way through a deployment.

pub mod apm;
pub mod aws;
pub mod kube;
mod layer;
mod pinned;
pub mod pipeline;
pub mod ssh;
pub use pinned::Pinned;
mod local;

use crate::shop::Service;
use layer::{within, Origin};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration problem; always exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Local,
    Aws,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Local => "local",
            Target::Aws => "aws",
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Target::Local),
            "aws" => Ok(Target::Aws),
            _ => Err(format!("unknown target {s:?}: expected local or aws")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Optimised, as benchmarked and shipped (`cargo build --release`).
    Release,
    /// cargo's debug build: what a pipeline's build stage has already
    /// compiled, so its images stage packs those binaries instead of
    /// compiling the workspace a second time.
    Dev,
}

impl Profile {
    /// cargo's folder under the target dir for this profile.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "debug",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Packages the binaries phase 1 built (works offline).
    Runtime,
    /// Compiles inside the image build (needs the builder image and crates.io).
    Multistage,
}

/// The file as written; every field optional so defaults live in one place.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    project: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    #[serde(default)]
    build: FileBuild,
    #[serde(default)]
    images: FileImages,
    /// Its keys follow the catalogue (`<service>_port`): checked by
    /// [`local::file_local`], not by serde.
    #[serde(default)]
    local: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    monitoring: FileMonitoring,
    #[serde(default)]
    services: BTreeMap<Spanned<String>, FileService>,
    #[serde(default)]
    aws: aws::FileAws,
    #[serde(default)]
    schedule: aws::FileSchedule,
    #[serde(default)]
    kubernetes: kube::FileKube,
    #[serde(default)]
    ssh: ssh::FileSsh,
    #[serde(default)]
    apm: apm::FileApm,
    #[serde(default)]
    pipeline: pipeline::FilePipeline,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBuild {
    source_dir: Option<Spanned<String>>,
    test: Option<bool>,
    profile: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImages {
    registry: Option<Spanned<String>>,
    base_image: Option<Spanned<String>>,
    builder_image: Option<Spanned<String>>,
    variant: Option<Variant>,
    push: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMonitoring {
    prometheus_image: Option<Spanned<String>>,
    grafana_image: Option<Spanned<String>>,
    kube_state_metrics_image: Option<Spanned<String>>,
    prometheus_port: Option<Spanned<i64>>,
    grafana_port: Option<Spanned<i64>>,
    scrape_interval_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// A credential: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `ESHOP_REGISTRY_USERNAME` / `ESHOP_REGISTRY_PASSWORD`: how phase 2
/// logs in to push (without them: `~/.docker/config.json`).
#[derive(Debug, Clone)]
pub struct RegistryAuth {
    pub username: String,
    pub password: Secret,
}

pub const REGISTRY_USERNAME_ENV: &str = "ESHOP_REGISTRY_USERNAME";
pub const REGISTRY_PASSWORD_ENV: &str = "ESHOP_REGISTRY_PASSWORD";
pub const GRAFANA_ADMIN_PASSWORD_ENV: &str = "ESHOP_GRAFANA_ADMIN_PASSWORD";

/// The validated configuration every phase reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub project: String,
    pub target: Target,
    /// Where the workspace with services/ lives.
    pub source_dir: PathBuf,
    /// Where state files go: `.eshop/` beside the config file.
    pub state_dir: PathBuf,
    /// The configuration file read (it may not exist: then defaults),
    /// for what must run eshop again with it (the push-to-deploy hook).
    pub config_file: PathBuf,
    pub build_test: bool,
    /// Which cargo profile phase 1 builds the services with.
    pub profile: Profile,
    /// Registry host[:port][/namespace]; empty = images stay local.
    pub registry: String,
    /// Credentials for `registry`, from the environment only.
    pub registry_auth: Option<RegistryAuth>,
    pub base_image: String,
    pub builder_image: String,
    pub variant: Variant,
    pub push: bool,
    pub bind: std::net::IpAddr,
    /// Where the local target publishes each catalogue entry
    /// (`local.<name>_port`); read it through [`Config::host_port`].
    pub local_ports: BTreeMap<&'static str, u16>,
    pub ready_timeout: std::time::Duration,
    /// Load the catalogue's demo records into empty services (local).
    pub demo_data: bool,
    pub prometheus_image: String,
    /// Empty: no Grafana.
    pub grafana_image: String,
    /// The local Grafana's admin password; None: Grafana's own default.
    pub grafana_admin_password: Option<Secret>,
    /// On Kubernetes: replicas, HPA and restarts for the dashboard and
    /// alerts. Empty: none.
    pub kube_state_metrics_image: String,
    pub prometheus_port: u16,
    pub grafana_port: u16,
    pub scrape_interval_secs: u16,
    /// Extra environment per service (`[services.pricing.env]`).
    pub service_env: BTreeMap<String, BTreeMap<String, String>>,
    pub aws: aws::Aws,
    pub schedule: aws::Schedule,
    pub kube: kube::Kube,
    pub ssh: ssh::Ssh,
    pub apm: apm::Apm,
    pub pipeline: pipeline::Pipeline,
    /// The services eshop builds and runs ([`crate::shop::SHOP`]; tests
    /// may hand in another catalogue).
    pub shop: &'static [Service],
}

/// A distroless-style base with glibc and CA certificates, non-root.
pub const DEFAULT_BASE_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";
pub const DEFAULT_BUILDER_IMAGE: &str = "rust:1.95-bookworm";
pub const DEFAULT_PROMETHEUS_IMAGE: &str = "prom/prometheus:v2.53.2";
pub const DEFAULT_GRAFANA_IMAGE: &str = "grafana/grafana:11.2.0";
pub const DEFAULT_KUBE_STATE_METRICS_IMAGE: &str =
    "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0";

/// Reads `ESHOP_*` variables; injectable so tests never mutate the process
/// environment.
pub trait EnvSource {
    fn var(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

/// Flags that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub target: Option<Target>,
}

impl Config {
    /// Loads `path` if it exists (a missing default file means "all
    /// defaults"; a missing explicit file is an error).
    pub fn load(
        path: &Path,
        explicit: bool,
        env: &dyn EnvSource,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(e) => return Err(ConfigError(format!("cannot read {}: {e}", path.display()))),
        };
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Self::parse(&text, path, &base, env, flags)
    }

    /// `text` read from `path`, whose folder is `base`, for the bundled
    /// shop.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn EnvSource,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::parse_for(crate::shop::SHOP, text, path, base, env, flags)
    }

    /// [`Config::parse`] for another catalogue (tests): its entries'
    /// `local.<name>_port` keys and `[services.<name>]` tables are the
    /// known ones.
    pub fn parse_for(
        shop: &'static [Service],
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn EnvSource,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let o = Origin {
            path,
            text,
            base,
            env,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| o.at(s))
                .unwrap_or_else(|| path.display().to_string());
            ConfigError(format!("{at}: {}", e.message().trim()))
        })?;

        let project = o
            .key("project", &file.project)
            .env("ESHOP_PROJECT")
            .or("eshop".to_owned(), check_name)?;
        let target = o.key("target", &file.target).env("ESHOP_TARGET").over(
            flags.target,
            Target::Local,
            str::parse,
        )?;
        let images = images(&o, &file.images)?;
        let local = local::local(&o, &file.local, &file.monitoring, shop)?;
        let monitoring = monitoring(&o, &file.monitoring)?;

        let mut service_env = BTreeMap::new();
        for (name, svc) in file.services {
            known_service(&o, shop, &name, "services")?;
            let mut env = BTreeMap::new();
            for (k, v) in svc.env {
                let key = format!("services.{}.env.{}", name.get_ref(), k.get_ref());
                if !is_env_name(k.get_ref()) {
                    return o.err(
                        k.span(),
                        &key,
                        "an environment variable name is letters, digits and _, not starting with a digit",
                    );
                }
                if v.get_ref().contains('\0') {
                    return o.err(v.span(), &key, "an environment value holds no NUL byte");
                }
                env.insert(k.into_inner(), v.into_inner());
            }
            service_env.insert(name.into_inner(), env);
        }

        let aws = aws::aws(&o, &file.aws)?;
        let schedule = aws::schedule(&o, &file.schedule)?;
        let state_dir = base.join(".eshop");
        let kube = kube::kube(
            &o,
            &file.kubernetes,
            &state_dir,
            &project,
            target,
            shop,
            aws.node_port as u16,
        )?;
        let ssh = ssh::ssh(&o, &file.ssh, target)?;
        let apm = apm::apm(&o, &file.apm)?;
        let pipeline = pipeline::pipeline(&o, &file.pipeline, &project)?;
        let source_dir = o
            .key("build.source_dir", &file.build.source_dir)
            // Push-to-deploy builds a pushed commit's work tree with the
            // project's own configuration and state.
            .env("ESHOP_BUILD_SOURCE_DIR")
            .or(base.to_path_buf(), |d| Ok(o.path(d)))?;
        let profile = o
            .key("build.profile", &file.build.profile)
            .env("ESHOP_BUILD_PROFILE")
            .or(Profile::Release, |p| match p {
                "release" => Ok(Profile::Release),
                "dev" => Ok(Profile::Dev),
                _ => Err(format!("{p:?} is not a profile: release or dev")),
            })?;
        Ok(Config {
            project,
            target,
            source_dir,
            config_file: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            state_dir,
            build_test: file.build.test.unwrap_or(false),
            profile,
            registry: images.registry,
            registry_auth: registry_auth(&o)?,
            base_image: images.base_image,
            builder_image: images.builder_image,
            variant: file.images.variant.unwrap_or(Variant::Runtime),
            push: images.push,
            bind: local.bind,
            local_ports: local.ports,
            ready_timeout: local.ready_timeout,
            demo_data: local.demo_data,
            prometheus_image: monitoring.prometheus_image,
            grafana_image: monitoring.grafana_image,
            grafana_admin_password: o
                .secret(GRAFANA_ADMIN_PASSWORD_ENV)
                .get(|p| Ok(Secret(p.to_owned())))?,
            kube_state_metrics_image: monitoring.kube_state_metrics_image,
            prometheus_port: local.prometheus_port,
            grafana_port: local.grafana_port,
            scrape_interval_secs: monitoring.scrape_interval_secs,
            service_env,
            aws,
            schedule,
            kube,
            ssh,
            apm,
            pipeline,
            shop,
        })
    }

    /// The host port the local target publishes `svc` on:
    /// `local.<name>_port`, by default the service's own port.
    pub fn host_port(&self, svc: &Service) -> u16 {
        self.local_ports.get(svc.name).copied().unwrap_or(svc.port)
    }
}

/// The `[images]` keys phase 2 reads.
struct Images {
    registry: String,
    base_image: String,
    builder_image: String,
    push: bool,
}

fn images(o: &Origin, f: &FileImages) -> Result<Images, ConfigError> {
    let registry = o
        .key("images.registry", &f.registry)
        .env("ESHOP_IMAGES_REGISTRY")
        .or(String::new(), check_registry)?;
    let base_image = o
        .key("images.base_image", &f.base_image)
        .env("ESHOP_IMAGES_BASE_IMAGE")
        .or(DEFAULT_BASE_IMAGE.to_owned(), check_image_ref)?;
    let builder_image = o
        .key("images.builder_image", &f.builder_image)
        .or(DEFAULT_BUILDER_IMAGE.to_owned(), check_image_ref)?;
    // Pushing is what a registry is for, unless said otherwise.
    let push = o
        .key("images.push", &f.push)
        .env("ESHOP_IMAGES_PUSH")
        .or(!registry.is_empty(), |b| Ok(*b))?;
    if push && registry.is_empty() {
        return Err(ConfigError(
            "images.push is true but images.registry is empty: set a registry (e.g. \"localhost:5000\" or \"docker.io/you\")".into(),
        ));
    }
    Ok(Images {
        registry,
        base_image,
        builder_image,
        push,
    })
}

/// The `[monitoring]` keys but its ports (checked with the other
/// published ports in [`local`]).
struct Monitoring {
    prometheus_image: String,
    grafana_image: String,
    kube_state_metrics_image: String,
    scrape_interval_secs: u16,
}

fn monitoring(o: &Origin, f: &FileMonitoring) -> Result<Monitoring, ConfigError> {
    let prometheus_image = o
        .key("monitoring.prometheus_image", &f.prometheus_image)
        .env("ESHOP_MONITORING_PROMETHEUS_IMAGE")
        .or(DEFAULT_PROMETHEUS_IMAGE.to_owned(), check_image_ref)?;
    // Off is "" in the file and "none" in the environment (an empty
    // variable counts as unset); either is accepted in both.
    let grafana_image = o
        .key("monitoring.grafana_image", &f.grafana_image)
        .env("ESHOP_MONITORING_GRAFANA_IMAGE")
        .or(DEFAULT_GRAFANA_IMAGE.to_owned(), |s| match s {
            "" | "none" => Ok(String::new()),
            s => check_image_ref(s),
        })?;
    let kube_state_metrics_image = o
        .key(
            "monitoring.kube_state_metrics_image",
            &f.kube_state_metrics_image,
        )
        .or(DEFAULT_KUBE_STATE_METRICS_IMAGE.to_owned(), |s| match s {
            "" => Ok(String::new()),
            s => check_image_ref(s),
        })?;
    let scrape_interval_secs = o
        .key("monitoring.scrape_interval_secs", &f.scrape_interval_secs)
        .or(5, within(1..=300))?;
    Ok(Monitoring {
        prometheus_image,
        grafana_image,
        kube_state_metrics_image,
        scrape_interval_secs,
    })
}

/// Both variables or neither: one alone is a mistake that would otherwise
/// surface as a refused push much later.
fn registry_auth(o: &Origin) -> Result<Option<RegistryAuth>, ConfigError> {
    let username = o.secret(REGISTRY_USERNAME_ENV).get(|u| Ok(u.to_owned()))?;
    let password = o
        .secret(REGISTRY_PASSWORD_ENV)
        .get(|p| Ok(Secret(p.to_owned())))?;
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(RegistryAuth { username, password })),
        (None, None) => Ok(None),
        _ => Err(ConfigError(format!(
            "{REGISTRY_USERNAME_ENV} and {REGISTRY_PASSWORD_ENV} go together: set both, or neither (then ~/.docker/config.json is used)"
        ))),
    }
}

/// A table keyed by service name (`[services.<name>]`,
/// `[kubernetes.images]`) names a catalogue entry.
fn known_service(
    o: &Origin,
    shop: &[Service],
    name: &Spanned<String>,
    table: &str,
) -> Result<(), ConfigError> {
    if crate::shop::find(shop, name.get_ref()).is_some() {
        return Ok(());
    }
    o.err(
        name.span(),
        &format!("{table}.{}", name.get_ref()),
        format!(
            "unknown service; known: {}",
            crate::shop::names(shop).join(", ")
        ),
    )
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: what every shell and runtime accepts.
pub fn is_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Project names end up in container, network and image names and labels.
fn check_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1-32 characters of a-z, 0-9 and '-', starting with a letter".into())
    }
}

fn check_registry(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() {
        return Ok(String::new());
    }
    if s.contains("://") {
        return Err(
            "must be a registry host like localhost:5000 or docker.io/you, without a scheme".into(),
        );
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b))
    {
        return Err("contains characters not allowed in an image reference".into());
    }
    Ok(s.to_owned())
}

pub(crate) fn check_image_ref(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b))
    {
        return Err("must be an image reference like gcr.io/distroless/cc-debian12:nonroot".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests;
