//! No configuration value leaves its quotes: every string key of
//! eshop.toml gets hostile strings (line breaks, quotes, `{{`, `$(`, `#`,
//! `---`, a Unicode line separator), and each one is either refused with
//! exit 2 before anything is rendered, or appears in what every phase
//! renders only as the value it was given: the rendered YAML/JSON, parsed,
//! equals the render of a harmless value with that value swapped in, and
//! every other file (node scripts, Dockerfiles) equals it as text. A value
//! that changed the shape of a file (a new key, a new object, a new
//! command) fails here.
//!
//! The keys: every key `src/config` reads through its layering helper
//! (`.key("…")`), checked against the lists below so a new key cannot
//! skip this test, plus the tables' own keys.

mod common;

use common::cli::Project;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const HOSTILE: [&str; 9] = [
    "x\ny: z",
    "a\"b",
    "$(touch /tmp/eshop-pwned)",
    "{{namespace}}",
    "a # b",
    "---\nkind: ClusterRoleBinding",
    "a\u{2028}b",
    "x'y",
    "`id`",
];

/// A harmless value to compare with (accepted where free text is).
const BENIGN: &str = "benignvalue1";

/// Keys whose value is not a string (numbers, booleans): a hostile
/// string there is a type error, exit 2, which the test also checks.
const NOT_STRINGS: &[&str] = &[
    "aws.cpu_target_percent",
    "aws.desired_capacity",
    "aws.max_size",
    "aws.min_size",
    "aws.node_port",
    "aws.root_volume_gib",
    "aws.allow_admin_from_anywhere",
    "images.push",
    "build.test",
    "kubernetes.cpu_target_percent",
    "kubernetes.database_storage_gib",
    "kubernetes.max_replicas",
    "kubernetes.memory_target_percent",
    "kubernetes.min_replicas",
    "kubernetes.node_port",
    "kubernetes.rollout_timeout_secs",
    "kubernetes.snapshot_keep",
    "kubernetes.etcd_backup_keep",
    "local.demo_data",
    "local.ready_timeout_secs",
    "monitoring.scrape_interval_secs",
    "pipeline.enabled",
    "pipeline.push_to_deploy",
    "ssh.connect_timeout_secs",
    "ssh.port",
    "ssh.script_timeout_secs",
    "ssh.trust_on_first_use",
];

/// Every string key, as a path into eshop.toml.
const STRINGS: &[&str] = &[
    "project",
    "target",
    "build.source_dir",
    "build.profile",
    "images.registry",
    "images.base_image",
    "images.builder_image",
    "images.variant",
    "local.bind",
    "monitoring.prometheus_image",
    "monitoring.grafana_image",
    "monitoring.kube_state_metrics_image",
    "apm.otlp_endpoint",
    "apm.dynatrace_url",
    "apm.dynatrace_operator_version",
    "apm.dynatrace_operator_manifest",
    "apm.dynatrace_operator_sha256",
    "aws.region",
    "aws.endpoint",
    "aws.vpc_cidr",
    "aws.admin_cidr",
    "aws.ssh_public_key",
    "aws.ami",
    "aws.ami_owner",
    "aws.ami_name",
    "aws.control_plane_type",
    "aws.worker_type",
    "schedule.stop_at",
    "schedule.start_at",
    "schedule.time_zone",
    "kubernetes.mode",
    "kubernetes.kubeconfig",
    "kubernetes.context",
    "kubernetes.namespace",
    "kubernetes.entry",
    "kubernetes.ingress_class",
    "kubernetes.ingress_host",
    "kubernetes.postgres_image",
    "kubernetes.api_server",
    "kubernetes.control_plane_endpoint",
    "kubernetes.version",
    "kubernetes.package_revision",
    "kubernetes.pod_cidr",
    "kubernetes.service_cidr",
    "kubernetes.calico_version",
    "kubernetes.metrics_server_version",
    "kubernetes.calico_manifest",
    "kubernetes.calico_sha256",
    "kubernetes.metrics_server_manifest",
    "kubernetes.metrics_server_sha256",
    "kubernetes.local_path_manifest",
    "kubernetes.local_path_sha256",
    "kubernetes.apt_key_fingerprint",
    "kubernetes.apt_key_url",
    "kubernetes.provisioner",
    "kubernetes.storage_class",
    "kubernetes.etcd_backup_dir",
    "kubernetes.etcd_backup_schedule",
    "kubernetes.images.pricing",
    "kubernetes.nodes.name",
    "kubernetes.nodes.address",
    "kubernetes.nodes.private_address",
    "kubernetes.nodes.role",
    "services.pricing.env.TAX_RATE_PERCENT",
    "services.pricing.env.<key>",
    "ssh.user",
    "ssh.identity_file",
    "ssh.config_file",
    "pipeline.branch",
    "pipeline.jenkins_url",
    "pipeline.jenkins_job",
    "pipeline.repository_url",
];

