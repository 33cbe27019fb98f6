//! The shop's objects on the cluster: templates/kubernetes rendered once
//! per service of the catalogue, with eshop's labels.

use super::super::manifests;
use super::PHASE;
use crate::config::kube::Entry;
use crate::config::Config;
use crate::phases::Ctx;
use crate::render::render_pairs as render;
use crate::shop::Service;
use serde_json::Value;
use std::collections::BTreeMap;

const NAMESPACE: &str = include_str!("../../../templates/kubernetes/00-namespace.yaml");
const CONFIG: &str = include_str!("../../../templates/kubernetes/10-config.yaml");
const SECRET: &str = include_str!("../../../templates/kubernetes/15-secret.yaml");
const SERVICE_SECRETS: &str = include_str!("../../../templates/kubernetes/15-service-secrets.yaml");
const POSTGRES_SETUP: &str = include_str!("../../../templates/kubernetes/postgres-setup.sh");
const DATABASE: &str = include_str!("../../../templates/kubernetes/20-database.yaml");
const SERVICE: &str = include_str!("../../../templates/kubernetes/30-service.yaml");
const ENTRY: &str = include_str!("../../../templates/kubernetes/40-entry.yaml");

/// Each service's environment in the cluster: where it listens, JSON
/// logs, the in-cluster address of each service it calls, then
/// `[services.<name>.env]` on top.
pub fn service_env(cfg: &Config, svc: &Service) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("LISTEN_ADDR".to_owned(), format!("0.0.0.0:{}", svc.port)),
        ("LOG_FORMAT".to_owned(), "json".to_owned()),
    ]);
    for c in svc.callees(cfg.shop) {
        env.insert(
            c.url_env(),
            format!("http://{}.{}.svc:{}", c.name, cfg.kube.namespace, c.port),
        );
    }
    let service = svc.name;
    // Phase 10's trace export; credentials arrive as a file from the
    // Secret `otlp` (15-secret.yaml), never in the ConfigMap.
    if let Some((endpoint, headers)) = cfg.apm.otlp() {
        env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint);
        env.insert("OTEL_SERVICE_NAME".into(), service.to_owned());
        if headers.is_some() {
            env.insert(
                "OTEL_EXPORTER_OTLP_HEADERS_FILE".into(),
                "/run/secrets/otlp/headers".into(),
            );
        }
    }
    if let Some(extra) = cfg.service_env.get(service) {
        env.extend(extra.clone());
    }
    env
}

/// The images to run: what phase 2 last pushed, pinned by digest.
pub(crate) fn images(ctx: &Ctx) -> anyhow::Result<BTreeMap<String, String>> {
    let mut imgs = crate::phases::images::current_images(ctx).unwrap_or_default();
    imgs.extend(ctx.config.kube.images.clone());
    for svc in ctx.config.shop.iter().map(|s| s.name) {
        if !imgs.contains_key(svc) {
            if ctx.config.registry.is_empty() {
                return Err(crate::config::ConfigError(
                    "images.registry is empty: a cluster pulls the shop's images from a registry; set images.registry (phase 2 pushes there)".into(),
                )
                .into());
            }
            anyhow::bail!(
                "no pushed image for {svc}: run phase 2 first (eshop phase images apply)"
            );
        }
    }
    Ok(imgs)
}

