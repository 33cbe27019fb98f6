//! `eshop.toml` + `ESHOP_*` environment + flags, validated before anything
//! is touched. Precedence: flags > environment > file > defaults.
//!
//! Every error names the key and, for file values, the line, so a typo
//! fails in milliseconds instead of half-way through a deployment.

pub mod apm;
pub mod aws;
pub mod kube;

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
    #[serde(default)]
    local: FileLocal,
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
    ssh: kube::FileSsh,
    #[serde(default)]
    apm: apm::FileApm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBuild {
    source_dir: Option<String>,
    test: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImages {
    registry: Option<Spanned<String>>,
    base_image: Option<Spanned<String>>,
    builder_image: Option<Spanned<String>>,
    variant: Option<Variant>,
    push: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLocal {
    bind: Option<Spanned<String>>,
    pricing_port: Option<Spanned<i64>>,
    inventory_port: Option<Spanned<i64>>,
    ready_timeout_secs: Option<Spanned<i64>>,
    demo_data: Option<bool>,
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
    env: BTreeMap<String, String>,
}

/// The validated configuration every phase reads.
#[derive(Debug, Clone)]
pub struct Config {
    pub project: String,
    pub target: Target,
    /// Where the workspace with services/ lives.
    pub source_dir: PathBuf,
    /// Where state files go: `.eshop/` beside the config file.
    pub state_dir: PathBuf,
    pub build_test: bool,
    /// Registry host[:port][/namespace]; empty = images stay local.
    pub registry: String,
    pub base_image: String,
    pub builder_image: String,
    pub variant: Variant,
    pub push: bool,
    pub bind: std::net::IpAddr,
    pub pricing_port: u16,
    pub inventory_port: u16,
    pub ready_timeout: std::time::Duration,
    /// Load the catalogue's demo records into empty services (local).
    pub demo_data: bool,
    pub prometheus_image: String,
    /// Empty: no Grafana.
    pub grafana_image: String,
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
    pub ssh: kube::Ssh,
    pub apm: apm::Apm,
    /// The services eshop builds and runs ([`crate::shop::SHOP`]; tests
    /// may hand in another catalogue).
    pub shop: &'static [crate::shop::Service],
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

/// Where a value came from, for error messages.
struct Origin<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Origin<'_> {
    fn at(&self, span: std::ops::Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        msg: impl std::fmt::Display,
    ) -> Result<T, ConfigError> {
        Err(ConfigError(format!("{}: {key}: {msg}", self.at(span))))
    }
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

    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn EnvSource,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let o = Origin { path, text };
        let file: File = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| o.at(s))
                .unwrap_or_else(|| path.display().to_string());
            ConfigError(format!("{at}: {}", e.message().trim()))
        })?;

        let project = match env.var("ESHOP_PROJECT") {
            Some(v) => {
                check_name(&v).map_err(|m| ConfigError(format!("ESHOP_PROJECT={v:?}: {m}")))?
            }
            None => match &file.project {
                Some(p) => check_name(p.get_ref()).or_else(|m| o.err(p.span(), "project", m))?,
                None => "eshop".to_owned(),
            },
        };
        let target = match (&flags.target, env.var("ESHOP_TARGET"), &file.target) {
            (Some(t), _, _) => *t,
            (None, Some(v), _) => v
                .parse()
                .map_err(|m| ConfigError(format!("ESHOP_TARGET: {m}")))?,
            (None, None, Some(t)) => t
                .get_ref()
                .parse()
                .or_else(|m| o.err(t.span(), "target", m))?,
            (None, None, None) => Target::Local,
        };

        let registry = match env.var("ESHOP_IMAGES_REGISTRY") {
            Some(v) => check_registry(&v)
                .map_err(|m| ConfigError(format!("ESHOP_IMAGES_REGISTRY={v:?}: {m}")))?,
            None => match &file.images.registry {
                Some(r) => check_registry(r.get_ref())
                    .or_else(|m| o.err(r.span(), "images.registry", m))?,
                None => String::new(),
            },
        };
        let base_image = match env.var("ESHOP_IMAGES_BASE_IMAGE") {
            Some(v) => check_image_ref(&v)
                .map_err(|m| ConfigError(format!("ESHOP_IMAGES_BASE_IMAGE={v:?}: {m}")))?,
            None => match &file.images.base_image {
                Some(r) => check_image_ref(r.get_ref())
                    .or_else(|m| o.err(r.span(), "images.base_image", m))?,
                None => DEFAULT_BASE_IMAGE.to_owned(),
            },
        };
        let builder_image = match &file.images.builder_image {
            Some(r) => check_image_ref(r.get_ref())
                .or_else(|m| o.err(r.span(), "images.builder_image", m))?,
            None => DEFAULT_BUILDER_IMAGE.to_owned(),
        };
        let push = match env.var("ESHOP_IMAGES_PUSH") {
            Some(v) => {
                parse_bool(&v).map_err(|m| ConfigError(format!("ESHOP_IMAGES_PUSH={v:?}: {m}")))?
            }
            None => file.images.push.unwrap_or(!registry.is_empty()),
        };
        if push && registry.is_empty() {
            return Err(ConfigError(
                "images.push is true but images.registry is empty: set a registry (e.g. \"localhost:5000\" or \"docker.io/you\")".into(),
            ));
        }

        let bind = match &file.local.bind {
            Some(b) => b.get_ref().parse().or_else(|_| {
                o.err(
                    b.span(),
                    "local.bind",
                    "must be an IP address such as 127.0.0.1",
                )
            })?,
            None => std::net::IpAddr::from([127, 0, 0, 1]),
        };
        let port = |env_key: &str,
                    key: &str,
                    v: &Option<Spanned<i64>>,
                    default: u16|
         -> Result<u16, ConfigError> {
            if let Some(s) = env.var(env_key) {
                return s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    ConfigError(format!("{env_key}={s:?}: must be a port from 1 to 65535"))
                });
            }
            match v {
                Some(p) => u16::try_from(*p.get_ref())
                    .ok()
                    .filter(|p| *p > 0)
                    .map_or_else(
                        || o.err(p.span(), key, "must be a port from 1 to 65535"),
                        Ok,
                    ),
                None => Ok(default),
            }
        };
        let pricing_port = port(
            "ESHOP_LOCAL_PRICING_PORT",
            "local.pricing_port",
            &file.local.pricing_port,
            8080,
        )?;
        let inventory_port = port(
            "ESHOP_LOCAL_INVENTORY_PORT",
            "local.inventory_port",
            &file.local.inventory_port,
            8081,
        )?;
        if pricing_port == inventory_port {
            let span = file
                .local
                .inventory_port
                .as_ref()
                .map(|p| p.span())
                .unwrap_or(0..0);
            return o.err(
                span,
                "local.inventory_port",
                "must differ from local.pricing_port",
            );
        }
        let prometheus_port = port(
            "ESHOP_MONITORING_PROMETHEUS_PORT",
            "monitoring.prometheus_port",
            &file.monitoring.prometheus_port,
            9090,
        )?;
        let grafana_port = port(
            "ESHOP_MONITORING_GRAFANA_PORT",
            "monitoring.grafana_port",
            &file.monitoring.grafana_port,
            3000,
        )?;
        let mut used = vec![pricing_port, inventory_port];
        for (p, key, span) in [
            (
                prometheus_port,
                "monitoring.prometheus_port",
                file.monitoring.prometheus_port.as_ref().map(|p| p.span()),
            ),
            (
                grafana_port,
                "monitoring.grafana_port",
                file.monitoring.grafana_port.as_ref().map(|p| p.span()),
            ),
        ] {
            if used.contains(&p) {
                return o.err(
                    span.unwrap_or(0..0),
                    key,
                    "must differ from the other published ports",
                );
            }
            used.push(p);
        }
        let prometheus_image = match env.var("ESHOP_MONITORING_PROMETHEUS_IMAGE") {
            Some(v) => check_image_ref(&v).map_err(|m| {
                ConfigError(format!("ESHOP_MONITORING_PROMETHEUS_IMAGE={v:?}: {m}"))
            })?,
            None => match &file.monitoring.prometheus_image {
                Some(r) => check_image_ref(r.get_ref())
                    .or_else(|m| o.err(r.span(), "monitoring.prometheus_image", m))?,
                None => DEFAULT_PROMETHEUS_IMAGE.to_owned(),
            },
        };
        let grafana_image = match env.var("ESHOP_MONITORING_GRAFANA_IMAGE") {
            Some(v) if v == "none" => String::new(),
            Some(v) => check_image_ref(&v)
                .map_err(|m| ConfigError(format!("ESHOP_MONITORING_GRAFANA_IMAGE={v:?}: {m}")))?,
            None => match &file.monitoring.grafana_image {
                Some(r) if r.get_ref().is_empty() => String::new(),
                Some(r) => check_image_ref(r.get_ref())
                    .or_else(|m| o.err(r.span(), "monitoring.grafana_image", m))?,
                None => DEFAULT_GRAFANA_IMAGE.to_owned(),
            },
        };
        let kube_state_metrics_image = match &file.monitoring.kube_state_metrics_image {
            Some(r) if r.get_ref().is_empty() => String::new(),
            Some(r) => check_image_ref(r.get_ref())
                .or_else(|m| o.err(r.span(), "monitoring.kube_state_metrics_image", m))?,
            None => DEFAULT_KUBE_STATE_METRICS_IMAGE.to_owned(),
        };
        let scrape_interval_secs = match &file.monitoring.scrape_interval_secs {
            Some(t) if (1..=300).contains(t.get_ref()) => *t.get_ref() as u16,
            Some(t) => {
                return o.err(
                    t.span(),
                    "monitoring.scrape_interval_secs",
                    "must be between 1 and 300",
                )
            }
            None => 5,
        };
        let ready_timeout = match &file.local.ready_timeout_secs {
            Some(t) if (1..=600).contains(t.get_ref()) => {
                std::time::Duration::from_secs(*t.get_ref() as u64)
            }
            Some(t) => {
                return o.err(
                    t.span(),
                    "local.ready_timeout_secs",
                    "must be between 1 and 600",
                )
            }
            None => std::time::Duration::from_secs(60),
        };

        let mut service_env = BTreeMap::new();
        for (name, svc) in file.services {
            if crate::shop::find(crate::shop::SHOP, name.get_ref()).is_none() {
                return o.err(
                    name.span(),
                    &format!("services.{}", name.get_ref()),
                    format!(
                        "unknown service; known: {}",
                        crate::shop::names(crate::shop::SHOP).join(", ")
                    ),
                );
            }
            service_env.insert(name.into_inner(), svc.env);
        }

        let aws = aws::aws(&o, &file.aws, env)?;
        let schedule = aws::schedule(&o, &file.schedule)?;
        let state_dir = base.join(".eshop");
        let kube = kube::kube(
            &o,
            &file.kubernetes,
            env,
            base,
            &state_dir,
            &project,
            target,
            aws.node_port as u16,
        )?;
        let ssh = kube::ssh(&o, &file.ssh, base, target)?;
        let apm = apm::apm(&o, &file.apm, env, base)?;

        let source_dir = match file.build.source_dir {
            Some(d) => base.join(d),
            None => base.to_path_buf(),
        };
        Ok(Config {
            project,
            target,
            source_dir,
            state_dir,
            build_test: file.build.test.unwrap_or(false),
            registry,
            base_image,
            builder_image,
            variant: file.images.variant.unwrap_or(Variant::Runtime),
            push,
            bind,
            pricing_port,
            inventory_port,
            ready_timeout,
            demo_data: file.local.demo_data.unwrap_or(true),
            prometheus_image,
            grafana_image,
            kube_state_metrics_image,
            prometheus_port,
            grafana_port,
            scrape_interval_secs,
            service_env,
            aws,
            schedule,
            kube,
            ssh,
            apm,
            shop: crate::shop::SHOP,
        })
    }
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