/// Every key literal `src/config` reads, so the lists above stay complete.
fn keys_in_source() -> Vec<String> {
    let mut out = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![dir.join("config.rs")];
    for e in std::fs::read_dir(dir.join("config")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".key(") {
            rest = &rest[i + 5..];
            let lit = rest.trim_start();
            if let Some(lit) = lit.strip_prefix('"') {
                let k = &lit[..lit.find('"').unwrap()];
                if k.contains('.') || k == "project" || k == "target" {
                    out.push(k.to_owned());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_key_eshop_reads_is_classified_here() {
    let test_only = ["a.m", "a.n", "a.s", "a.t"]; // src/config/layer.rs's own tests
    for k in keys_in_source() {
        assert!(
            STRINGS.contains(&k.as_str())
                || NOT_STRINGS.contains(&k.as_str())
                || test_only.contains(&k.as_str()),
            "{k} is read from eshop.toml but not listed in tests/hostile_config.rs"
        );
    }
}

fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A configuration that makes every phase render everything it can.
fn baseline(dir: &Path) -> toml::Table {
    let key = dir.join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test\n").unwrap();
    let text = format!(
        r#"project = "shop"
target = "aws"
[aws]
endpoint = "http://127.0.0.1:9"
ssh_public_key = "{key}"
admin_cidr = "203.0.113.0/24"
[kubernetes]
mode = "bootstrap"
entry = "ingress"
ingress_host = "shop.example.com"
[[kubernetes.nodes]]
name = "cp"
address = "10.0.0.10"
private_address = "10.0.0.10"
role = "control-plane"
[[kubernetes.nodes]]
name = "w1"
address = "10.0.0.11"
private_address = "10.0.0.11"
role = "worker"
[kubernetes.images]
inventory = "registry.example.com/shop-inventory:1a2b@sha256:{a}"
pricing = "registry.example.com/shop-pricing:1a2b@sha256:{b}"
users = "registry.example.com/shop-users:1a2b@sha256:{b}"
payments = "registry.example.com/shop-payments:1a2b@sha256:{b}"
orders = "registry.example.com/shop-orders:1a2b@sha256:{b}"
storefront = "registry.example.com/shop-storefront:1a2b@sha256:{b}"
[images]
registry = "registry.example.com"
[apm]
otlp_endpoint = "https://collector.example:4318"
dynatrace_url = "https://abc12345.live.dynatrace.com"
dynatrace_operator_manifest = "{fixture}"
[services.pricing.env]
TAX_RATE_PERCENT = "8"
"#,
        key = key.display(),
        fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/apm/operator-fixture.yaml")
            .display(),
        a = digest('a'),
        b = digest('b'),
    );
    text.parse().unwrap()
}

/// The baseline with `key` set to `value`.
fn with(base: &toml::Table, key: &str, value: &str) -> String {
    let mut t = base.clone();
    let parts: Vec<&str> = key.split('.').collect();
    let v = toml::Value::String(value.to_owned());
    match parts.as_slice() {
        ["kubernetes", "nodes", field] => {
            let nodes = t["kubernetes"]["nodes"].as_array_mut().unwrap();
            nodes[1].as_table_mut().unwrap().insert((*field).into(), v);
        }
        ["services", "pricing", "env", "<key>"] => {
            let env = t["services"]["pricing"]["env"].as_table_mut().unwrap();
            env.insert(value.to_owned(), toml::Value::String("v".into()));
        }
        _ => {
            let mut table = &mut t;
            for p in &parts[..parts.len() - 1] {
                table = table
                    .entry(p.to_string())
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .unwrap();
            }
            table.insert(parts[parts.len() - 1].into(), v);
        }
    }
    toml::to_string(&t).unwrap()
}

const PHASES: [&str; 9] = [
    "images",
    "infra",
    "schedule",
    "kubernetes",
    "security",
    "monitoring",
    "pipeline",
    "config",
    "apm",
];

/// Every phase's render, file name → content; Err(exit code) if refused.
fn render_all(p: &Project, config: &str) -> Result<BTreeMap<String, String>, (i32, String)> {
    p.write_config(config);
    let out_dir = p.dir.path().join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let mut files = BTreeMap::new();
    for phase in PHASES {
        let out = p.eshop_with(
            &["render", phase, "--out", out_dir.to_str().unwrap()],
            &[
                ("ESHOP_OTLP_HEADERS", "x-api-key=secret"),
                ("ESHOP_DYNATRACE_API_TOKEN", "dt0c01.API"),
                ("ESHOP_DYNATRACE_DATA_INGEST_TOKEN", "dt0c01.INGEST"),
                ("ESHOP_JENKINS_USER", "ci"),
                ("ESHOP_JENKINS_TOKEN", "jenkins-token"),
            ],
        );
        if !out.status.success() {
            return Err((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
    }
    collect(&out_dir, &out_dir, &mut files);
    Ok(files)
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            files.insert(name, std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

/// Every document of a YAML or JSON file, as data.
fn parsed(name: &str, text: &str) -> Option<Vec<Value>> {
    if name.ends_with(".json") {
        return Some(vec![serde_json::from_str(text).unwrap()]);
    }
    if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
        return None;
    }
    let mut docs = Vec::new();
    for d in serde_yaml::Deserializer::from_str(text) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
            .unwrap_or_else(|e| panic!("{name} does not parse: {e}\n{text}"));
        docs.push(serde_json::to_value(untagged(v)).unwrap());
    }
    Some(docs)
}

/// The value under its YAML tags (phase 9 writes every string of its
/// inventory and vars as `!unsafe`): the data is what is compared.
fn untagged(v: serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Tagged(t) => untagged(t.value),
        Y::Sequence(s) => Y::Sequence(s.into_iter().map(untagged).collect()),
        Y::Mapping(m) => Y::Mapping(m.into_iter().map(|(k, v)| (k, untagged(v))).collect()),
        other => other,
    }
}

/// Hashes of the configuration (annotations that roll pods when it
/// changes) differ with the value by design: compared as equal.
const DERIVED: [&str; 2] = ["eshop/config-hash", "eshop/spec"];

/// `v` with every occurrence of `from` in its strings (keys too) replaced,
/// and the derived hashes blanked.
fn swapped(v: &Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(a.iter().map(|x| swapped(x, from, to)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let x = if DERIVED.contains(&k.as_str()) {
                        Value::String("HASH".into())
                    } else {
                        swapped(x, from, to)
                    };
                    (k.replace(from, to), x)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn hostile_values_are_refused_or_stay_values_in_everything_rendered() {
    let p = Project::new();
    let base = baseline(p.dir.path());
    render_all(&p, &toml::to_string(&base).unwrap()).expect("the baseline renders");
    let mut checked = 0;
    for key in STRINGS.iter().chain(NOT_STRINGS) {
        let benign = render_all(&p, &with(&base, key, BENIGN));
        for hostile in HOSTILE {
            let got = render_all(&p, &with(&base, key, hostile));
            let got = match got {
                Err((2, _)) => continue,
                Err((code, err)) => {
                    panic!("{key} = {hostile:?}: exit {code}, not a config error (2):\n{err}")
                }
                Ok(files) => files,
            };
            let Ok(benign) = &benign else {
                panic!("{key}: {hostile:?} accepted where {BENIGN:?} was refused");
            };
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                benign.keys().collect::<Vec<_>>(),
                "{key} = {hostile:?}: other files"
            );
            for (name, text) in &got {
                let want = &benign[name];
                match (parsed(name, text), parsed(name, want)) {
                    (Some(g), Some(w)) => {
                        let g: Vec<Value> = g.iter().map(|d| swapped(d, hostile, BENIGN)).collect();
                        let w: Vec<Value> = w.iter().map(|d| swapped(d, BENIGN, BENIGN)).collect();
                        assert_eq!(g, w, "{key} = {hostile:?} changed the shape of {name}");
                    }
                    _ => assert_eq!(
                        &text.replace(hostile, BENIGN),
                        want,
                        "{key} = {hostile:?} changed {name}"
                    ),
                }
            }
            checked += 1;
        }
    }
    // Free-text keys exist (the services' environment values): the
    // comparison above really ran, not only refusals.
    assert!(checked > 0);
}
