//! What phases 5, 6 and 7 render for Kubernetes, checked without a
//! cluster (none can run on these machines): every manifest passes
//! `kubernetes-validate --strict` for the pinned Kubernetes version and
//! checkov's Kubernetes checks with zero failures; the NetworkPolicies
//! allow exactly the shop's and monitoring's flows; the RBAC role grants
//! exactly five verbs on pods and monitoring may only read what it
//! scrapes; the node scripts pass shellcheck.

mod common;

use common::cli::Project;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const K8S_VERSION: &str = "1.34.1";

fn tool(var: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/eshop-test-tools/venv-k8s/bin")
            .join(name)
    });
    assert!(
        p.exists(),
        "{} missing: run scripts/test-setup.sh",
        p.display()
    );
    p
}

/// Not a hidden directory: checkov skips those (tempfile's default
/// names start with a dot).
fn scratch() -> Project {
    Project::in_dir(
        tempfile::Builder::new()
            .prefix("eshop-k8s-")
            .tempdir()
            .unwrap(),
    )
}

fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// Renders phases 5, 6 and 7 for `extra` configuration into one directory
/// (YAML) plus `nodes/` (scripts); returns the directory.
fn render(p: &Project, extra: &str) -> PathBuf {
    p.write_config(&format!(
        "project = \"shop\"\n[kubernetes]\nmode = \"existing\"\n{extra}\n[kubernetes.images]\n\
         inventory = \"registry.example.com/shop-inventory:1a2b@sha256:{}\"\n\
         pricing = \"registry.example.com/shop-pricing:1a2b@sha256:{}\"\n\
         users = \"registry.example.com/shop-users:1a2b@sha256:{}\"\n\
         payments = \"registry.example.com/shop-payments:1a2b@sha256:{}\"\n\
         orders = \"registry.example.com/shop-orders:1a2b@sha256:{}\"\n\
         storefront = \"registry.example.com/shop-storefront:1a2b@sha256:{}\"\n",
        digest('a'),
        digest('b'),
        digest('c'),
        digest('d'),
        digest('e'),
        digest('f')
    ));
    let out = p.dir.path().join("rendered");
    for phase in ["kubernetes", "security", "monitoring"] {
        p.ok_with(
            &["render", phase, "--out", out.to_str().unwrap()],
            // Used only where [apm] sets an endpoint (rendered as a placeholder).
            &[("ESHOP_OTLP_HEADERS", "x-api-key=never-rendered")],
        );
    }
    out
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

fn objects(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in yaml_files(dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                out.push(v);
            }
        }
    }
    out
}

const VARIANTS: [(&str, &str); 3] = [
    ("defaults (NodePort entry)", ""),
    (
        "Ingress, a storage class, every image by digest, no Grafana",
        "entry = \"ingress\"\ningress_host = \"shop.example.com\"\nstorage_class = \"gp3\"\n\
         postgres_image = \"postgres@sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"\n\
         [monitoring]\ngrafana_image = \"\"\n\
         prometheus_image = \"prom/prometheus@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\"\n\
         kube_state_metrics_image = \"registry.k8s.io/kube-state-metrics/kube-state-metrics@sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\"\n",
    ),
    (
        "one replica, extra service settings, traces to a collector with headers",
        "min_replicas = 1\nmax_replicas = 3\n[services.pricing.env]\nTAX_RATE_PERCENT = \"8.875\"\n\
         [apm]\notlp_endpoint = \"http://collector.observability:4318\"\n",
    ),
];

