//! `eshop` on the local target against the real dockerd and registry that
//! scripts/test-setup.sh starts. Every check of what exists is made with
//! the docker CLI, not through eshop.

mod common;

use common::cli::{self, Project};
use common::free_port;
use std::process::{Command, Stdio};
use std::time::Duration;

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn lines(s: String) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A project of its own per test, so tests never see each other's
/// objects; runs eshop as [`Project`] does.
struct Shop {
    cli: Project,
    name: String,
    pricing: u16,
    inventory: u16,
    users: u16,
    /// The shop's public entry.
    storefront: u16,
    prometheus: u16,
    grafana: u16,
}

common::cli::wraps_project!(Shop);

impl Shop {
    /// Without Grafana.
    fn new(tag: &str) -> Shop {
        Shop::make(tag, "")
    }

    /// With the Grafana STAND-IN image built by scripts/test-setup.sh
    /// (busybox httpd answering /api/health and serving its files; no
    /// Grafana image can be had here). It checks eshop's side: the derived
    /// image, the container, readiness, destroy; not Grafana itself.
    /// Also exporting traces with credentials (`ESHOP_OTLP_HEADERS`, to a
    /// receiver nobody listens on: the test is about how they are handed
    /// over, not sent).
    fn with_grafana_stand_in(tag: &str) -> Shop {
        Shop::make_with(
            tag,
            &env_or(
                "ESHOP_TEST_GRAFANA_STANDIN_IMAGE",
                "eshop-grafana-standin:1",
            ),
            "[apm]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
            &[("ESHOP_OTLP_HEADERS", OTLP_HEADERS)],
        )
    }

    fn make(tag: &str, grafana_image: &str) -> Shop {
        Shop::make_with(tag, grafana_image, "", &[])
    }

    fn make_with(tag: &str, grafana_image: &str, extra: &str, env: &[(&str, &str)]) -> Shop {
        let name = format!("t{tag}{:x}", rand_u32());
        let (pricing, inventory) = (free_port(), free_port());
        let (prometheus, grafana) = (free_port(), free_port());
        // Every other catalogue entry on a port of its own too: tests run
        // side by side.
        let users = free_port();
        let ports: std::collections::BTreeMap<&str, u16> = eshop::shop::SHOP
            .iter()
            .filter(|s| !["pricing", "inventory", "users"].contains(&s.name))
            .map(|s| (s.name, free_port()))
            .collect();
        let others: String = ports
            .iter()
            .map(|(name, port)| format!("{name}_port = {port}\n"))
            .collect();
        let toml = format!(
            "project = \"{name}\"\n\
             [build]\nsource_dir = \"{src}\"\nprofile = \"dev\"\n\
             [images]\nregistry = \"{reg}\"\nbase_image = \"{base}\"\n\
             [local]\npricing_port = {pricing}\ninventory_port = {inventory}\nusers_port = {users}\n{others}\
             [monitoring]\nprometheus_image = \"{prom}\"\nprometheus_port = {prometheus}\n\
             grafana_image = \"{grafana_image}\"\ngrafana_port = {grafana}\n\
             scrape_interval_secs = 1\n{extra}",
            src = env!("CARGO_MANIFEST_DIR"),
            reg = env_or("ESHOP_TEST_REGISTRY", "localhost:5000"),
            base = env_or("ESHOP_TEST_BASE_IMAGE", "eshop-base:local"),
            prom = env_or("ESHOP_TEST_PROMETHEUS_IMAGE", "eshop-prometheus:local"),
        );
        Shop {
            cli: Project::with_config(&toml).envs(env.iter().copied()),
            name,
            pricing,
            inventory,
            users,
            storefront: ports["storefront"],
            prometheus,
            grafana,
        }
    }

