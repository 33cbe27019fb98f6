//! Phases 5 and 6 in existing-cluster mode against a MOCK Kubernetes API
//! server (tests/common/kube_mock.rs: an in-memory REST server, not
//! Kubernetes; no API server can run on these machines). What eshop sends
//! is checked on the mock's side: server-side apply as field manager
//! `eshop`, order and rollout waits, pruning, destroy by label, the
//! certificate request of add-user. `a_real_cluster_…` at the end runs the
//! same against a real cluster when KUBECONFIG is set (ignored otherwise).

mod common;

use common::cli::Project;
use common::kube_mock::{KubeMock, Recorded};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const NS: &str = "shop";

fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// The mock API server and a project pointing at it; runs eshop as
/// [`Project`] does, never with the test's own KUBECONFIG.
struct Shop {
    mock: KubeMock,
    cli: Project,
}

common::cli::wraps_project!(Shop);

impl Shop {
    fn new(extra: &str) -> Shop {
        let mock = KubeMock::start();
        let cli = Project::new().env_remove("KUBECONFIG");
        mock.write_kubeconfig(&cli.dir.path().join("kubeconfig"), "mock");
        let s = Shop { mock, cli };
        s.configure(extra);
        s
    }

    fn configure(&self, extra: &str) {
        let timeout = if extra.contains("rollout_timeout_secs") {
            ""
        } else {
            "rollout_timeout_secs = 20\n"
        };
        self.write_config(&format!(
            "project = \"{NS}\"\n[kubernetes]\nmode = \"existing\"\nkubeconfig = \"kubeconfig\"\n\
             context = \"mock\"\n{timeout}{extra}\n[kubernetes.images]\n\
             inventory = \"localhost:5000/shop-inventory:1a2b@sha256:{}\"\n\
             pricing = \"localhost:5000/shop-pricing:1a2b@sha256:{}\"\n\
             users = \"localhost:5000/shop-users:1a2b@sha256:{}\"\n\
             payments = \"localhost:5000/shop-payments:1a2b@sha256:{}\"\n\
             orders = \"localhost:5000/shop-orders:1a2b@sha256:{}\"\n\
             storefront = \"localhost:5000/shop-storefront:1a2b@sha256:{}\"\n",
            digest('a'),
            digest('b'),
            digest('c'),
            digest('d'),
            digest('e'),
            digest('f')
        ));
    }

    fn obj(&self, api_version: &str, plural: &str, name: &str) -> Option<Value> {
        self.mock.get(api_version, plural, NS, name)
    }
}

fn patches(reqs: &[Recorded]) -> Vec<&Recorded> {
    reqs.iter().filter(|r| r.method == "PATCH").collect()
}