#[test]
fn every_rendered_manifest_passes_kubernetes_validate_strict() {
    let kv = tool("ESHOP_TEST_KUBERNETES_VALIDATE", "kubernetes-validate");
    for (what, extra) in VARIANTS {
        let tmp = scratch();
        let dir = render(&tmp, extra);
        let files = yaml_files(&dir);
        assert!(files.len() >= 9, "{what}: {files:?}");
        let out = Command::new(&kv)
            .args(["--strict", "--kubernetes-version", K8S_VERSION, "--quiet"])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{what}: kubernetes-validate failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn checkov_finds_no_failing_kubernetes_check_and_every_skip_says_why() {
    let checkov = tool("ESHOP_TEST_CHECKOV", "checkov");
    for (what, extra) in VARIANTS {
        let tmp = scratch();
        let dir = render(&tmp, extra);
        let out = Command::new(&checkov)
            .args(["--framework", "kubernetes", "--output", "json", "-d"])
            .arg(&dir)
            // No guideline download: the machine has no internet.
            .env("BC_SKIP_MAPPING", "TRUE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{what}: checkov output is not JSON ({e}):\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let summary = &report["summary"];
        assert!(
            summary.is_object(),
            "{what}: no summary in checkov's report:\n{text}"
        );
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
            .collect();
        assert_eq!(
            summary["failed"],
            0,
            "{what}: checkov failures:\n{}",
            failed.join("\n")
        );
        assert!(
            summary["passed"].as_u64().unwrap() > 200,
            "{what}: {summary}"
        );
        // The only skips are the ones the templates carry, with their
        // reason, and only for images pinned by tag: PostgreSQL,
        // Prometheus, kube-state-metrics and Grafana.
        let skipped = report["results"]["skipped_checks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let by_digest = extra.contains("postgres@sha256");
        assert_eq!(
            skipped.len(),
            if by_digest { 0 } else { 4 },
            "{what}: {skipped:#?}"
        );
        for s in &skipped {
            assert_eq!(s["check_id"], "CKV_K8S_43", "{s:#}");
            assert!(
                s["check_result"]["suppress_comment"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("pinned by tag"),
                "{s:#}"
            );
        }
    }
}

/// Every `{{name}}` replaced by a plain word.
fn fill_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").expect("closed placeholder") + i + 2;
        out.push_str("word");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn node_scripts_pass_shellcheck_as_the_nodes_receive_them() {
    let tmp = scratch();
    let dir = render(&tmp, "");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    assert_eq!(scripts.len(), 7, "{scripts:?}");
    // add-on.sh carries a downloaded manifest, so render does not write
    // it: checked here with its placeholders filled by a word.
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubeadm");
    let add_on = tmp.dir.path().join("add-on.sh");
    let filled = fill_placeholders(&std::fs::read_to_string(templates.join("add-on.sh")).unwrap());
    std::fs::write(
        &add_on,
        format!(
            "{}\n{filled}",
            std::fs::read_to_string(templates.join("lib.sh")).unwrap()
        ),
    )
    .unwrap();
    scripts.push(add_on);
    let out = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style"])
        .args(&scripts)
        .output()
        .expect("shellcheck (scripts/test-setup.sh installs it)");
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for s in &scripts {
        let text = std::fs::read_to_string(s).unwrap();
        assert!(
            text.starts_with("# Prepended by eshop"),
            "{}: the shared helpers come first",
            s.display()
        );
        assert!(
            !text.contains("{{"),
            "{}: unrendered placeholder",
            s.display()
        );
    }
}

#[test]
fn the_pod_manager_role_grants_exactly_five_verbs_on_pods_and_nothing_else() {
    let tmp = scratch();
    let all = objects(&render(&tmp, ""));
    let of_phase = |o: &&Value, phase: &str| o["metadata"]["labels"]["eshop/phase"] == phase;
    assert!(
        !all.iter()
            .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding"),
        "nothing cluster-wide"
    );
    let roles: Vec<&Value> = all
        .iter()
        .filter(|o| o["kind"] == "Role" && of_phase(o, "security"))
        .collect();
    assert_eq!(roles.len(), 1, "one role only: {roles:#?}");
    let role = roles[0];
    assert_eq!(role["kind"], "Role", "namespaced, not cluster-wide");
    assert_eq!(role["metadata"]["namespace"], "shop");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "list", "get", "update", "delete"]}])
    );
    let bindings: Vec<&Value> = all
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && of_phase(o, "security"))
        .collect();
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0]["roleRef"]["name"], "pod-manager");
    assert_eq!(
        bindings[0]["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "eshop-shop-pod-managers"}])
    );
    // Monitoring reads only what it scrapes, in the shop's namespace.
    let role = |name: &str| {
        all.iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Role {name}"))["rules"]
            .clone()
    };
    assert_eq!(
        role("prometheus"),
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
    );
    assert_eq!(
        role("kube-state-metrics"),
        json!([
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]},
            {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list", "watch"]}
        ])
    );
    for name in ["prometheus", "kube-state-metrics"] {
        let b = all
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["name"] == name)
            .unwrap();
        assert_eq!(b["roleRef"]["name"], name);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": name, "namespace": "shop"}])
        );
    }
    // No automounted token anywhere; only the two readers of the API get
    // one, mounted by hand into their own pod.
    let mut with_token = Vec::new();
    for o in &all {
        if o["kind"] == "ServiceAccount" {
            assert_eq!(o["automountServiceAccountToken"], false, "{o:#}");
        }
        if let Some(pod) = o["spec"]["template"]["spec"].as_object() {
            assert_eq!(pod["automountServiceAccountToken"], false, "{o:#}");
            let projected_token = pod["volumes"].as_array().into_iter().flatten().any(|v| {
                v["projected"]["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["serviceAccountToken"].is_object())
            });
            if projected_token {
                with_token.push(o["metadata"]["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(with_token, ["prometheus", "kube-state-metrics"]);
}

// --- NetworkPolicy evaluation ----------------------------------------------

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
enum Peer {
    /// A pod: namespace, the namespace's labels, the pod's labels.
    Pod(String, Labels, Labels),
    /// Anything outside the cluster (the internet, a load balancer).
    External,
}

fn labels(v: &Value) -> Labels {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn ns_labels(ns: &str) -> Labels {
    BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())])
}

/// A label selector (matchLabels and matchExpressions); `{}` selects all.
fn selects(sel: &Value, l: &Labels) -> bool {
    let ml = labels(&sel["matchLabels"]);
    if !ml.iter().all(|(k, v)| l.get(k) == Some(v)) {
        return false;
    }
    sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap();
            let vals: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str().unwrap() {
                "In" => l.get(key).is_some_and(|v| vals.contains(&v.as_str())),
                "NotIn" => !l.get(key).is_some_and(|v| vals.contains(&v.as_str())),
                "Exists" => l.contains_key(key),
                "DoesNotExist" => !l.contains_key(key),
                o => panic!("operator {o}"),
            }
        })
}

/// One `from`/`to` entry of a rule, in the policy's namespace.
fn peer_matches(entry: &Value, policy_ns: &str, p: &Peer) -> bool {
    if entry.get("ipBlock").is_some() {
        return matches!(p, Peer::External);
    }
    let Peer::Pod(ns, nsl, pl) = p else {
        return false;
    };
    let pod_ok = entry.get("podSelector").is_none_or(|s| selects(s, pl));
    let ns_ok = match entry.get("namespaceSelector") {
        Some(s) => selects(s, nsl),
        None => ns == policy_ns,
    };
    pod_ok && ns_ok
}

fn ports_match(rule: &Value, port: u16, proto: &str) -> bool {
    match rule["ports"].as_array() {
        None => true,
        Some(ps) if ps.is_empty() => true,
        Some(ps) => ps.iter().any(|p| {
            p["port"].as_u64() == Some(u64::from(port))
                && p["protocol"].as_str().unwrap_or("TCP") == proto
        }),
    }
}

struct Policies(Vec<Value>);

impl Policies {
    /// Does `pod`'s side allow the flow in `direction` ("Ingress" from
    /// `other` / "Egress" to `other`) on `port`?
    fn side(&self, pod: &Peer, direction: &str, other: &Peer, port: u16, proto: &str) -> bool {
        let Peer::Pod(ns, _, pl) = pod else {
            return true;
        };
        let mut isolated = false;
        for p in &self.0 {
            let pns = p["metadata"]["namespace"].as_str().unwrap();
            if pns != ns || !selects(&p["spec"]["podSelector"], pl) {
                continue;
            }
            let types: Vec<&str> = p["spec"]["policyTypes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if !types.contains(&direction) {
                continue;
            }
            isolated = true;
            let (rules, peers) = if direction == "Ingress" {
                ("ingress", "from")
            } else {
                ("egress", "to")
            };
            for r in p["spec"][rules].as_array().into_iter().flatten() {
                let peer_ok = match r[peers].as_array() {
                    None => true,
                    Some(list) if list.is_empty() => true,
                    Some(list) => list.iter().any(|e| peer_matches(e, pns, other)),
                };
                if peer_ok && ports_match(r, port, proto) {
                    return true;
                }
            }
        }
        !isolated
    }

    fn allowed(&self, from: &Peer, to: &Peer, port: u16, proto: &str) -> bool {
        self.side(from, "Egress", to, port, proto) && self.side(to, "Ingress", from, port, proto)
    }
}

#[test]
fn network_policies_allow_exactly_the_shops_flows() {
    let tmp = scratch();
    let all = objects(&render(&tmp, ""));
    let policies = Policies(
        all.iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .cloned()
            .collect(),
    );
    assert!(policies.0.len() >= 4, "{}", policies.0.len());
    // The pods as the workloads render them: the policies must select the
    // labels the templates really put on pods.
    let pod = |name: &str| {
        let w = all
            .iter()
            .find(|o| o["spec"]["template"].is_object() && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no workload {name}"));
        Peer::Pod(
            "shop".into(),
            ns_labels("shop"),
            labels(&w["spec"]["template"]["metadata"]["labels"]),
        )
    };
    let (pricing, inventory, db) = (pod("pricing"), pod("inventory"), pod("postgres"));
    let (users, payments) = (pod("users"), pod("payments"));
    let (orders, storefront) = (pod("orders"), pod("storefront"));
    let (prometheus, grafana, ksm) = (pod("prometheus"), pod("grafana"), pod("kube-state-metrics"));
    let in_ns = |l: &[(&str, &str)]| {
        Peer::Pod(
            "shop".into(),
            ns_labels("shop"),
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let stranger = in_ns(&[("app.kubernetes.io/name", "debug")]);
    let other_ns = Peer::Pod(
        "default".into(),
        ns_labels("default"),
        BTreeMap::from([("app.kubernetes.io/name".to_owned(), "inventory".to_owned())]),
    );
    let dns = Peer::Pod(
        "kube-system".into(),
        ns_labels("kube-system"),
        BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())]),
    );
    let world = Peer::External;
    let matrix: Vec<(&str, &Peer, &Peer, u16, &str, bool)> = vec![
        (
            "world → storefront (the shop)",
            &world,
            &storefront,
            8085,
            "TCP",
            true,
        ),
        ("world → pricing", &world, &pricing, 8080, "TCP", false),
        ("world → orders", &world, &orders, 8084, "TCP", false),
        ("storefront → users", &storefront, &users, 8082, "TCP", true),
        (
            "storefront → inventory",
            &storefront,
            &inventory,
            8081,
            "TCP",
            true,
        ),
        (
            "storefront → pricing",
            &storefront,
            &pricing,
            8080,
            "TCP",
            true,
        ),
        (
            "storefront → payments",
            &storefront,
            &payments,
            8083,
            "TCP",
            true,
        ),
        (
            "storefront → orders",
            &storefront,
            &orders,
            8084,
            "TCP",
            true,
        ),
        (
            "storefront → database",
            &storefront,
            &db,
            5432,
            "TCP",
            false,
        ),
        (
            "orders → users (keys, its token)",
            &orders,
            &users,
            8082,
            "TCP",
            true,
        ),
        ("orders → inventory", &orders, &inventory, 8081, "TCP", true),
        ("orders → pricing", &orders, &pricing, 8080, "TCP", true),
        ("orders → payments", &orders, &payments, 8083, "TCP", true),
        ("orders → database", &orders, &db, 5432, "TCP", true),
        (
            "orders → storefront",
            &orders,
            &storefront,
            8085,
            "TCP",
            false,
        ),
        ("pricing → orders", &pricing, &orders, 8084, "TCP", false),
        ("payments → orders", &payments, &orders, 8084, "TCP", false),
        (
            "pricing → inventory",
            &pricing,
            &inventory,
            8081,
            "TCP",
            true,
        ),
        ("inventory → database", &inventory, &db, 5432, "TCP", true),
        // Token keys and accounts: only the services that check tokens
        // reach users; the wallets only through their own database login.
        (
            "inventory → users (keys)",
            &inventory,
            &users,
            8082,
            "TCP",
            true,
        ),
        (
            "payments → users (keys)",
            &payments,
            &users,
            8082,
            "TCP",
            true,
        ),
        ("users → database", &users, &db, 5432, "TCP", true),
        ("payments → database", &payments, &db, 5432, "TCP", true),
        ("world → users", &world, &users, 8082, "TCP", false),
        ("world → payments", &world, &payments, 8083, "TCP", false),
        (
            "pricing → payments",
            &pricing,
            &payments,
            8083,
            "TCP",
            false,
        ),
        ("pricing → users", &pricing, &users, 8082, "TCP", false),
        (
            "inventory → payments",
            &inventory,
            &payments,
            8083,
            "TCP",
            false,
        ),
        ("users → payments", &users, &payments, 8083, "TCP", false),
        ("users → the internet", &users, &world, 443, "TCP", false),
        (
            "payments → the internet",
            &payments,
            &world,
            443,
            "TCP",
            false,
        ),
        (
            "another pod in the namespace → payments",
            &stranger,
            &payments,
            8083,
            "TCP",
            false,
        ),
        (
            "every pod → cluster DNS (udp)",
            &pricing,
            &dns,
            53,
            "UDP",
            true,
        ),
        ("database → cluster DNS (tcp)", &db, &dns, 53, "TCP", true),
        ("world → inventory", &world, &inventory, 8081, "TCP", false),
        ("world → database", &world, &db, 5432, "TCP", false),
        ("pricing → database", &pricing, &db, 5432, "TCP", false),
        (
            "pricing → inventory on the database port",
            &pricing,
            &inventory,
            5432,
            "TCP",
            false,
        ),
        (
            "inventory → pricing",
            &inventory,
            &pricing,
            8080,
            "TCP",
            false,
        ),
        ("database → inventory", &db, &inventory, 8081, "TCP", false),
        ("database → the internet", &db, &world, 443, "TCP", false),
        (
            "pricing → the internet",
            &pricing,
            &world,
            443,
            "TCP",
            false,
        ),
        (
            "inventory → the internet",
            &inventory,
            &world,
            443,
            "TCP",
            false,
        ),
        (
            "another pod in the namespace → inventory",
            &stranger,
            &inventory,
            8081,
            "TCP",
            false,
        ),
        (
            "another pod in the namespace → database",
            &stranger,
            &db,
            5432,
            "TCP",
            false,
        ),
        (
            "a pod of another namespace → database",
            &other_ns,
            &db,
            5432,
            "TCP",
            false,
        ),
        (
            "a pod of another namespace → inventory",
            &other_ns,
            &inventory,
            8081,
            "TCP",
            false,
        ),
        (
            "prometheus → database",
            &prometheus,
            &db,
            5432,
            "TCP",
            false,
        ),
        (
            "prometheus → inventory /metrics",
            &prometheus,
            &inventory,
            8081,
            "TCP",
            true,
        ),
        (
            "prometheus → pricing /metrics",
            &prometheus,
            &pricing,
            8080,
            "TCP",
            true,
        ),
        (
            "prometheus → kube-state-metrics",
            &prometheus,
            &ksm,
            8080,
            "TCP",
            true,
        ),
        (
            "prometheus → the API server",
            &prometheus,
            &world,
            6443,
            "TCP",
            true,
        ),
        (
            "kube-state-metrics → the API server",
            &ksm,
            &world,
            6443,
            "TCP",
            true,
        ),
        (
            "grafana → prometheus",
            &grafana,
            &prometheus,
            9090,
            "TCP",
            true,
        ),
        ("grafana → cluster DNS", &grafana, &dns, 53, "UDP", true),
        (
            "grafana → inventory",
            &grafana,
            &inventory,
            8081,
            "TCP",
            false,
        ),
        (
            "grafana → the internet",
            &grafana,
            &world,
            443,
            "TCP",
            false,
        ),
        ("world → grafana", &world, &grafana, 3000, "TCP", false),
        (
            "world → prometheus",
            &world,
            &prometheus,
            9090,
            "TCP",
            false,
        ),
        (
            "pricing → prometheus",
            &pricing,
            &prometheus,
            9090,
            "TCP",
            false,
        ),
        (
            "another pod in the namespace → kube-state-metrics",
            &stranger,
            &ksm,
            8080,
            "TCP",
            false,
        ),
        (
            "kube-state-metrics → inventory",
            &ksm,
            &inventory,
            8081,
            "TCP",
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, from, to, port, proto, want) in &matrix {
        if policies.allowed(from, to, *port, proto) != *want {
            wrong.push(format!(
                "{what}: expected {}",
                if *want { "allowed" } else { "denied" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Scrapes: inventory accepts its metrics port from Prometheus pods (the
    // scraper's own egress is phase 7's policy).
    assert!(policies.side(&inventory, "Ingress", &prometheus, 8081, "TCP"));
    assert!(!policies.side(&inventory, "Ingress", &stranger, 8081, "TCP"));
}

#[test]
fn the_workloads_meet_the_restricted_pod_security_profile() {
    let tmp = scratch();
    let all = objects(&render(&tmp, ""));
    let ns = all.iter().find(|o| o["kind"] == "Namespace").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let workloads: Vec<&Value> = all
        .iter()
        .filter(|o| o["spec"]["template"].is_object())
        .collect();
    // One per catalogue entry and the database; 3 of monitoring.
    assert_eq!(workloads.len(), eshop::shop::SHOP.len() + 1 + 3);
    for w in workloads {
        let pod = &w["spec"]["template"]["spec"];
        let name = w["metadata"]["name"].as_str().unwrap();
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
            assert!(
                c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object(),
                "{name}"
            );
            assert_ne!(
                c["readinessProbe"], c["livenessProbe"],
                "{name}: readiness must differ from liveness"
            );
            assert!(
                c["readinessProbe"].is_object() && c["livenessProbe"].is_object(),
                "{name}"
            );
        }
        if w["kind"] == "Deployment" && w["metadata"]["labels"]["eshop/phase"] == "kubernetes" {
            assert_eq!(
                w["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
                "{name}"
            );
            assert!(
                w["spec"]["replicas"].is_null(),
                "{name}: the HPA owns the replica count"
            );
        }
    }
    // Secrets reach the services as files, never as environment values.
    // (The pod managers' admission policy names the field to forbid it.)
    let text = serde_json::to_string(
        &all.iter()
            .filter(|o| o["kind"] != "Secret" && o["kind"] != "ValidatingAdmissionPolicy")
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !text.contains("secretKeyRef"),
        "a secret in an environment variable"
    );
    let hpas: Vec<&Value> = all
        .iter()
        .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
        .collect();
    assert_eq!(hpas.len(), eshop::shop::SHOP.len());
    for h in hpas {
        let targets: Vec<(String, i64)> = h["spec"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["resource"]["name"].as_str().unwrap().to_owned(),
                    m["resource"]["target"]["averageUtilization"]
                        .as_i64()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(targets, [("cpu".to_owned(), 50), ("memory".to_owned(), 50)]);
    }
}

/// The state file is a cache, not a way in: an image reference edited
/// into it with a line break (which would add fields to the Deployment)
/// is refused with a warning, and what is rendered comes from the
/// configuration alone. State is per project: another project's file in
/// the same folder is never read.
#[test]
fn a_hostile_image_reference_in_the_state_file_is_ignored_not_rendered() {
    let p = scratch();
    let state_dir = p.dir.path().join(".eshop");
    std::fs::create_dir_all(&state_dir).unwrap();
    let hostile = serde_json::json!({
        "version": 1, "project": "shop", "target": "local",
        "phases": {"images": {"current": {
            "inventory": "registry.example.com/x:1\n        command: [\"sh\", \"-c\", \"evil\"]"
        }}}
    });
    std::fs::write(state_dir.join("shop-local.json"), hostile.to_string()).unwrap();
    p.write_config("project = \"shop\"\n[kubernetes]\nmode = \"existing\"\n[images]\nregistry = \"registry.example.com\"\n");
    let out = p.dir.path().join("rendered");
    let o = p.eshop(&["render", "kubernetes", "--out", out.to_str().unwrap()]);
    let said = common::cli::text(&o);
    assert!(
        said.contains("state file") && said.contains("not valid"),
        "{said}"
    );
    for f in yaml_files(&out) {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(!text.contains("evil"), "{}: {text}", f.display());
    }
}
