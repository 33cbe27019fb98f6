//! The catalogue is the one place a service is described: a made-up third
//! service, present only in this test's catalogue, gets its image, its
//! container, its Kubernetes objects, its NetworkPolicy flows and its
//! scrape job without any other code knowing it exists.

use super::{images, kubernetes, monitoring, security, Ctx, Phase};
use crate::config::{Config, Overrides};
use crate::shop::Service;
use crate::ui::{Output, Ui};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// users and inventory, then `reviews` (owns a database, calls
/// inventory), then pricing calling both.
static THREE: [Service; 4] = [
    crate::shop::USERS,
    crate::shop::INVENTORY,
    crate::shop::made_up("reviews", 8095, &["inventory"]),
    Service {
        calls: &["inventory", "reviews"],
        public: true,
        ..crate::shop::PRICING
    },
];

fn ctx(dir: &Path) -> Ctx {
    crate::shop::check(&THREE).unwrap();
    let cfg = Config::parse_for(
        &THREE,
        "[images]\nregistry = \"localhost:5000\"\n",
        &dir.join("eshop.toml"),
        dir,
        &BTreeMap::new(),
        &Overrides::default(),
    )
    .unwrap();
    let store = crate::state::Store::open(&cfg.state_dir, &cfg.project, "local").unwrap();
    Ctx::new(cfg, Ui::new(Output::Json, -1), store, false)
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn flat(files: Vec<(String, Vec<Value>)>) -> Vec<Value> {
    files.into_iter().flat_map(|(_, o)| o).collect()
}

/// The app names a policy rule's peers select.
fn peers(rule: &Value, key: &str) -> Vec<String> {
    rule[key]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Per egress rule of a policy, the app names it reaches.
fn egress_peers(policy: &Value) -> Vec<Vec<String>> {
    policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| peers(r, "to"))
        .collect()
}

#[test]
fn a_third_service_in_the_catalogue_gets_an_image_and_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let out = dir.path().join("render");
    let files = images::Images.render(&ctx, &out).unwrap();
    assert_eq!(files.len(), THREE.len());
    let df = std::fs::read_to_string(out.join("reviews/Dockerfile")).unwrap();
    assert!(df.contains("EXPOSE 8095"), "{df}");
    assert!(
        df.contains("DATA_DIR=/data"),
        "a database owner keeps its data: {df}"
    );

    let spec =
        images::container_spec(&ctx, &THREE[2], "localhost:5000/eshop-reviews:t", false).unwrap();
    assert!(spec
        .env
        .contains(&"INVENTORY_URL=http://eshop-eshop-inventory:8081".to_owned()));
    assert_eq!(spec.ports, [(8095, "127.0.0.1".to_owned(), 8095)]);
    assert_eq!(spec.volumes[0].0, "eshop-eshop-reviews-data");
    let pricing = images::container_spec(&ctx, &THREE[3], "p:t", false).unwrap();
    assert!(pricing
        .env
        .contains(&"REVIEWS_URL=http://eshop-eshop-reviews:8095".to_owned()));
}

#[test]
fn a_third_service_in_the_catalogue_gets_its_kubernetes_objects_and_flows() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let cfg = &ctx.config;
    let objs = flat(kubernetes::manifests(cfg, None, false).unwrap());
    for kind in [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ConfigMap",
    ] {
        assert!(named(&objs, kind, "reviews").is_some(), "no {kind} reviews");
    }
    let cm = named(&objs, "ConfigMap", "reviews").unwrap();
    assert_eq!(
        cm["data"]["INVENTORY_URL"],
        format!("http://inventory.{}.svc:8081", cfg.kube.namespace)
    );
    assert_eq!(cm["data"]["LISTEN_ADDR"], "0.0.0.0:8095");
    let pricing = named(&objs, "ConfigMap", "pricing").unwrap();
    assert_eq!(
        pricing["data"]["REVIEWS_URL"],
        format!("http://reviews.{}.svc:8095", cfg.kube.namespace)
    );
    let dep = named(&objs, "Deployment", "reviews").unwrap();
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 8095);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        c["env"][0]["name"], "DATABASE_URL_FILE",
        "a database owner gets the database URL"
    );

    let pol = flat(security::manifests(cfg).unwrap());
    let p = |n: &str| named(&pol, "NetworkPolicy", n).unwrap_or_else(|| panic!("no policy {n}"));
    let reviews = p("reviews");
    let ingress = reviews["spec"]["ingress"].as_array().unwrap();
    assert_eq!(peers(&ingress[0], "from"), ["pricing"]);
    assert_eq!(ingress[0]["ports"][0]["port"], 8095);
    assert_eq!(peers(&ingress[1], "from"), ["prometheus"]);
    let egress = egress_peers(reviews);
    assert_eq!(
        egress,
        [vec!["inventory".to_owned()], vec!["postgres".to_owned()]]
    );
    assert_eq!(
        peers(&p("inventory")["spec"]["ingress"][0], "from"),
        ["reviews", "pricing"]
    );
    assert_eq!(
        peers(&p("postgres")["spec"]["ingress"][0], "from"),
        ["users", "inventory", "reviews"]
    );
    let pricing_out = egress_peers(p("pricing"));
    assert_eq!(
        pricing_out,
        [vec!["inventory".to_owned()], vec!["reviews".to_owned()]]
    );
}

#[test]
fn a_third_service_in_the_catalogue_is_scraped() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let out = dir.path().join("render");
    monitoring::Monitoring.render(&ctx, &out).unwrap();
    let yml: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(out.join("prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let jobs: Vec<(String, String)> = yml["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["job_name"].as_str().unwrap().to_owned(),
                j["static_configs"][0]["targets"][0]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        jobs[2],
        ("reviews".to_owned(), "eshop-eshop-reviews:8095".to_owned())
    );
    assert_eq!(jobs.len(), THREE.len());
    assert_eq!(
        yml["scrape_configs"][2]["metrics_path"].as_str(),
        Some("/metrics")
    );

    let kube = monitoring::kube_prometheus_yml(&ctx.config).unwrap();
    assert!(
        kube.contains("(users|inventory|reviews|pricing);http"),
        "{kube}"
    );
    let objs = flat(monitoring::kube_manifests(&ctx.config, None).unwrap());
    let prom = named(&objs, "NetworkPolicy", "prometheus").unwrap();
    let to = egress_peers(prom);
    assert_eq!(to[2], ["reviews"]);
    assert_eq!(prom["spec"]["egress"][2]["ports"][0]["port"], 8095);
}