fn position(reqs: &[Recorded], method: &str, suffix: &str) -> usize {
    reqs.iter()
        .position(|r| r.method == method && r.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {method} …{suffix}"))
}

fn last_position(reqs: &[Recorded], method: &str, suffix: &str) -> usize {
    reqs.iter()
        .rposition(|r| r.method == method && r.path.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {method} …{suffix}"))
}

/// Every object eshop owns in the mock, as `Kind name`.
fn owned(mock: &KubeMock, phase: &str) -> Vec<String> {
    let mut v: Vec<String> = mock
        .all()
        .iter()
        .filter(|o| {
            o["metadata"]["labels"]["eshop/phase"] == phase
                && o["metadata"]["labels"]["eshop/project"] == NS
        })
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

const SHOP_OBJECTS: [&str; 50] = [
    "ConfigMap inventory",
    "ConfigMap orders",
    "ConfigMap payments",
    "ConfigMap postgres-setup",
    "ConfigMap pricing",
    "ConfigMap storefront",
    "ConfigMap users",
    "Deployment inventory",
    "Deployment orders",
    "Deployment payments",
    "Deployment pricing",
    "Deployment storefront",
    "Deployment users",
    "HorizontalPodAutoscaler inventory",
    "HorizontalPodAutoscaler orders",
    "HorizontalPodAutoscaler payments",
    "HorizontalPodAutoscaler pricing",
    "HorizontalPodAutoscaler storefront",
    "HorizontalPodAutoscaler users",
    "Namespace shop",
    "PodDisruptionBudget inventory",
    "PodDisruptionBudget orders",
    "PodDisruptionBudget payments",
    "PodDisruptionBudget pricing",
    "PodDisruptionBudget storefront",
    "PodDisruptionBudget users",
    "Secret db-admin",
    "Secret db-inventory",
    "Secret db-orders",
    "Secret db-payments",
    "Secret db-users",
    "Secret orders-client",
    "Secret storefront-session-key",
    "Secret users-signing-key",
    "Service inventory",
    "Service orders",
    "Service payments",
    "Service postgres",
    "Service pricing",
    "Service storefront",
    "Service storefront-public",
    "Service users",
    "ServiceAccount inventory",
    "ServiceAccount orders",
    "ServiceAccount payments",
    "ServiceAccount postgres",
    "ServiceAccount pricing",
    "ServiceAccount storefront",
    "ServiceAccount users",
    "StatefulSet postgres",
];

#[test]
fn apply_waits_prunes_and_destroys_by_label_against_a_mock_api_server() {
    let shop = Shop::new("");
    let plan = shop.ok(&["plan", "--from", "kubernetes", "--to", "security"]);
    assert!(
        plan.contains("plan: 63 to create, 0 to update, 0 to delete"),
        "{plan}"
    );

    let out = shop.ok(&["phase", "kubernetes", "apply"]);
    assert!(out.contains("50 change(s)"), "{out}");
    assert_eq!(owned(&shop.mock, "kubernetes"), SHOP_OBJECTS);
    let reqs = shop.mock.requests();

    // Server-side apply, as eshop, taking ownership; the namespace first.
    let p = patches(&reqs);
    assert_eq!(p.len(), 42, "every object but the eight Secrets is applied");
    for r in &p {
        assert_eq!(
            r.query.get("fieldManager").map(String::as_str),
            Some("eshop"),
            "{r:?}"
        );
        assert_eq!(
            r.query.get("force").map(String::as_str),
            Some("true"),
            "{r:?}"
        );
        assert!(!r.query.contains_key("dryRun"), "{r:?}");
    }
    assert_eq!(p[0].path, "/api/v1/namespaces/shop");

    // Each owner's database login: created once (POST), never applied,
    // never shown; its own role and database.
    let secret = shop.obj("v1", "secrets", "db-inventory").unwrap();
    let password = secret["stringData"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(password.len(), 32);
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        secret["stringData"]["database-url"].as_str().unwrap(),
        format!("postgres://inventory:{password}@postgres.shop.svc:5432/inventory")
    );
    let users_pw = shop.obj("v1", "secrets", "db-users").unwrap()["stringData"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(users_pw, password, "two services share a password");
    // The token signing key: one Ed25519 key for every users replica.
    let key = shop.obj("v1", "secrets", "users-signing-key").unwrap()["stringData"]
        ["signing-key.pem"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert!(
        !out.contains(key.lines().nth(1).unwrap()),
        "the key was printed"
    );
    assert!(!reqs
        .iter()
        .any(|r| r.method == "PATCH" && r.path.contains("/secrets/")));
    assert!(!out.contains(&password), "the password was printed");
    let state = shop.cli.state("local").to_string();
    assert!(
        !state.contains(&password),
        "the password reached the state file"
    );

    // Rollout order: the database is ready before inventory is applied,
    // inventory before pricing; each waited for (polled until ready).
    let db_ready = last_position(&reqs, "GET", "/statefulsets/postgres");
    let inv_apply = position(&reqs, "PATCH", "/deployments/inventory");
    let inv_ready = last_position(&reqs, "GET", "/deployments/inventory");
    let pricing_apply = position(&reqs, "PATCH", "/deployments/pricing");
    assert!(
        db_ready < inv_apply && inv_ready < pricing_apply,
        "order: {db_ready} {inv_apply} {inv_ready} {pricing_apply}"
    );
    let polls = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/deployments/pricing"))
        .count();
    assert!(
        polls >= 2,
        "pricing's rollout was not waited for ({polls} GETs)"
    );

    // What was applied is what the templates say.
    let inv = shop.obj("apps/v1", "deployments", "inventory").unwrap();
    let c = &inv["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        format!("localhost:5000/shop-inventory:1a2b@sha256:{}", digest('a'))
    );
    assert_eq!(
        c["env"][0],
        json!({"name": "DATABASE_URL_FILE", "value": "/run/secrets/db/database-url"})
    );
    // Orders proves itself to users with a client secret both mount; the
    // storefront's replicas share one form-signing key.
    let pod_spec = |name: &str| {
        shop.obj("apps/v1", "deployments", name).unwrap()["spec"]["template"]["spec"].clone()
    };
    let users = pod_spec("users");
    let env = &users["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "SERVICE_CLIENTS_DIR", "value": "/run/secrets/clients"})),
        "{env}"
    );
    let clients = users["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "clients")
        .unwrap();
    assert_eq!(
        clients["projected"]["sources"],
        json!([{"secret": {"name": "orders-client", "items": [{"key": "secret", "path": "orders"}]}}])
    );
    let orders = pod_spec("orders");
    assert!(orders["containers"][0]["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "SERVICE_SECRET_FILE", "value": "/run/secrets/client/secret"})));
    assert!(orders["volumes"].as_array().unwrap().contains(
        &json!({"name": "client", "secret": {"secretName": "orders-client", "defaultMode": 288}})
    ));
    let storefront = pod_spec("storefront");
    assert!(storefront["containers"][0]["env"]
        .as_array()
        .unwrap()
        .contains(
            &json!({"name": "SESSION_KEY_FILE", "value": "/run/secrets/session-key/session.key"})
        ));
    for (secret, key) in [
        ("orders-client", "secret"),
        ("storefront-session-key", "session.key"),
    ] {
        let value = shop.obj("v1", "secrets", secret).unwrap()["stringData"][key]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(value.len() >= 32, "{secret}: {value:?}");
        assert!(!out.contains(&value), "{secret} was printed");
    }
    let pricing_cfg = shop.obj("v1", "configmaps", "pricing").unwrap();
    assert_eq!(
        pricing_cfg["data"]["INVENTORY_URL"],
        "http://inventory.shop.svc:8081"
    );
    assert_eq!(
        shop.obj("v1", "services", "storefront-public").unwrap()["spec"]["ports"][0]["nodePort"],
        30080
    );

    // Converged: nothing to do, and no object changed on the server.
    let versions = |m: &KubeMock| -> Vec<Value> {
        m.all()
            .iter()
            .map(|o| o["metadata"]["resourceVersion"].clone())
            .collect()
    };
    let before = versions(&shop.mock);
    let again = shop.ok(&["phase", "kubernetes", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    let plan = shop.ok(&["plan", "--from", "kubernetes", "--to", "kubernetes"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete, 50 unchanged"),
        "{plan}"
    );
    assert_eq!(
        versions(&shop.mock),
        before,
        "a converged run changed an object"
    );
    assert_eq!(
        shop.obj("v1", "secrets", "db-inventory").unwrap()["stringData"]["password"],
        password.as_str()
    );

    // A configuration change is an update of exactly what it touches.
    shop.configure("max_replicas = 9");
    let plan = shop.ok(&["plan", "--from", "kubernetes", "--to", "kubernetes"]);
    assert!(
        plan.contains("0 to create, 6 to update, 0 to delete"),
        "{plan}"
    );
    assert!(
        plan.contains("~ HorizontalPodAutoscaler shop/inventory"),
        "{plan}"
    );
    shop.ok(&["phase", "kubernetes", "apply"]);
    assert_eq!(
        shop.obj("autoscaling/v2", "horizontalpodautoscalers", "pricing")
            .unwrap()["spec"]["maxReplicas"],
        9
    );

    // Prune: a labelled object no longer rendered goes; a foreign one stays.
    let labels = json!({"eshop/project": NS, "eshop/target": "local", "eshop/phase": "kubernetes"});
    shop.mock.put(
        "v1",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "leftover", "namespace": NS, "labels": labels}, "data": {}}),
    );
    shop.mock.put("v1", "configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "foreign", "namespace": NS, "labels": {"eshop/project": "another"}}, "data": {}}));
    let plan = shop.ok(&["phase", "kubernetes", "plan"]);
    assert!(
        plan.contains("- ConfigMap shop/leftover (no longer rendered)"),
        "{plan}"
    );
    assert!(!plan.contains("foreign"), "{plan}");
    let out = shop.ok(&["phase", "kubernetes", "apply"]);
    assert!(out.contains("pruned ConfigMap shop/leftover"), "{out}");
    assert!(shop.obj("v1", "configmaps", "leftover").is_none());
    assert!(shop.obj("v1", "configmaps", "foreign").is_some());

    // Phase 6 on top.
    let out = shop.ok(&["phase", "security", "apply"]);
    assert!(out.contains("13 change(s)"), "{out}");
    assert_eq!(
        owned(&shop.mock, "security"),
        [
            "NetworkPolicy default-deny",
            "NetworkPolicy dns-egress",
            "NetworkPolicy inventory",
            "NetworkPolicy orders",
            "NetworkPolicy payments",
            "NetworkPolicy postgres",
            "NetworkPolicy pricing",
            "NetworkPolicy storefront",
            "NetworkPolicy users",
            "Role pod-manager",
            "RoleBinding pod-managers",
            "ValidatingAdmissionPolicy eshop-shop-pod-manager",
            "ValidatingAdmissionPolicyBinding eshop-shop-pod-manager",
        ]
    );
    let status = shop.ok(&["phase", "kubernetes", "status"]);
    assert!(status.contains("✔ Deployment shop/pricing"), "{status}");

    // Destroy by label: without --purge-data the database's claim (and so
    // its namespace) stays; with it, everything eshop labelled goes.
    shop.mock.put(
        "v1",
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-postgres-0", "namespace": NS, "labels": labels}, "spec": {}}),
    );
    shop.ok(&["phase", "security", "destroy"]);
    assert!(owned(&shop.mock, "security").is_empty());
    let out = shop.ok(&["phase", "kubernetes", "destroy"]);
    assert!(
        out.contains("kept PersistentVolumeClaim shop/data-postgres-0, Namespace shop"),
        "{out}"
    );
    assert_eq!(
        owned(&shop.mock, "kubernetes"),
        ["Namespace shop", "PersistentVolumeClaim data-postgres-0"]
    );
    assert!(shop.obj("v1", "configmaps", "foreign").is_some());
    let out = shop.ok(&["--yes", "destroy", "--purge-data"]);
    assert!(
        out.contains("deleted PersistentVolumeClaim shop/data-postgres-0"),
        "{out}"
    );
    assert!(owned(&shop.mock, "kubernetes").is_empty());
    let twice = shop.ok(&["phase", "kubernetes", "destroy"]);
    assert!(twice.contains("0 object(s) removed"), "{twice}");
}

const MONITORING_OBJECTS: [&str; 21] = [
    "ConfigMap grafana-dashboards",
    "ConfigMap grafana-provisioning",
    "ConfigMap prometheus",
    "Deployment grafana",
    "Deployment kube-state-metrics",
    "Deployment prometheus",
    "NetworkPolicy grafana",
    "NetworkPolicy kube-state-metrics",
    "NetworkPolicy prometheus",
    "PersistentVolumeClaim prometheus-data",
    "Role kube-state-metrics",
    "Role prometheus",
    "RoleBinding kube-state-metrics",
    "RoleBinding prometheus",
    "Secret grafana-admin",
    "Service grafana",
    "Service prometheus",
    "ServiceAccount grafana",
    "ServiceAccount kube-state-metrics",
    "ServiceAccount prometheus",
    "ServiceAccount prometheus",
];

#[test]
fn monitoring_runs_on_the_cluster_converges_prunes_grafana_and_keeps_its_data_on_a_mock_api_server()
{
    let shop = Shop::new("");
    shop.ok(&["phase", "kubernetes", "apply"]);
    let out = shop.ok(&["phase", "monitoring", "apply"]);
    let mut want: Vec<&str> = MONITORING_OBJECTS.to_vec();
    want.dedup();
    assert_eq!(owned(&shop.mock, "monitoring"), want);
    assert!(out.contains(&format!("{} change(s)", want.len())), "{out}");
    // How to reach it, not a secret in sight.
    assert!(out.contains("port-forward svc/grafana 3000"), "{out}");
    let secret = shop.obj("v1", "secrets", "grafana-admin").unwrap();
    let password = secret["stringData"]["admin-password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(password.len(), 32);
    assert!(!out.contains(&password));

    // Prometheus finds the pods of this namespace, with the rules loaded;
    // Grafana gets the in-cluster datasource and both dashboards.
    let cm = shop.obj("v1", "configmaps", "prometheus").unwrap();
    let prom_yml = cm["data"]["prometheus.yml"].as_str().unwrap();
    let prom: Value = serde_yaml::from_str(prom_yml).unwrap();
    let sd = &prom["scrape_configs"][0]["kubernetes_sd_configs"][0];
    assert_eq!(
        (&sd["role"], &sd["namespaces"]["names"]),
        (&json!("pod"), &json!(["shop"])),
        "{prom_yml}"
    );
    assert!(cm["data"]["rules.yml"]
        .as_str()
        .unwrap()
        .contains("EshopServiceDown"));
    assert!(cm["data"]["rules-kubernetes.yml"]
        .as_str()
        .unwrap()
        .contains("EshopAutoscalerAtMaximum"));
    let prov = shop
        .obj("v1", "configmaps", "grafana-provisioning")
        .unwrap();
    assert!(prov["data"]["datasource.yml"]
        .as_str()
        .unwrap()
        .contains("url: http://prometheus.shop.svc:9090"));
    let dash = shop.obj("v1", "configmaps", "grafana-dashboards").unwrap();
    for d in ["eshop-services.json", "eshop-kubernetes.json"] {
        let v: Value = serde_json::from_str(dash["data"][d].as_str().unwrap()).unwrap();
        assert!(v["panels"].as_array().is_some_and(|p| !p.is_empty()), "{d}");
    }
    // The rollout was waited for, each workload in turn.
    let reqs = shop.mock.requests();
    for d in ["prometheus", "kube-state-metrics", "grafana"] {
        assert!(
            reqs.iter()
                .any(|r| r.method == "GET" && r.path.ends_with(&format!("/deployments/{d}"))),
            "{d}: no rollout check"
        );
    }

    // Converged: nothing changes, the password stays.
    let again = shop.ok(&["phase", "monitoring", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    let plan = shop.ok(&["plan", "--from", "monitoring", "--to", "monitoring"]);
    assert!(
        plan.contains(&format!(
            "0 to create, 0 to update, 0 to delete, {} unchanged",
            want.len()
        )),
        "{plan}"
    );
    assert_eq!(
        shop.obj("v1", "secrets", "grafana-admin").unwrap()["stringData"]["admin-password"],
        password.as_str()
    );

    // A changed scrape interval rolls Prometheus (its config hash).
    shop.configure("[monitoring]\nscrape_interval_secs = 15");
    let plan = shop.ok(&["phase", "monitoring", "plan"]);
    assert!(plan.contains("~ ConfigMap shop/prometheus"), "{plan}");
    assert!(plan.contains("~ Deployment shop/prometheus"), "{plan}");
    assert!(!plan.contains("~ Deployment shop/grafana"), "{plan}");

    // No Grafana any more: its objects are pruned, the rest stays.
    shop.configure("[monitoring]\ngrafana_image = \"\"");
    let out = shop.ok(&["phase", "monitoring", "apply"]);
    assert!(out.contains("pruned Deployment shop/grafana"), "{out}");
    assert!(shop.obj("apps/v1", "deployments", "grafana").is_none());
    assert!(shop.obj("apps/v1", "deployments", "prometheus").is_some());

    // Destroy by label keeps the metrics' claim unless --purge-data.
    let out = shop.ok(&["phase", "monitoring", "destroy"]);
    assert!(
        out.contains("kept PersistentVolumeClaim shop/prometheus-data"),
        "{out}"
    );
    assert_eq!(
        owned(&shop.mock, "monitoring"),
        ["PersistentVolumeClaim prometheus-data"]
    );
    assert!(
        !owned(&shop.mock, "kubernetes").is_empty(),
        "the shop stays"
    );
    shop.ok(&["phase", "monitoring", "destroy", "--purge-data"]);
    assert!(owned(&shop.mock, "monitoring").is_empty());
}

const TOKENS: [(&str, &str); 2] = [
    ("ESHOP_DYNATRACE_API_TOKEN", "dt0c01.APITOKEN-SECRET"),
    ("ESHOP_DYNATRACE_DATA_INGEST_TOKEN", "dt0c01.INGEST-SECRET"),
];

#[test]
fn apm_installs_the_dynatrace_operator_and_a_dynakube_and_points_traces_at_the_tenant_on_a_mock_api_server(
) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apm/operator-fixture.yaml");
    let shop = Shop::new(&format!(
        "[apm]\ndynatrace_url = \"https://abc12345.live.dynatrace.com/\"\n\
         dynatrace_operator_manifest = \"{}\"\n",
        fixture.display()
    ));
    // Phase 5 wires the services' trace export to the tenant; the token
    // travels in a Secret file, never in the ConfigMap.
    let out = shop.ok_with(&["phase", "kubernetes", "apply"], &TOKENS);
    let cm = shop.obj("v1", "configmaps", "pricing").unwrap();
    assert_eq!(
        cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "https://abc12345.live.dynatrace.com/api/v2/otlp"
    );
    assert_eq!(
        cm["data"]["OTEL_EXPORTER_OTLP_HEADERS_FILE"],
        "/run/secrets/otlp/headers"
    );
    let otlp = shop.obj("v1", "secrets", "otlp").unwrap();
    assert_eq!(
        otlp["stringData"]["headers"],
        "Authorization=Api-Token%20dt0c01.INGEST-SECRET"
    );

    let apply = shop.ok_with(&["phase", "apm", "apply"], &TOKENS);
    let all = format!("{out}{apply}");
    for (_, token) in TOKENS {
        assert!(!all.contains(token), "a token was printed:\n{all}");
        assert!(!all.contains("INGEST-SECRET") && !all.contains("APITOKEN-SECRET"));
    }
    assert_eq!(
        owned(&shop.mock, "apm"),
        [
            "ClusterRole dynatrace-operator",
            "ClusterRoleBinding dynatrace-operator",
            "CustomResourceDefinition dynakubes.dynatrace.com",
            "Deployment dynatrace-operator",
            "DynaKube eshop-shop",
            "Namespace dynatrace",
            "Secret eshop-shop",
            "Service dynatrace-webhook",
            "ServiceAccount dynatrace-operator",
            "ValidatingWebhookConfiguration dynatrace-webhook",
        ]
    );
    let tokens = shop
        .mock
        .get("v1", "secrets", "dynatrace", "eshop-shop")
        .unwrap();
    assert_eq!(tokens["stringData"]["apiToken"], "dt0c01.APITOKEN-SECRET");
    assert_eq!(
        tokens["stringData"]["dataIngestToken"],
        "dt0c01.INGEST-SECRET"
    );
    let dk = shop
        .mock
        .get(
            "dynatrace.com/v1beta3",
            "dynakubes",
            "dynatrace",
            "eshop-shop",
        )
        .unwrap();
    assert_eq!(
        dk["spec"]["apiUrl"],
        "https://abc12345.live.dynatrace.com/api"
    );
    assert_eq!(dk["spec"]["tokens"], "eshop-shop");
    // Order: definitions first, the webhook once the operator rolled out,
    // the DynaKube last.
    let reqs = shop.mock.requests();
    let crd = position(
        &reqs,
        "PATCH",
        "/customresourcedefinitions/dynakubes.dynatrace.com",
    );
    let deploy = position(&reqs, "PATCH", "/deployments/dynatrace-operator");
    let rolled = last_position(&reqs, "GET", "/deployments/dynatrace-operator");
    let webhook = position(
        &reqs,
        "PATCH",
        "/validatingwebhookconfigurations/dynatrace-webhook",
    );
    let dynakube = position(&reqs, "PATCH", "/dynakubes/eshop-shop");
    assert!(crd < deploy && deploy < rolled && rolled < webhook && webhook < dynakube);

    // Converged; a rotated token is applied (its Secret is not create-only).
    let again = shop.ok_with(&["phase", "apm", "apply"], &TOKENS);
    assert!(again.contains("0 change(s)"), "{again}");
    let rotated = [
        TOKENS[0],
        ("ESHOP_DYNATRACE_DATA_INGEST_TOKEN", "dt0c01.ROTATED"),
    ];
    shop.ok_with(&["phase", "apm", "apply"], &rotated);
    assert_eq!(
        shop.mock
            .get("v1", "secrets", "dynatrace", "eshop-shop")
            .unwrap()["stringData"]["dataIngestToken"],
        "dt0c01.ROTATED"
    );

    // Destroy by label, even with [apm] gone from the configuration.
    shop.configure("");
    let out = shop.ok(&["phase", "apm", "destroy"]);
    assert!(
        out.contains("deleted DynaKube dynatrace/eshop-shop"),
        "{out}"
    );
    assert!(owned(&shop.mock, "apm").is_empty());
    assert!(
        !owned(&shop.mock, "kubernetes").is_empty(),
        "the shop stays"
    );
}

#[test]
fn apm_without_configuration_says_so_and_calls_nothing_and_missing_tokens_exit_2() {
    let shop = Shop::new("");
    let before = shop.mock.requests().len();
    let out = shop.ok(&["phase", "apm", "apply"]);
    assert!(out.contains("not configured, nothing to do"), "{out}");
    assert_eq!(shop.mock.requests().len(), before, "no API call");

    shop.configure("[apm]\ndynatrace_url = \"https://abc12345.live.dynatrace.com\"\n");
    let err = shop.fails_with(
        &["phase", "apm", "apply"],
        &[("ESHOP_DYNATRACE_API_TOKEN", "dt0c01.ONLY-ONE")],
        2,
    );
    assert!(
        err.contains("eshop.toml:")
            && err.contains("apm.dynatrace_url")
            && err.contains("ESHOP_DYNATRACE_DATA_INGEST_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("ONLY-ONE"), "{err}");
    for (bad, key) in [
        (
            "dynatrace_url = \"http://abc.live.dynatrace.com\"",
            "apm.dynatrace_url",
        ),
        ("otlp_endpoint = \"collector:4318\"", "apm.otlp_endpoint"),
        (
            "otlp_endpoint = \"http://c:4318/v1/traces\"",
            "apm.otlp_endpoint",
        ),
    ] {
        shop.configure(&format!("[apm]\n{bad}\n"));
        let err = shop.fails_with(&["phase", "apm", "apply"], &TOKENS, 2);
        assert!(
            err.contains("eshop.toml:8:") && err.contains(key),
            "{bad}: {err}"
        );
    }
    assert_eq!(shop.mock.requests().len(), before, "no API call");
}

#[test]
fn add_user_gets_a_certificate_signed_through_the_mock_api_server_and_a_private_kubeconfig() {
    let shop = Shop::new("");
    // Without the binding the certificate would grant nothing.
    let err = shop.fails(&["phase", "security", "add-user", "alice"], 1);
    assert!(err.contains("run eshop phase security apply first"));
    shop.ok(&["phase", "kubernetes", "apply"]);
    shop.ok(&["phase", "security", "apply"]);

    let out = shop.ok(&["phase", "security", "add-user", "alice", "--days", "7"]);
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let path = shop.dir.path().join(".eshop/users/alice.kubeconfig");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dec = |v: &Value| String::from_utf8(b64.decode(v.as_str().unwrap()).unwrap()).unwrap();
    let user = &kc["users"][0];
    assert_eq!(user["name"], "alice");
    assert!(dec(&user["user"]["client-certificate-data"]).contains("MOCK alice"));
    assert!(dec(&user["user"]["client-key-data"]).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(kc["clusters"][0]["cluster"]["server"], shop.mock.url());
    assert_eq!(kc["contexts"][0]["context"]["namespace"], NS);
    assert_eq!(kc["current-context"], kc["contexts"][0]["name"]);

    // The request: a client certificate for alice in the pod managers'
    // group, 7 days, approved; cleaned up afterwards.
    let reqs = shop.mock.requests();
    let create = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/certificatesigningrequests"))
        .unwrap();
    let spec = &create.body.as_ref().unwrap()["spec"];
    assert_eq!(spec["signerName"], "kubernetes.io/kube-apiserver-client");
    assert_eq!(spec["usages"], json!(["client auth"]));
    assert_eq!(spec["expirationSeconds"], 7 * 86_400);
    let csr = dec(&spec["request"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("req.pem"), &csr).unwrap();
    let subject = Command::new("openssl")
        .args(["req", "-noout", "-subject", "-in"])
        .arg(dir.path().join("req.pem"))
        .output()
        .unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(
        subject.contains("CN = alice") && subject.contains("O = eshop-shop-pod-managers"),
        "{subject}"
    );
    let approval = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.path.ends_with("/approval"))
        .unwrap();
    assert_eq!(
        approval.body.as_ref().unwrap()["status"]["conditions"][0]["type"],
        "Approved"
    );
    assert!(shop
        .mock
        .all()
        .iter()
        .all(|o| o["kind"] != "CertificateSigningRequest"));

    // Bad names and the wrong phase are usage errors.
    for args in [
        vec!["phase", "security", "add-user", "../../etc"],
        vec!["phase", "kubernetes", "add-user", "bob"],
    ] {
        shop.fails(&args, 2);
    }
}

#[test]
fn a_rollout_that_never_finishes_fails_naming_the_workload_on_a_mock_api_server() {
    let shop = Shop::new("rollout_timeout_secs = 5");
    shop.mock.stuck("deployments", NS, "inventory");
    let start = std::time::Instant::now();
    let err = shop.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("Deployment shop/inventory did not finish rolling out in 5s"),
        "{err}"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    // pricing waits for inventory: it was never applied.
    assert!(shop.obj("apps/v1", "deployments", "pricing").is_none());
}

#[test]
fn bad_kubernetes_configuration_exits_2_naming_key_and_line_before_any_api_call() {
    let shop = Shop::new("");
    let head =
        "project = \"shop\"\n[kubernetes]\nmode = \"existing\"\nkubeconfig = \"kubeconfig\"\n";
    let cases = [
        (
            "min_replicas = 5\nmax_replicas = 2\n",
            "eshop.toml:5:16: kubernetes.min_replicas: 5 is larger than kubernetes.max_replicas 2",
        ),
        (
            "namespace = \"Shop\"\n",
            "eshop.toml:5:13: kubernetes.namespace",
        ),
        (
            "entry = \"loadbalancer\"\n",
            "eshop.toml:5:9: kubernetes.entry",
        ),
        (
            "pod_cidr = \"10.96.0.0/16\"\n",
            "kubernetes.service_cidr: 10.96.0.0/12 overlaps kubernetes.pod_cidr",
        ),
        (
            "[kubernetes.images]\ncart = \"x:1\"\n",
            "eshop.toml:6:1: kubernetes.images.cart: unknown service",
        ),
        (
            "[[kubernetes.nodes]]\nname = \"w1\"\naddress = \"10.0.0.2\"\n",
            "kubernetes.nodes: only used with mode = \"bootstrap\"",
        ),
    ];
    let commands: [&[&str]; 3] = [
        &["phase", "kubernetes", "apply"],
        &["plan"],
        &["phase", "security", "add-user", "a"],
    ];
    shop.rejects_configs(head, &cases, &commands);
    let bootstrap = "project = \"shop\"\n[kubernetes]\nmode = \"bootstrap\"\n\
                     [[kubernetes.nodes]]\nname = \"w1\"\naddress = \"10.0.0.2\"\n";
    shop.write_config(bootstrap);
    let err = shop.fails(&["phase", "kubernetes", "apply"], 2);
    assert!(err.contains("needs exactly one node with role = \"control-plane\", found 0"));
    assert!(
        shop.mock.requests().is_empty(),
        "the API was called: {:?}",
        shop.mock.requests()
    );
}

/// Against a real cluster: `KUBECONFIG=… ESHOP_E2E_INVENTORY_IMAGE=…
/// ESHOP_E2E_PRICING_IMAGE=… cargo test --test kubernetes_cluster -- --ignored`
/// (images the cluster can pull, e.g. pushed by phase 2). Deploys phases 5
/// and 6 into namespace eshop-e2e, checks they roll out and converge, then
/// removes everything including the data.
#[test]
#[ignore = "needs a real cluster: KUBECONFIG and ESHOP_E2E_*_IMAGE"]
fn a_real_cluster_runs_the_shop_converges_and_is_left_clean() {
    let kubeconfig = PathBuf::from(std::env::var("KUBECONFIG").expect("KUBECONFIG"));
    let image = |s: &str| {
        std::env::var(format!("ESHOP_E2E_{s}_IMAGE"))
            .unwrap_or_else(|_| panic!("ESHOP_E2E_{s}_IMAGE"))
    };
    let p = Project::with_config(&format!(
        "project = \"eshop-e2e\"\n[kubernetes]\nmode = \"existing\"\nkubeconfig = \"{}\"\n\
         [kubernetes.images]\ninventory = \"{}\"\npricing = \"{}\"\n",
        kubeconfig.display(),
        image("INVENTORY"),
        image("PRICING")
    ));
    p.ok(&["up", "--from", "kubernetes", "--to", "security"]);
    assert!(p
        .ok(&["up", "--from", "kubernetes", "--to", "security"])
        .contains("up: 0 change(s)"));
    p.ok(&["phase", "kubernetes", "status"]);
    p.ok(&["phase", "security", "add-user", "e2e-user", "--days", "1"]);
    p.ok(&["--yes", "destroy", "--purge-data"]);
}

/// eshop adopts no namespace (one of the same name without this
/// project's labels is refused before anything is applied, and keeps its
/// labels), and never deletes the shop's old namespace, with the
/// database's claims in it, because kubernetes.namespace changed.
#[test]
fn a_foreign_namespace_is_not_adopted_and_an_old_one_is_not_pruned() {
    let shop = Shop::new("");
    shop.mock.put(
        "v1",
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS, "labels": {"team": "payments"}}}),
    );
    for args in [
        &["phase", "kubernetes", "plan"][..],
        &["phase", "kubernetes", "apply"],
    ] {
        let err = shop.fails(args, 1);
        assert!(
            err.contains("namespace shop exists and is not eshop's for project shop"),
            "{err}"
        );
    }
    let ns = shop.mock.get("v1", "namespaces", "", NS).unwrap();
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"team": "payments"}),
        "not stamped"
    );
    assert!(
        !shop
            .mock
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" || r.method == "POST"),
        "nothing was applied"
    );

    // The shop's earlier namespace, now that the configured one differs.
    let shop = Shop::new("");
    let labels = json!({"eshop/project": NS, "eshop/target": "local", "eshop/phase": "kubernetes"});
    shop.mock.put(
        "v1",
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old-shop", "labels": labels}}),
    );
    let err = shop.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("namespace old-shop holds this project's shop")
            && err.contains("Set kubernetes.namespace back to \"old-shop\""),
        "{err}"
    );
    assert!(shop.mock.get("v1", "namespaces", "", "old-shop").is_some());
    assert!(
        shop.mock.get("v1", "namespaces", "", NS).is_none(),
        "stopped before applying"
    );
}
