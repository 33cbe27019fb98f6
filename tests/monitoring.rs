//! The monitoring templates against a real Prometheus (Debian's package):
//! promtool checks and unit-tests every alert (both rule files) and the
//! in-cluster scrape configuration; Prometheus scrapes the real services
//! while a bounded load runs, plus a kube-state-metrics FIXTURE (a recorded
//! exposition served by the test: kube-state-metrics itself needs an API
//! server, which cannot run here), and every panel of both dashboards and
//! every alert expression returns data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/monitoring")
}

fn tool(name: &str) -> PathBuf {
    let p = PathBuf::from(format!("/usr/bin/{name}"));
    assert!(
        p.exists(),
        "{} missing: run scripts/test-setup.sh",
        p.display()
    );
    p
}

const RULES: [(&str, &str); 2] = [
    ("rules.yml", "rules.test.yml"),
    ("rules-kubernetes.yml", "rules-kubernetes.test.yml"),
];

#[test]
fn promtool_accepts_the_rules_and_every_alert_passes_its_unit_tests() {
    for (rules_file, tests_file) in RULES {
        let out = Command::new(tool("promtool"))
            .args(["check", "rules"])
            .arg(templates().join(rules_file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{rules_file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let out = Command::new(tool("promtool"))
            .current_dir(templates())
            .args(["test", "rules", tests_file])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{tests_file}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Every alert has at least one test.
        let rules = std::fs::read_to_string(templates().join(rules_file)).unwrap();
        let tests = std::fs::read_to_string(templates().join(tests_file)).unwrap();
        for line in rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert: "))
        {
            assert!(
                tests.contains(&format!("alertname: {line}")),
                "alert {line} has no promtool test"
            );
        }
    }
}

#[test]
fn the_in_cluster_scrape_configuration_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = eshop::config::Config::parse_for(
        eshop::shop::SHOP,
        "[kubernetes]\nmode = \"existing\"\nnamespace = \"shop\"\n",
        Path::new("eshop.toml"),
        Path::new("."),
        &std::collections::BTreeMap::<String, String>::new(),
        &eshop::config::Overrides::default(),
    )
    .unwrap();
    let yml = eshop::phases::monitoring::kube_prometheus_yml(&cfg).unwrap();
    // Debian's Prometheus is built without Kubernetes discovery, so
    // promtool checks everything else (relabelling, regexes, intervals)
    // with the discovery swapped for a static target.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    let mut swapped = 0;
    for job in doc["scrape_configs"].as_sequence_mut().unwrap() {
        let m = job.as_mapping_mut().unwrap();
        if let Some(sd) = m.remove("kubernetes_sd_configs") {
            assert_eq!(sd[0]["namespaces"]["names"][0], "shop", "{sd:?}");
            m.insert(
                "static_configs".into(),
                serde_yaml::from_str("[{targets: [\"127.0.0.1:1\"]}]").unwrap(),
            );
            swapped += 1;
        }
    }
    assert_eq!(swapped, 2, "{yml}");
    let checkable = serde_yaml::to_string(&doc).unwrap();
    let f = dir.path().join("prometheus.yml");
    std::fs::write(&f, &checkable).unwrap();
    // Syntax only: the rule files live at their in-pod paths.
    let out = Command::new(tool("promtool"))
        .args(["check", "config", "--syntax-only"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    let jobs: Vec<&str> = v["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["shop", "kube-state-metrics"]);
    for j in v["scrape_configs"].as_sequence().unwrap() {
        let sd = &j["kubernetes_sd_configs"][0];
        assert_eq!(sd["role"].as_str(), Some("pod"));
        assert_eq!(
            sd["namespaces"]["names"][0].as_str(),
            Some("shop"),
            "discovery limited to the shop's namespace (its Role allows no more)"
        );
    }
}

const DASHBOARDS: [&str; 2] = ["eshop-services", "eshop-kubernetes"];

fn dashboard(uid: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(templates().join(format!("dashboards/{uid}.json"))).unwrap(),
    )
    .unwrap()
}

#[test]
fn the_dashboards_are_valid_grafana_json_wired_to_the_provisioned_datasource() {
    let ds = std::fs::read_to_string(templates().join("grafana/datasource.yml")).unwrap();
    assert!(ds.contains("uid: eshop-prometheus"));
    for (uid, want) in [
        (
            "eshop-services",
            &[
                "Request rate",
                "Error ratio",
                "Latency p50 / p95 / p99",
                "In-flight",
                "memory",
                "CPU",
                "stock",
            ][..],
        ),
        (
            "eshop-kubernetes",
            &[
                "Replicas vs HPA",
                "HPA targets",
                "Deployment replicas",
                "restarts",
            ][..],
        ),
    ] {
        check_dashboard(&dashboard(uid), uid, want);
    }
}

fn check_dashboard(d: &serde_json::Value, uid: &str, want: &[&str]) {
    assert_eq!(d["uid"], uid);
    assert!(d["schemaVersion"].as_i64().unwrap() >= 30);
    let panels = d["panels"].as_array().unwrap();
    assert!(panels.len() >= want.len(), "{uid}");
    let mut ids = std::collections::HashSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate panel id");
        assert_eq!(p["datasource"]["uid"], "eshop-prometheus", "{}", p["title"]);
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_i64(), "{} gridPos.{k}", p["title"]);
        }
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "eshop-prometheus");
            assert!(t["refId"].is_string() && t["expr"].is_string());
        }
    }
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for want in want {
        assert!(
            titles.iter().any(|t| t.contains(want)),
            "{uid}: no panel for {want}: {titles:?}"
        );
    }
}