/// The shop's objects, per template file. `images` None renders
/// placeholders (for review); `fresh` false renders credentials as
/// placeholders too, true generates new ones (Secrets are created once:
/// what a cluster already has is kept).
pub fn manifests(
    cfg: &Config,
    images: Option<&BTreeMap<String, String>>,
    fresh: bool,
) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let k = &cfg.kube;
    let labels = manifests::owner_labels(cfg, PHASE);
    let ns = k.namespace.clone();
    let mut files = Vec::new();
    let parse = |name: &str, text: String| -> anyhow::Result<(String, Vec<Value>)> {
        Ok((name.to_owned(), manifests::parse(&text, name, &labels)?))
    };
    files.push(parse(
        "00-namespace.yaml",
        render(NAMESPACE, &[("namespace", ns.clone())], &[])?,
    )?);
    let envs: BTreeMap<&str, BTreeMap<String, String>> = cfg
        .shop
        .iter()
        .map(|s| (s.name, service_env(cfg, s)))
        .collect();
    // Per service a ConfigMap (its environment, put in as data so no key
    // or value can change the YAML around it) and a ServiceAccount.
    let mut config = Vec::new();
    for svc in cfg.shop {
        let text = render(
            CONFIG,
            &[("namespace", ns.clone()), ("service", svc.name.to_owned())],
            &[],
        )?;
        for mut o in manifests::parse(&text, "10-config.yaml", &labels)? {
            if o["kind"] == "ConfigMap" {
                o["data"] = serde_json::to_value(&envs[svc.name])?;
            }
            config.push(o);
        }
    }
    files.push(("10-config.yaml".to_owned(), config));
    let otlp_headers = cfg.apm.otlp().and_then(|(_, h)| h);
    files.push((
        "15-secret.yaml".to_owned(),
        secret_objects(cfg, fresh, &labels)?,
    ));
    files.push((
        "20-database.yaml".to_owned(),
        database_objects(cfg, &labels)?,
    ));
    for s in cfg.shop {
        let (svc, port, db) = (s.name, s.port, s.database);
        let image = images
            .and_then(|m| m.get(svc).cloned())
            .unwrap_or_else(|| format!("{}:FROM-PHASE-2", crate::phases::images::repo(cfg, svc)));
        // The headers file is read at start: a new token must roll pods.
        let headers = otlp_headers.as_ref().map(|h| h.expose()).unwrap_or("");
        let env_json = serde_json::to_string(&envs[svc])?;
        let config_hash = crate::util::short_hash(&[&env_json, headers]);
        let mut flags: Vec<&str> = Vec::new();
        if db {
            flags.push("db");
        }
        if s.signing_key {
            flags.push("signing_key");
        }
        let clients: Vec<&str> = if s.signing_key {
            cfg.shop
                .iter()
                .filter(|c| c.service_client)
                .map(|c| c.name)
                .collect()
        } else {
            Vec::new()
        };
        if !clients.is_empty() {
            flags.push("clients");
        }
        if s.service_client {
            flags.push("service_client");
        }
        if s.session_key {
            flags.push("session_key");
        }
        if db || s.signing_key || s.service_client || s.session_key {
            flags.push("secret_env");
        }
        if otlp_headers.is_some() {
            flags.push("otlp");
        }
        let mut objects = parse(
            &format!("30-{svc}.yaml"),
            render(
                SERVICE,
                &[
                    ("namespace", ns.clone()),
                    ("service", svc.to_owned()),
                    ("port", port.to_string()),
                    ("live_path", s.live_path.to_owned()),
                    ("ready_path", s.ready_path.to_owned()),
                    ("image", image),
                    ("config_hash", config_hash),
                    ("min_replicas", k.min_replicas.to_string()),
                    ("max_replicas", k.max_replicas.to_string()),
                    ("cpu_target_percent", k.cpu_target_percent.to_string()),
                    ("memory_target_percent", k.memory_target_percent.to_string()),
                ],
                &flags,
            )?,
        )?;
        fill_clients(&mut objects.1, &clients);
        files.push(objects);
    }
    files.push(parse("40-entry.yaml", entry_text(cfg)?)?);
    Ok(files)
}

/// The token issuer's clients volume: each service client's Secret, as a
/// file named after the client.
fn fill_clients(objects: &mut [Value], clients: &[&str]) {
    let sources: Vec<Value> = clients
        .iter()
        .map(|c| {
            serde_json::json!({"secret": {"name": format!("{c}-client"),
                                          "items": [{"key": "secret", "path": c}]}})
        })
        .collect();
    for o in objects.iter_mut().filter(|o| o["kind"] == "Deployment") {
        if let Some(vols) = o["spec"]["template"]["spec"]["volumes"].as_array_mut() {
            for v in vols.iter_mut().filter(|v| v["name"] == "clients") {
                v["projected"]["sources"] = Value::Array(sources.clone());
            }
        }
    }
}