fn check_image_ref(s: &str) -> Result<String, String> {
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

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("must be true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("eshop.toml"),
            Path::new("."),
            &BTreeMap::new(),
            &Overrides::default(),
        )
    }

    #[test]
    fn errors_name_the_key_and_line() {
        for (text, want) in [
            (
                "project = \"shop\"\n\n[images]\nregistri = \"x\"\n",
                "eshop.toml:4:1: unknown field `registri`",
            ),
            (
                "[local]\npricing_port = 70000\n",
                "eshop.toml:2:16: local.pricing_port: must be a port",
            ),
            ("project = \"Shop!\"\n", "eshop.toml:1:11: project: must be"),
            (
                "target = \"gcp\"\n",
                "eshop.toml:1:10: target: unknown target \"gcp\"",
            ),
            (
                "[images]\nregistry = \"https://x\"\n",
                "eshop.toml:2:12: images.registry",
            ),
            (
                "[services.cart]\nenv = {}\n",
                "eshop.toml:1:11: services.cart: unknown service",
            ),
            (
                "[local]\npricing_port = 9000\ninventory_port = 9000\n",
                "eshop.toml:3:18: local.inventory_port",
            ),
            ("project = \n", "eshop.toml:1:"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}\n got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn precedence_is_flags_then_env_then_file() {
        let text = "target = \"aws\"\n[local]\npricing_port = 9000\n";
        let mut env = BTreeMap::new();
        env.insert("ESHOP_LOCAL_PRICING_PORT".to_owned(), "9100".to_owned());
        env.insert("ESHOP_TARGET".to_owned(), "local".to_owned());
        let c = Config::parse(
            text,
            Path::new("e.toml"),
            Path::new("."),
            &env,
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.pricing_port, 9100);
        assert_eq!(c.target, Target::Local);
        let flags = Overrides {
            target: Some(Target::Aws),
        };
        let c = Config::parse(text, Path::new("e.toml"), Path::new("."), &env, &flags).unwrap();
        assert_eq!(c.target, Target::Aws);
        let c = parse(text).unwrap();
        assert_eq!(c.pricing_port, 9000);
        assert_eq!(c.target, Target::Aws);
    }

    #[test]
    fn defaults_need_no_file() {
        let c = parse("").unwrap();
        assert_eq!(c.project, "eshop");
        assert_eq!(c.target, Target::Local);
        assert!(!c.push);
        assert_eq!(c.base_image, DEFAULT_BASE_IMAGE);
    }
}