    /// The local shop admin's token: eshop signed the account up with the
    /// password it keeps beside the state.
    async fn admin_token(&self) -> String {
        let pw = std::fs::read_to_string(
            self.dir
                .path()
                .join(format!(".eshop/{}-admin-password", self.name)),
        )
        .unwrap();
        let body = serde_json::json!({"email": format!("admin@{}.test", self.name), "password": pw.trim()});
        let t: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/tokens", self.users))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        t["access_token"].as_str().expect("a token").to_owned()
    }

    fn label(&self) -> String {
        format!("label=eshop/project={}", self.name)
    }

    fn container_ids(&self) -> Vec<String> {
        let mut ids = lines(docker(&[
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &self.label(),
        ]));
        ids.sort();
        ids
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        // Leave nothing behind even when an assertion failed half-way.
        let _ = self.eshop(&["destroy", "--yes", "--purge-data"]);
    }
}

struct LookAlike(String);

impl Drop for LookAlike {
    fn drop(&mut self) {
        for args in [
            vec!["rm", "-f", &self.0],
            vec!["network", "rm", &self.0],
            vec!["volume", "rm", &self.0],
        ] {
            let _ = Command::new("docker").args(args).output();
        }
    }
}

const OTLP_HEADERS: &str = "x-api-key=local-s3cr3t";