/// The database's superuser password, each owner's login, the token
/// signing key and, with phase 10, the trace export's headers. `fresh`
/// false means a render for review: no credential at all. The templates
/// give the shape, the values go in as data.
fn secret_objects(
    cfg: &Config,
    fresh: bool,
    labels: &BTreeMap<&str, String>,
) -> anyhow::Result<Vec<Value>> {
    let ns = &cfg.kube.namespace;
    let otlp_headers = cfg.apm.otlp().and_then(|(_, h)| h);
    let flags: &[&str] = if otlp_headers.is_some() {
        &["otlp_headers"]
    } else {
        &[]
    };
    let text = render(SECRET, &[("namespace", ns.clone())], flags)?;
    let mut objects = manifests::parse(&text, "15-secret.yaml", labels)?;
    for svc in cfg.shop {
        let mut flags = Vec::new();
        if svc.database {
            flags.push("db");
        }
        if svc.signing_key {
            flags.push("signing_key");
        }
        if svc.service_client {
            flags.push("service_client");
        }
        if svc.session_key {
            flags.push("session_key");
        }
        let text = render(
            SERVICE_SECRETS,
            &[("namespace", ns.clone()), ("service", svc.name.to_owned())],
            &flags,
        )?;
        objects.extend(manifests::parse(&text, "15-service-secrets.yaml", labels)?);
    }
    let password = || {
        if fresh {
            crate::util::random_password()
        } else {
            "GENERATED-AT-APPLY".to_owned()
        }
    };
    for o in &mut objects {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name == "db-admin" {
            o["stringData"]["password"] = password().into();
        } else if name == "otlp" {
            o["stringData"]["headers"] = match &otlp_headers {
                Some(h) if fresh => h.expose().into(),
                _ => "FROM-THE-ENVIRONMENT".into(),
            };
        } else if let Some(svc) = name.strip_prefix("db-") {
            // The role and the database are named after the service.
            let pw = password();
            o["stringData"]["database-url"] =
                format!("postgres://{svc}:{pw}@postgres.{ns}.svc:5432/{svc}").into();
            o["stringData"]["password"] = pw.into();
        } else if name.ends_with("-client") {
            o["stringData"]["secret"] = password().into();
        } else if name.ends_with("-session-key") {
            o["stringData"]["session.key"] = password().into();
        } else if name.ends_with("-signing-key") {
            o["stringData"]["signing-key.pem"] = if fresh {
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?
                    .serialize_pem()
                    .into()
            } else {
                "GENERATED-AT-APPLY".into()
            };
        }
    }
    Ok(objects)
}

/// PostgreSQL for the services that own a database: its objects, with the
/// setup script, the owners' names and their passwords' Secrets put in as
/// data (a change of owners rolls the pod, which runs the setup again).
fn database_objects(cfg: &Config, labels: &BTreeMap<&str, String>) -> anyhow::Result<Vec<Value>> {
    let (k, ns) = (&cfg.kube, cfg.kube.namespace.clone());
    let mut db_flags = Vec::new();
    if k.storage_class.is_some() {
        db_flags.push("storage_class");
    }
    if !k.postgres_image.contains("@sha256:") {
        db_flags.push("postgres_by_tag");
    }
    let text = render(
        DATABASE,
        &[
            ("namespace", ns.clone()),
            ("postgres_image", k.postgres_image.clone()),
            ("database_storage_gib", k.database_storage_gib.to_string()),
            ("storage_class", k.storage_class.clone().unwrap_or_default()),
        ],
        &db_flags,
    )?;
    let mut objects = manifests::parse(&text, "20-database.yaml", labels)?;
    let owners: Vec<&str> = cfg
        .shop
        .iter()
        .filter(|s| s.database)
        .map(|s| s.name)
        .collect();
    let list = owners.join("\n");
    let mut sources = vec![serde_json::json!({"secret": {
        "name": "db-admin",
        "items": [{"key": "password", "path": "admin-password"}],
    }})];
    for o in &owners {
        sources.push(serde_json::json!({"secret": {
            "name": format!("db-{o}"),
            "items": [{"key": "password", "path": format!("{o}-password")}],
        }}));
    }
    let hash = crate::util::short_hash(&[&list, POSTGRES_SETUP]);
    for o in &mut objects {
        if o["kind"] == "ConfigMap" {
            o["data"] = serde_json::json!({"setup.sh": POSTGRES_SETUP, "services": list});
        }
        if o["kind"] == "StatefulSet" {
            let t = &mut o["spec"]["template"];
            t["metadata"]["annotations"]["eshop/config-hash"] = hash.clone().into();
            for v in t["spec"]["volumes"].as_array_mut().into_iter().flatten() {
                if v["name"] == "db" {
                    v["projected"]["sources"] = sources.clone().into();
                }
            }
        }
    }
    Ok(objects)
}

/// How the world reaches the public entry: a NodePort or an Ingress.
fn entry_text(cfg: &Config) -> anyhow::Result<String> {
    let (k, ns) = (&cfg.kube, cfg.kube.namespace.clone());
    let (flags, host, class, node_port): (Vec<&str>, String, String, String) = match &k.entry {
        Entry::NodePort(p) => (
            vec!["nodeport"],
            String::new(),
            String::new(),
            p.to_string(),
        ),
        Entry::Ingress { host, class } => {
            let mut f = vec!["ingress"];
            if !host.is_empty() {
                f.push("host");
            }
            (f, host.clone(), class.clone(), String::new())
        }
    };
    let entry = crate::shop::public(cfg.shop);
    render(
        ENTRY,
        &[
            ("namespace", ns),
            ("service", entry.name.to_owned()),
            ("port", entry.port.to_string()),
            ("node_port", node_port),
            ("ingress_host", host),
            ("ingress_class", class),
        ],
        &flags,
    )
}

pub(super) fn flat(files: Vec<(String, Vec<Value>)>) -> Vec<Value> {
    files.into_iter().flat_map(|(_, o)| o).collect()
}