struct Prom(Child);
impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(c: &reqwest::Client, base: &str, expr: &str) -> serde_json::Value {
    let v: serde_json::Value = c
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{expr}: {v}");
    v["data"]["result"].clone()
}

/// The measured side of an alert: the expression without its threshold.
fn measured(expr: &str) -> String {
    let e = expr.trim();
    for op in [">=", "<=", "==", "!=", ">", "<"] {
        if let Some(i) = e.rfind(op) {
            let rhs = e[i + op.len()..].trim();
            if rhs.parse::<f64>().is_ok() {
                return e[..i].trim().to_owned();
            }
            // Series against series: compare with `bool`, which keeps
            // every matched pair (0 or 1) instead of filtering.
            if !rhs.is_empty() && !rhs.starts_with("bool") {
                return format!("{} {op} bool {rhs}", e[..i].trim());
            }
        }
    }
    e.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_services_and_every_panel_and_alert_has_data() {
    use kit::config::Map;
    // Real services on port 0.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/inv.db?mode=rwc", dir.path().display());
    let users_cfg = users::Config::from_source(&Map::new([
        (
            "DATABASE_URL",
            format!("sqlite://{}/users.db?mode=rwc", dir.path().display()).as_str(),
        ),
        ("DATA_DIR", dir.path().to_str().unwrap()),
        ("LOG_LEVEL", "warn"),
        ("ADMIN_EMAILS", "ann@example.com"),
        ("PASSWORD_HASH_MEMORY_KIB", "256"),
        ("PASSWORD_HASH_ITERATIONS", "1"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let users_addr = l.local_addr().unwrap();
    let users = users::Application::build_with_listener(users_cfg, l)
        .await
        .unwrap();
    tokio::spawn(users.run(std::future::pending()));
    let users_url = format!("http://{users_addr}");
    let inv_cfg = inventory::Config::from_source(&Map::new([
        ("DATABASE_URL", db.as_str()),
        ("USERS_URL", users_url.as_str()),
        ("LOG_LEVEL", "warn"),
        ("STOCK_METRICS_INTERVAL_MS", "200"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inv_addr = l.local_addr().unwrap();
    let inv = inventory::Application::build_with_listener(inv_cfg, l)
        .await
        .unwrap();
    tokio::spawn(inv.run(std::future::pending()));
    let inv_url = format!("http://{inv_addr}");
    let pay_cfg = payments::Config::from_source(&Map::new([
        (
            "DATABASE_URL",
            format!("sqlite://{}/payments.db?mode=rwc", dir.path().display()).as_str(),
        ),
        ("USERS_URL", users_url.as_str()),
        ("LOG_LEVEL", "warn"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pay_addr = l.local_addr().unwrap();
    let pay = payments::Application::build_with_listener(pay_cfg, l)
        .await
        .unwrap();
    tokio::spawn(pay.run(std::future::pending()));
    let pay_url = format!("http://{pay_addr}");
    let pr_cfg = pricing::Config::from_source(&Map::new([
        ("INVENTORY_URL", inv_url.as_str()),
        ("LOG_LEVEL", "warn"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pr_addr = l.local_addr().unwrap();
    tokio::spawn(pricing::Application::build_with_listener(pr_cfg, l).run(std::future::pending()));
    let pr_url = format!("http://{pr_addr}");
    // Orders never needs its token here: a secret file is enough to start.
    let secret = dir.path().join("orders-secret");
    std::fs::write(&secret, "a secret nobody checks in this test, long enough").unwrap();
    let ord_cfg = orders::Config::from_source(&Map::new([
        (
            "DATABASE_URL",
            format!("sqlite://{}/orders.db?mode=rwc", dir.path().display()).as_str(),
        ),
        ("USERS_URL", users_url.as_str()),
        ("INVENTORY_URL", inv_url.as_str()),
        ("PRICING_URL", pr_url.as_str()),
        ("PAYMENTS_URL", pay_url.as_str()),
        ("SERVICE_SECRET_FILE", secret.to_str().unwrap()),
        ("LOG_LEVEL", "warn"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ord_addr = l.local_addr().unwrap();
    let ord = orders::Application::build_with_listener(ord_cfg, l)
        .await
        .unwrap();
    tokio::spawn(ord.run(std::future::pending()));
    let sf_cfg = storefront::Config::from_source(&Map::new([
        ("USERS_URL", users_url.as_str()),
        ("INVENTORY_URL", inv_url.as_str()),
        ("PRICING_URL", pr_url.as_str()),
        ("PAYMENTS_URL", pay_url.as_str()),
        ("ORDERS_URL", format!("http://{ord_addr}").as_str()),
        ("LOG_LEVEL", "warn"),
    ]))
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sf_addr = l.local_addr().unwrap();
    let sf = storefront::Application::build_with_listener(sf_cfg, l).unwrap();
    tokio::spawn(sf.run(std::future::pending()));

    // Prometheus with the rendered config and the real rules.
    let yml = eshop::phases::monitoring::static_prometheus_yml(
        "1s",
        &templates().join("rules.yml").display().to_string(),
        &[
            (&eshop::shop::USERS, users_addr.to_string()),
            (&eshop::shop::INVENTORY, inv_addr.to_string()),
            (&eshop::shop::PAYMENTS, pay_addr.to_string()),
            (&eshop::shop::PRICING, pr_addr.to_string()),
            (&eshop::shop::ORDERS, ord_addr.to_string()),
            (&eshop::shop::STOREFRONT, sf_addr.to_string()),
        ],
    )
    .unwrap();
    // kube-state-metrics as on the cluster (its own job, honor_labels), but
    // served from the recorded FIXTURE.
    let ksm = serve_fixture(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/monitoring/kube-state-metrics.txt"),
    );
    let mut yml: serde_yaml::Value = serde_yaml::from_str(&yml).unwrap();
    yml["scrape_configs"]
        .as_sequence_mut()
        .unwrap()
        .push(
            serde_yaml::from_str(&format!(
                "{{job_name: kube-state-metrics, honor_labels: true, static_configs: [{{targets: [\"{ksm}\"]}}]}}"
            ))
            .unwrap(),
        );
    let yml = serde_yaml::to_string(&yml).unwrap();
    std::fs::write(dir.path().join("prometheus.yml"), yml).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _prom = Prom(
        Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();

    // Bounded load: at most 8 s and 4000 requests, a mix of hits, misses,
    // bad input and stock moves.
    // Ann is the admin (ADMIN_EMAILS): an account, a login, a wrong
    // password; then the catalogue, a hold and its sale with her token.
    let login =
        serde_json::json!({"email": "ann@example.com", "password": "correct horse battery"});
    for (path, body, status) in [
        ("/users", login.clone(), 201),
        (
            "/tokens",
            serde_json::json!({"email": "ann@example.com", "password": "wrong horse battery"}),
            401,
        ),
    ] {
        let r = c
            .post(format!("{users_url}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let t: serde_json::Value = c
        .post(format!("{users_url}/tokens"))
        .json(&login)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["access_token"].as_str().unwrap().to_owned();
    // Her wallet: money in, a charge, the charge again (a replay), one
    // refused for lack of money.
    let me: serde_json::Value = c
        .get(format!("{users_url}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wallet = format!("{pay_url}/wallets/{}", me["id"].as_str().unwrap());
    for (path, key, body, status) in [
        (
            "top-ups",
            "t1",
            serde_json::json!({"amount_minor": 5000, "currency": "EUR"}),
            201,
        ),
        (
            "charges",
            "c1",
            serde_json::json!({"amount_minor": 1999, "currency": "EUR", "reference": "order-1"}),
            201,
        ),
        (
            "charges",
            "c1",
            serde_json::json!({"amount_minor": 1999, "currency": "EUR", "reference": "order-1"}),
            201,
        ),
        (
            "charges",
            "c2",
            serde_json::json!({"amount_minor": 9999, "currency": "EUR", "reference": "order-2"}),
            409,
        ),
    ] {
        let r = c
            .post(format!("{wallet}/{path}"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path} {key}");
    }
    c.post(format!("{inv_url}/products"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"id": "SKU-1", "name": "Tea", "unit_price_minor": 199, "currency": "EUR", "quantity": 3}))
        .send()
        .await
        .unwrap();
    let r = c
        .post(format!("{inv_url}/reservations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"items": [{"product_id": "SKU-1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hold: serde_json::Value = r.json().await.unwrap();
    let id = hold["id"].as_str().unwrap();
    let r = c
        .post(format!("{inv_url}/reservations/{id}/commit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(8) && sent < 4000 {
        let urls = [
            format!("http://{pr_addr}/calculate_price?product_id=SKU-1&quantity=2"),
            format!("http://{pr_addr}/?product_id=NOPE&quantity=1"),
            format!("{inv_url}/products/SKU-1/price"),
            format!("{inv_url}/products?limit=5"),
        ];
        let batch: Vec<_> = urls.iter().map(|u| c.get(u).send()).collect();
        for r in futures_util::future::join_all(batch).await {
            r.unwrap();
        }
        sent += 4;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Wait until Prometheus has scraped both jobs a few times.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = query(&c, &prom, "count_over_time(up[1m])").await;
        let ok = r.as_array().is_some_and(|a| {
            a.len() == eshop::shop::SHOP.len() + 1
                && a.iter().all(|s| {
                    s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(3.0)
                })
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape both services: {r}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Every dashboard query returns data.
    for p in DASHBOARDS
        .iter()
        .flat_map(|d| dashboard(d)["panels"].as_array().unwrap().clone())
    {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
                .replace("$job", ".+");
            let r = query(&c, &prom, &expr).await;
            assert!(
                r.as_array().is_some_and(|a| !a.is_empty()),
                "panel {:?} query {expr} returned no data",
                p["title"]
            );
        }
    }
    // Every alert expression evaluates, and what it measures has data.
    let mut exprs = Vec::new();
    for (rules_file, _) in RULES {
        exprs.extend(alert_exprs(
            &std::fs::read_to_string(templates().join(rules_file)).unwrap(),
        ));
    }
    assert_eq!(exprs.len(), 11);
    for e in exprs {
        query(&c, &prom, &e).await;
        let m = measured(&e);
        let r = query(&c, &prom, &m).await;
        assert!(
            r.as_array().is_some_and(|a| !a.is_empty()),
            "alert expression {m} has no data"
        );
    }
}

/// Serves a file as a Prometheus exposition to every request, on a
/// loopback port; returns host:port.
fn serve_fixture(path: PathBuf) -> String {
    use std::io::{Read, Write};
    let body = std::fs::read_to_string(path).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// The `expr:` values of a rules file (single-line or `|` blocks).
fn alert_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim_start();
        if let Some(rest) = l.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" {
                let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
                let mut e = String::new();
                i += 1;
                while i < lines.len()
                    && lines[i].len() - lines[i].trim_start().len() >= indent
                    && !lines[i].trim().is_empty()
                {
                    e.push_str(lines[i].trim());
                    e.push(' ');
                    i += 1;
                }
                out.push(e.trim().to_owned());
                continue;
            }
            out.push(rest.to_owned());
        }
        i += 1;
    }
    out
}