/// A file inside a container, with its mode and owner, read through
/// `docker cp` (the services' images have no shell or cat).
fn file_in_container(container: &str, path: &str) -> (String, u32, u64) {
    let out = Command::new("docker")
        .args(["cp", &format!("{container}:{path}"), "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let (mode, uid) = (
        entry.header().mode().unwrap() & 0o777,
        entry.header().uid().unwrap(),
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    (text, mode, uid)
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.subsec_nanos() ^ std::process::id()
}

async fn http_get(url: &str) -> (u16, String) {
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_shop_reruns_as_a_no_op_and_destroy_removes_only_what_it_labelled() {
    let p = Shop::with_grafana_stand_in("up");
    let out = p.ok_stdout(&["up"]);
    // A new shop is not empty: the demo catalogue is loaded, and the last
    // lines say which product to try, on which page.
    let try_url = format!("http://127.0.0.1:{}/products/SKU-MUG-001", p.storefront);
    assert!(
        out.contains(&format!("try product SKU-MUG-001: {try_url}")),
        "{out}"
    );
    let (status, page) = http_get(&try_url).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Enamel mug") || page.contains("EUR"),
        "{page}"
    );
    assert!(!page.contains("not found"), "{page}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{}/", p.storefront)),
        "{out}"
    );
    assert!(
        out.contains(&format!("http://127.0.0.1:{}/d/eshop-services", p.grafana)),
        "{out}"
    );

    // The shop answers through the containers. Changing the catalogue
    // needs an admin: anonymous is refused, eshop's local admin may.
    let inv = format!("http://127.0.0.1:{}", p.inventory);
    let tea = serde_json::json!({"id": "SKU-1", "name": "Green tea", "unit_price_minor": 1999, "currency": "EUR", "quantity": 40});
    let res = reqwest::Client::new()
        .post(format!("{inv}/products"))
        .json(&tea)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let admin = p.admin_token().await;
    let res = reqwest::Client::new()
        .post(format!("{inv}/products"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"id": "SKU-1", "name": "Green tea", "unit_price_minor": 1999, "currency": "EUR", "quantity": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (status, page) = http_get(&format!(
        "http://127.0.0.1:{}/?product_id=SKU-1&quantity=12",
        p.pricing
    ))
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("EUR 273.47"), "{page}");
    let (status, body) = http_get(&format!(
        "http://127.0.0.1:{}/calculate_price?product_id=SKU-1&quantity=2",
        p.pricing
    ))
    .await;
    assert_eq!(status, 200, "{body}");

    // The journey through the containers, by the storefront's public API:
    // orders holds, prices and charges with its own token, which it gets
    // from users with the client secret eshop gave them both.
    let api = |path: &str| format!("http://127.0.0.1:{}/api{path}", p.storefront);
    let http = reqwest::Client::new();
    let creds =
        serde_json::json!({"email": "eve@example.com", "password": "correct horse battery"});
    let res = http
        .post(api("/users/users"))
        .json(&creds)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let t: serde_json::Value = http
        .post(api("/users/tokens"))
        .json(&creds)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = t["access_token"].as_str().unwrap().to_owned();
    let me: serde_json::Value = http
        .get(api("/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = me["id"].as_str().unwrap();
    let res = http
        .post(api(&format!("/payments/wallets/{user}/top-ups")))
        .bearer_auth(&token)
        .header("idempotency-key", "local-1")
        .json(&serde_json::json!({"amount_minor": 10000, "currency": "EUR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = http
        .put(api("/orders/cart/items/SKU-1"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"quantity": 2}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = http
        .post(api("/orders/checkouts"))
        .bearer_auth(&token)
        .header("idempotency-key", "local-checkout-1")
        .send()
        .await
        .unwrap();
    let status = res.status();
    let order: serde_json::Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["state"], "confirmed", "{order}");
    // The client secret: a file only its owner reads, in orders and in
    // users' clients directory; in no environment.
    let secret = std::fs::read_to_string(
        p.dir
            .path()
            .join(format!(".eshop/{}-orders-client-secret", p.name)),
    )
    .unwrap();
    for (svc, path) in [
        ("orders", "/run/secrets/eshop/service-secret"),
        ("users", "/run/secrets/eshop/clients/orders"),
    ] {
        let c = format!("eshop-{}-{svc}", p.name);
        assert_eq!(
            file_in_container(&c, path),
            (secret.trim().to_owned(), 0o400, 65532)
        );
        let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &c]);
        assert!(!env.contains(secret.trim()), "{env}");
    }

    // Hardened as promised: non-root, read-only root, no capabilities.
    let c = format!("eshop-{}-inventory", p.name);
    assert_eq!(
        docker(&["inspect", "-f", "{{.Config.User}}", &c]),
        "65532:65532"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", &c]),
        "true"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.CapDrop}}", &c]),
        "[ALL]"
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
            &c
        ]),
        "268435456 256"
    );

    // Phase 7: Prometheus scrapes both services and loaded every alert rule.
    let prom = format!("http://127.0.0.1:{}", p.prometheus);
    let mut up = serde_json::Value::Null;
    for _ in 0..60 {
        up = reqwest::get(format!("{prom}/api/v1/query?query=up%3D%3D1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if up["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == eshop::shop::SHOP.len())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        up["data"]["result"].as_array().unwrap().len(),
        eshop::shop::SHOP.len(),
        "{up}"
    );
    let rules: serde_json::Value = reqwest::get(format!("{prom}/api/v1/rules"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n: usize = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let written = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/monitoring/rules.yml"),
    )
    .unwrap()
    .matches("- alert:")
    .count();
    assert_eq!(n, written, "{rules}");

    // Grafana's side, with the STAND-IN image (see Project): eshop waited
    // for /api/health, and the derived image holds the provisioning where
    // Grafana reads it, pointing at Prometheus by its container name, which
    // resolves on the shop network from inside the Grafana container.
    let graf = format!("http://127.0.0.1:{}", p.grafana);
    let (status, _) = http_get(&format!("{graf}/api/health")).await;
    assert_eq!(status, 200);
    let (status, ds) = http_get(&format!(
        "{graf}/etc/grafana/provisioning/datasources/eshop.yml"
    ))
    .await;
    assert_eq!(status, 200);
    let ds_url = format!("http://eshop-{}-prometheus:9090", p.name);
    assert!(ds.contains(&format!("url: {ds_url}")), "{ds}");
    let (status, provider) = http_get(&format!(
        "{graf}/etc/grafana/provisioning/dashboards/eshop.yml"
    ))
    .await;
    assert_eq!(status, 200);
    assert!(
        provider.contains("path: /etc/grafana/dashboards"),
        "{provider}"
    );
    let (status, dash) = http_get(&format!(
        "{graf}/etc/grafana/dashboards/eshop-services.json"
    ))
    .await;
    assert_eq!(status, 200);
    let dash: serde_json::Value = serde_json::from_str(&dash).unwrap();
    assert_eq!(dash["uid"], "eshop-services");
    assert!(ds.contains("uid: eshop-prometheus"), "{ds}");
    for panel in dash["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "eshop-prometheus", "{panel}");
    }
    let g = format!("eshop-{}-grafana", p.name);
    // No anonymous access and never admin/admin: a password eshop made,
    // kept 0600 beside the state, never printed.
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &g]);
    assert!(env.contains("GF_AUTH_ANONYMOUS_ENABLED=false"), "{env}");
    let pw_file = p
        .dir
        .path()
        .join(format!(".eshop/{}-grafana-admin-password", p.name));
    let pw = std::fs::read_to_string(&pw_file).unwrap();
    assert_eq!(pw.len(), 32);
    // As a file Grafana reads (`__FILE`), owned by its user, 0400; not in
    // the environment `docker inspect` prints.
    assert!(!env.contains(&pw), "{env}");
    assert!(
        env.contains("GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/eshop/grafana-admin-password"),
        "{env}"
    );
    assert_eq!(
        file_in_container(&g, "/run/secrets/eshop/grafana-admin-password"),
        (pw.clone(), 0o400, 472)
    );
    // The same for the services' trace credentials.
    for svc in ["pricing", "inventory"] {
        let c = format!("eshop-{}-{svc}", p.name);
        let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &c]);
        assert!(!env.contains("local-s3cr3t"), "{env}");
        assert!(
            env.contains("OTEL_EXPORTER_OTLP_HEADERS_FILE=/run/secrets/eshop/otlp-headers"),
            "{env}"
        );
        assert_eq!(
            file_in_container(&c, "/run/secrets/eshop/otlp-headers"),
            (OTLP_HEADERS.to_owned(), 0o400, 65532)
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pw_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!out.contains(&pw), "the password was printed");
    assert_eq!(
        docker(&[
            "exec",
            &g,
            "busybox",
            "wget",
            "-qO-",
            &format!("{ds_url}/-/ready")
        ])
        .trim(),
        "Prometheus Server is Ready."
    );
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{index .Config.Labels \"eshop/phase\"}}",
            &g
        ]),
        "true [ALL] monitoring"
    );
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &g]);
    assert!(env.contains("GF_LOG_MODE=console"), "{env}");

    // A shop with data of its own is never refilled: a demo product the
    // user deleted stays deleted.
    let tee = format!("{inv}/products/SKU-TEE-002");
    let res = reqwest::Client::new()
        .delete(&tee)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    // Second up: nothing to do, nothing recreated.
    let before = p.container_ids();
    assert_eq!(
        before.len(),
        eshop::shop::SHOP.len() + 2,
        "the services, Prometheus, Grafana"
    );
    let out = p.ok_stdout(&["up"]);
    assert!(out.contains("up: 0 change(s)"), "{out}");
    assert_eq!(p.container_ids(), before);
    assert_eq!(http_get(&tee).await.0, 404);
    // The same no-op for CI: one JSON object per line, ending in a summary.
    let json_out = p.ok_stdout(&["--output", "json", "up"]);
    let events = cli::json_lines(&json_out);
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["changed"], 0, "{json_out}");
    assert!(events
        .iter()
        .any(|e| e["event"] == "phase" && e["phase"] == "monitoring"));
    assert_eq!(p.container_ids(), before);
    let plan = p.ok_stdout(&["plan"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete"),
        "{plan}"
    );

    // Images are tagged by content (never latest) and pullable by digest.
    // (Their size is bench/up.sh's figure: these are dev-profile builds.)
    let state = p.state("local");
    let pushed = state["phases"]["images"]["pushed"].as_object().unwrap();
    assert_eq!(pushed.len(), eshop::shop::SHOP.len());
    for (reference, digest) in pushed {
        assert!(!reference.ends_with(":latest"));
        let repo = reference.rsplit_once(':').unwrap().0;
        let by_digest = format!("{repo}@{}", digest.as_str().unwrap());
        docker(&["pull", "-q", &by_digest]);
        assert_eq!(
            docker(&["image", "inspect", "-f", "{{.Id}}", &by_digest]),
            docker(&["image", "inspect", "-f", "{{.Id}}", reference])
        );
    }

    // Unlabelled look-alikes with the same name pattern (removed by the
    // guard even if an assertion below fails).
    let guard = LookAlike(format!("eshop-{}-lookalike", p.name));
    let look = guard.0.as_str();
    docker(&["create", "--name", look, "eshop-base:local", "/nothing"]);
    docker(&["network", "create", look]);
    docker(&["volume", "create", look]);

    let out = p.ok_stdout(&["destroy", "--yes"]);
    assert!(out.contains("destroy:"), "{out}");
    assert!(p.container_ids().is_empty());
    assert!(lines(docker(&["network", "ls", "-q", "--filter", &p.label()])).is_empty());
    assert!(lines(docker(&["images", "-q", "--filter", &p.label()])).is_empty());
    // Data (each database owner's, Prometheus' TSDB, Grafana's) survives
    // a plain destroy…
    let owners = eshop::shop::SHOP.iter().filter(|s| s.database).count();
    assert_eq!(
        lines(docker(&["volume", "ls", "-q", "--filter", &p.label()])).len(),
        owners + 2
    );
    p.ok(&["destroy", "--yes", "--purge-data"]);
    // …and goes with --purge-data.
    assert!(lines(docker(&["volume", "ls", "-q", "--filter", &p.label()])).is_empty());
    // The look-alikes are untouched.
    docker(&["container", "inspect", look]);
    docker(&["network", "inspect", look]);
    docker(&["volume", "inspect", look]);
    // Destroying twice is fine.
    p.ok(&["destroy", "--yes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_up_mid_run_and_rerunning_converges() {
    let p = Shop::new("kill");
    // Phase 1 first, so the kill lands in phase 2 (images and containers).
    p.ok(&["phase", "build", "apply"]);
    for delay_ms in [300u64, 1200, 2500] {
        p.ok(&["destroy", "--yes"]);
        let mut child = p
            .cmd(&["up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL: no cleanup, no lock release by the program
        let _ = child.wait();
        let out = p.ok_stdout(&["up"]);
        assert!(
            out.contains("the shop is up"),
            "after kill at {delay_ms} ms: {out}"
        );
        assert_eq!(
            p.container_ids().len(),
            eshop::shop::SHOP.len() + 1,
            "after kill at {delay_ms} ms"
        );
        let out = p.ok_stdout(&["up"]);
        assert!(
            out.contains("up: 0 change(s)"),
            "after kill at {delay_ms} ms: {out}"
        );
    }
}

#[test]
fn config_errors_exit_2_with_key_and_line_before_any_docker_call() {
    // A fake Docker socket that counts connections: there must be none.
    let p = Project::new();
    let sock = p.dir.path().join("docker.sock");
    let p = p.env("DOCKER_HOST", format!("unix://{}", sock.display()));
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    let cases = [
        (
            "project = \"ok\"\n[images]\nregistri = \"x\"\n",
            "eshop.toml:3:1: unknown field `registri`",
        ),
        (
            "[local]\npricing_port = 0\n",
            "eshop.toml:2:16: local.pricing_port",
        ),
        ("target = \"gcp\"\n", "eshop.toml:1:10: target"),
        (
            "[images]\npush = true\n",
            "images.push is true but images.registry is empty",
        ),
        ("project = [1]\n", "eshop.toml:1:11"),
    ];
    let commands: [&[&str]; 4] = [
        &["up"],
        &["plan"],
        &["destroy", "--yes"],
        &["phase", "images", "apply"],
    ];
    p.rejects_configs("", &cases, &commands);
    assert!(
        listener.accept().is_err(),
        "eshop connected to Docker despite a bad config"
    );
    // Usage errors are exit 2 too (in a project without a configuration).
    let empty = Project::new();
    empty.fails(&["phase", "nine", "apply"], 2);
    empty.fails(&["frobnicate"], 2);
}

#[test]
fn phases_render_and_completions_need_no_engine() {
    let p = Project::new().env("DOCKER_HOST", "unix:///nonexistent.sock");
    let names: Vec<String> = p
        .json_lines(&["phases", "--output", "json"])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "build",
            "images",
            "infra",
            "schedule",
            "kubernetes",
            "security",
            "monitoring",
            "pipeline",
            "config",
            "apm"
        ]
    );
    p.ok(&["render", "images", "--out", "rendered"]);
    let df = std::fs::read_to_string(p.dir.path().join("rendered/inventory/Dockerfile")).unwrap();
    assert!(df.contains("USER 65532:65532"));
    assert!(df.contains("HEALTHCHECK"));
    assert!(df.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(!df.contains("{{"), "unrendered placeholder:\n{df}");
    assert!(p.ok_stdout(&["completions", "bash"]).contains("eshop"));
}

/// A registry of this test's own (Debian's docker-registry on a free
/// loopback port, storing under a temp dir), so it can be wiped.
struct Registry {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl Registry {
    fn start() -> Registry {
        let mut r = Registry {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.run();
        r
    }

    fn run(&mut self) {
        let store = self.dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        let config = self.dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n",
                store.display(),
                self.port
            ),
        )
        .unwrap();
        self.child = Some(
            Command::new("docker-registry")
                .args(["serve"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (Debian's docker-registry package)"),
        );
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on {} did not start", self.port);
    }

    /// Stops it, loses everything it stored, starts it again empty.
    fn wipe(&mut self) {
        self.stop();
        std::fs::remove_dir_all(self.dir.path().join("store")).unwrap();
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_wiped_registry_is_refilled_and_status_on_aws_reports_no_local_containers() {
    let mut reg = Registry::start();
    let p = Shop::new("reg");
    // Phase 2 on target aws builds and pushes but runs nothing here, and
    // calls no AWS API: only this test's registry is involved.
    let toml = std::fs::read_to_string(p.config()).unwrap().replace(
        &format!(
            "registry = \"{}\"",
            env_or("ESHOP_TEST_REGISTRY", "localhost:5000")
        ),
        &format!("registry = \"127.0.0.1:{}\"", reg.port),
    );
    p.write_config(&toml);
    // All eshop printed: plan's lines go to stderr, results to stdout.
    let aws = |args: &[&str]| {
        let mut a = vec!["--target", "aws"];
        a.extend_from_slice(args);
        p.ok(&a)
    };
    aws(&["phase", "build", "apply"]);
    aws(&["phase", "images", "apply"]);
    let plan = aws(&["-v", "phase", "images", "plan"]);
    assert_eq!(
        plan.matches("in the registry").count(),
        eshop::shop::SHOP.len(),
        "{plan}"
    );

    // Not a single container runs on target aws: status reports the
    // images and exits 0 (it used to report the local containers absent).
    let text = aws(&["phase", "images", "status"]);
    assert!(!text.contains("container"), "{text}");
    assert!(text.contains("image 127.0.0.1:"), "{text}");

    // The registry loses everything; the state file still says "pushed".
    reg.wipe();
    let plan = aws(&["phase", "images", "plan"]);
    assert_eq!(
        plan.matches(&format!("not in 127.0.0.1:{}", reg.port))
            .count(),
        eshop::shop::SHOP.len(),
        "plan must ask the registry, not the state file:\n{plan}"
    );
    let out = aws(&["phase", "images", "apply"]);
    assert!(
        out.contains(&format!("{} change(s)", eshop::shop::SHOP.len())),
        "{out}"
    );
    // What phase 5 would deploy is back in the registry, by digest.
    let state = p.state("aws");
    for (_, pinned) in state["phases"]["images"]["current"].as_object().unwrap() {
        let pinned = pinned.as_str().unwrap();
        let (repo_tag, digest) = pinned.split_once('@').unwrap();
        let repo = repo_tag.rsplit_once(':').unwrap().0;
        docker(&["pull", "-q", &format!("{repo}@{digest}")]);
    }
    aws(&["phase", "images", "destroy"]);
}

#[test]
fn build_test_output_never_breaks_the_json_event_stream() {
    // A STAND-IN for cargo: `test` prints a test runner's report on
    // stdout (as cargo does), `build` reports one binary per catalogue
    // entry the way
    // `--message-format=json` does. eshop must keep its stdout for its own
    // JSON events.
    let dir = tempfile::tempdir().unwrap();
    let cargo = dir.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n\
         echo \"$*\" >> \"$CARGO_ARGS_LOG\"\n\
         case \"$*\" in\n\
         *--no-run*) exit 0 ;;\n\
         test*) echo 'running 3 tests'; echo 'test a ... ok'; echo 'test result: ok. 3 passed'; exit 0 ;;\n\
         build*) for s in {services}; do\n\
           printf '{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"%s\"},\"executable\":\"/bin/true\"}\\n' \"$s\"; done ;;\n\
         esac\n"
            .replace("{services}", &eshop::shop::names(eshop::shop::SHOP).join(" ")),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Shop::new("json");
    let toml = std::fs::read_to_string(p.config()).unwrap();
    p.write_config(&toml.replace("[build]\n", "[build]\ntest = true\n"));
    let cargo = cargo.to_str().unwrap();
    let log = dir.path().join("args");
    let log = log.to_str().unwrap();
    let out = p.eshop_with(
        &["--output", "json", "phase", "build", "apply"],
        &[("CARGO", cargo), ("CARGO_ARGS_LOG", log)],
    );
    assert!(out.status.success(), "{}", cli::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}\n{stdout}"));
    }
    assert!(stdout.contains("\"summary\""), "{stdout}");
    // The report still reaches the user, on stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("running 3 tests"));

    // Shop::new asks for the dev profile; the default is release, and
    // the tests and the build are compiled with the same profile.
    let builds = |log: &str| -> Vec<String> {
        let args = std::fs::read_to_string(log).unwrap();
        std::fs::remove_file(log).unwrap();
        args.lines()
            .filter(|l| l.starts_with("build") || l.starts_with("test"))
            .map(str::to_owned)
            .collect()
    };
    let dev = builds(log);
    assert!(
        dev.len() >= 2 && dev.iter().all(|l| !l.contains("--release")),
        "{dev:?}"
    );
    let release_toml = toml
        .replace("[build]\n", "[build]\ntest = true\n")
        .replace("profile = \"dev\"\n", "");
    p.write_config(&release_toml);
    let out = p.eshop_with(
        &["phase", "build", "apply"],
        &[("CARGO", cargo), ("CARGO_ARGS_LOG", log)],
    );
    assert!(out.status.success(), "{}", cli::text(&out));
    let release = builds(log);
    assert!(
        release.len() >= 2 && release.iter().all(|l| l.contains("--release")),
        "{release:?}"
    );
}

/// The local shop has no login: publishing it beyond loopback is said
/// before anything is touched (here Docker is not even reachable).
#[test]
fn a_non_loopback_bind_is_warned_about() {
    let p = Project::with_config("[local]\nbind = \"0.0.0.0\"\n")
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    let out = p.eshop(&["phase", "images", "plan"]);
    let said = cli::text(&out);
    assert!(
        said.contains("warning: local.bind = 0.0.0.0") && said.contains("write APIs"),
        "{said}"
    );
    p.write_config("[local]\nbind = \"127.0.0.1\"\n");
    let said = cli::text(&p.eshop(&["phase", "images", "plan"]));
    assert!(!said.contains("warning: local.bind"), "{said}");
}
