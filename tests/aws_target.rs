//! Phases 3, 4 and 11 on target aws against moto's real AWS server (a moto
//! of each test's own). What exists is checked with boto3
//! (tests/aws/inventory.py), never through eshop.

mod common;

use common::cli::{text, Project};
use common::{venv_bin, Moto, TEST_PUBKEY as PUBKEY};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A project on target aws with a moto of its own; runs eshop as
/// [`Project`] does.
struct Shop {
    cli: Project,
    moto: Moto,
    /// Where eshop sends its calls: moto itself or a proxy in front.
    endpoint: String,
    project: String,
}

common::cli::wraps_project!(Shop);

impl Shop {
    fn new(tag: &str) -> Shop {
        let moto = Moto::start();
        let endpoint = moto.url();
        Shop::with(moto, endpoint, tag)
    }

    fn with(moto: Moto, endpoint: String, tag: &str) -> Shop {
        let cli = Project::new()
            .envs(moto.env())
            .env_remove("AWS_ENDPOINT_URL") // eshop must use [aws] endpoint
            .env_remove("AWS_PROFILE");
        let project = format!("t{tag}");
        let key = cli.dir.path().join("id.pub");
        std::fs::write(&key, format!("{PUBKEY}\n")).unwrap();
        let toml = format!(
            "project = \"{project}\"\ntarget = \"aws\"\n\
             [aws]\nendpoint = \"{endpoint}\"\nregion = \"eu-west-1\"\n\
             admin_cidr = \"203.0.113.0/24\"\nssh_public_key = \"{key}\"\n\
             ami_name = \"ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*\"\n\
             min_size = 1\ndesired_capacity = 2\nmax_size = 4\n\
             [schedule]\ntime_zone = \"Europe/Paris\"\nstart_at = \"07:30\"\n",
            key = key.display()
        );
        cli.write_config(&toml);
        Shop {
            cli,
            moto,
            endpoint,
            project,
        }
    }

    fn py(&self, args: &[&str]) -> Value {
        let out = Command::new(venv_bin("python"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/aws/inventory.py"
            ))
            .arg(&self.project)
            .args(args)
            .envs(self.moto.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "inventory.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn inventory(&self) -> Value {
        self.py(&[])
    }
}

fn len(v: &Value, key: &str) -> usize {
    v[key].as_array().map_or(0, Vec::len)
}

/// Every kind of resource phases 3 and 4 own, with how many of each a
/// converged shop has.
const EXPECTED: [(&str, usize); 15] = [
    ("vpcs", 1),
    ("subnets", 2),
    ("igws", 1),
    ("route_tables", 1),
    ("security_groups", 2),
    ("key_pairs", 1),
    ("addresses", 1),
    ("launch_templates", 1),
    ("auto_scaling_groups", 1),
    ("load_balancers", 1),
    ("target_groups", 1),
    ("roles", 2),
    ("functions", 1),
    ("schedules", 2),
    ("control_planes", 1),
];

fn counts(inv: &Value) -> Vec<(&'static str, usize)> {
    EXPECTED
        .iter()
        .map(|(k, _)| {
            let n = if *k == "control_planes" {
                inv["instances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|i| i["role"] == "control-plane")
                    .count()
            } else {
                len(inv, k)
            };
            (*k, n)
        })
        .collect()
}

fn ids(inv: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (k, field) in [
        ("vpcs", "id"),
        ("subnets", "id"),
        ("security_groups", "id"),
        ("addresses", "id"),
        ("launch_templates", "id"),
        ("load_balancers", "arn"),
        ("functions", "sha"),
    ] {
        for r in inv[k].as_array().unwrap() {
            out.push(r[field].as_str().unwrap_or_default().to_owned());
        }
    }
    for i in inv["instances"].as_array().unwrap() {
        if i["role"] == "control-plane" {
            out.push(i["id"].as_str().unwrap().to_owned());
        }
    }
    out.sort();
    out
}

fn assert_converged(inv: &Value) {
    let want: Vec<(&str, usize)> = EXPECTED.to_vec();
    assert_eq!(counts(inv), want, "{inv:#}");
}

#[test]
fn apply_creates_every_resource_as_configured_a_second_apply_is_a_no_op_and_destroy_leaves_look_alikes(
) {
    let shop = Shop::new("full");
    let look = shop.py(&["lookalikes"]);

    let out = shop.ok(&["--yes", "up", "--from", "infra", "--to", "schedule"]);
    assert!(out.contains("up: "), "{out}");
    let inv = shop.inventory();
    assert_converged(&inv);

    // Network.
    let vpc = &inv["vpcs"][0];
    assert_eq!(vpc["cidr"], "10.42.0.0/16");
    assert_eq!(vpc["dns_hostnames"], true);
    assert_eq!(vpc["tags"]["eshop/phase"], "infra");
    let vpc_id = vpc["id"].as_str().unwrap();
    let subnets = inv["subnets"].as_array().unwrap();
    let mut cidrs: Vec<&str> = subnets
        .iter()
        .map(|s| s["cidr"].as_str().unwrap())
        .collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.42.1.0/24", "10.42.2.0/24"]);
    assert_ne!(subnets[0]["az"], subnets[1]["az"], "two availability zones");
    assert!(subnets
        .iter()
        .all(|s| s["public_ip"] == true && s["vpc"] == vpc_id));
    assert_eq!(inv["igws"][0]["attached"][0], vpc_id);
    let rt = &inv["route_tables"][0];
    assert_eq!(rt["default_to_igw"], true);
    let mut subnet_ids: Vec<&str> = subnets.iter().map(|s| s["id"].as_str().unwrap()).collect();
    subnet_ids.sort();
    assert_eq!(rt["subnets"].as_array().unwrap().len(), 2);

    // Security groups: the world reaches the load balancer only; SSH and
    // the API only from the admin network.
    let sg = |role: &str| {
        inv["security_groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["role"] == role)
            .unwrap_or_else(|| panic!("no {role} group: {inv:#}"))
            .clone()
    };
    let (lb, nodes) = (sg("lb"), sg("nodes"));
    let (lb_id, nodes_id) = (lb["id"].as_str().unwrap(), nodes["id"].as_str().unwrap());
    assert_eq!(
        lb["rules"],
        serde_json::json!([["tcp", 80, 80, "0.0.0.0/0"], ["tcp", 443, 443, "0.0.0.0/0"]])
    );
    let node_rules = nodes["rules"].as_array().unwrap();
    let has = |r: Value| node_rules.contains(&r);
    assert!(
        has(serde_json::json!(["-1", -1, -1, nodes_id])),
        "{node_rules:?}"
    );
    assert!(
        has(serde_json::json!(["tcp", 30080, 30080, lb_id])),
        "{node_rules:?}"
    );
    assert!(
        has(serde_json::json!(["tcp", 22, 22, "203.0.113.0/24"])),
        "{node_rules:?}"
    );
    assert!(
        has(serde_json::json!(["tcp", 6443, 6443, "203.0.113.0/24"])),
        "{node_rules:?}"
    );
    assert_eq!(node_rules.len(), 4, "{node_rules:?}");
    assert!(!node_rules.iter().any(|r| r[3] == "0.0.0.0/0"));

    // Machines.
    let cp = inv["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["role"] == "control-plane")
        .unwrap()
        .clone();
    assert_eq!(cp["type"], "t3.medium");
    assert_eq!(cp["imdsv2"], "required");
    assert_eq!(cp["volumes_encrypted"], serde_json::json!([true]));
    assert_eq!(cp["key"], format!("eshop-{}", shop.project));
    assert_eq!(cp["groups"], serde_json::json!([nodes_id]));
    assert_eq!(inv["addresses"][0]["instance"], cp["id"]);
    let lt = &inv["launch_templates"][0];
    assert_eq!(lt["imdsv2"], "required");
    assert_eq!(lt["encrypted"], serde_json::json!([true]));
    assert_eq!(lt["user_data"], true);
    assert_eq!(lt["groups"], serde_json::json!([nodes_id]));
    let g = &inv["auto_scaling_groups"][0];
    assert_eq!(
        (g["min"].as_i64(), g["desired"].as_i64(), g["max"].as_i64()),
        (Some(1), Some(2), Some(4))
    );
    assert_eq!(g["subnets"].as_array().unwrap().len(), 2);
    assert_eq!(g["health_check"], "ELB");
    assert_eq!(
        g["policies"],
        serde_json::json!([{"type": "TargetTrackingScaling", "metric": "ASGAverageCPUUtilization", "target": 50.0}])
    );
    let tg = &inv["target_groups"][0];
    assert_eq!(
        (tg["port"].as_i64(), tg["health"].as_str()),
        (Some(30080), Some("/healthz"))
    );
    assert_eq!(g["target_groups"], serde_json::json!([tg["arn"]]));
    let alb = &inv["load_balancers"][0];
    assert_eq!(
        (alb["scheme"].as_str(), alb["type"].as_str()),
        (Some("internet-facing"), Some("application"))
    );
    assert_eq!(alb["groups"], serde_json::json!([lb_id]));
    assert_eq!(alb["subnets"].as_array().unwrap().len(), 2);
    assert_eq!(
        alb["listeners"],
        serde_json::json!([{"port": 80, "protocol": "HTTP", "forward": [tg["arn"]]}])
    );

    // Schedule: 18:00 and 07:30 in Paris (EventBridge Scheduler applies
    // daylight saving), the function, least-privilege roles.
    let f = &inv["functions"][0];
    assert_eq!(
        (f["runtime"].as_str(), f["handler"].as_str()),
        (Some("python3.12"), Some("stop_shop.handler"))
    );
    assert_eq!(f["env"]["ESHOP_PROJECT"], shop.project);
    let scheds = inv["schedules"].as_array().unwrap();
    let sched = |n: &str| scheds.iter().find(|s| s["name"] == n).unwrap().clone();
    let (stop, start) = (sched("stop"), sched("start"));
    assert_eq!(stop["expression"], "cron(0 18 * * ? *)");
    assert_eq!(start["expression"], "cron(30 7 * * ? *)");
    for s in [&stop, &start] {
        assert_eq!(s["tz"], "Europe/Paris");
        assert_eq!(s["state"], "ENABLED");
        assert_eq!(s["target"], f["arn"]);
    }
    assert_eq!(stop["input"], r#"{"action":"stop"}"#);
    let roles = inv["roles"].as_array().unwrap();
    let lambda_role = roles
        .iter()
        .find(|r| r["name"] == format!("eshop-{}-stop-shop", shop.project))
        .unwrap();
    assert_eq!(f["role"], lambda_role["arn"]);
    let doc = lambda_role["policies"]["stop-shop"].to_string();
    assert!(doc.contains("aws:ResourceTag/eshop/project"), "{doc}");
    assert!(
        !doc.contains("\"ec2:*\"") && !doc.contains("\"*:*\""),
        "{doc}"
    );
    let sched_role = roles
        .iter()
        .find(|r| r["name"] == format!("eshop-{}-scheduler", shop.project))
        .unwrap();
    assert_eq!(stop["role"], sched_role["arn"]);
    let doc = sched_role["policies"]["invoke-stop-shop"].to_string();
    assert!(
        doc.contains("lambda:InvokeFunction") && doc.contains(f["arn"].as_str().unwrap()),
        "{doc}"
    );

    // Converged: plan has nothing to do, apply changes nothing.
    let plan = shop.ok(&["plan", "--from", "infra", "--to", "schedule"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete"),
        "{plan}"
    );
    let again = shop.ok(&["--yes", "up", "--from", "infra", "--to", "schedule"]);
    assert!(again.contains("up: 0 change(s)"), "{again}");
    assert_eq!(
        ids(&shop.inventory()),
        ids(&inv),
        "second apply replaced something"
    );
    // Phases 1-2 need the repository and Docker; status per AWS phase.
    let status =
        shop.ok(&["phase", "infra", "status"]) + &shop.ok(&["phase", "schedule", "status"]);
    assert!(
        status.contains("control plane")
            && status.contains("schedule stop")
            && !status.contains('✘'),
        "{status}"
    );

    // Drift: someone widens SSH to the world; plan sees it, apply repairs.
    let drift = Command::new(venv_bin("python"))
        .args(["-c", &format!(
            "import boto3,os; boto3.client('ec2',endpoint_url=os.environ['AWS_ENDPOINT_URL']).authorize_security_group_ingress(GroupId='{nodes_id}',IpPermissions=[{{'IpProtocol':'tcp','FromPort':22,'ToPort':22,'IpRanges':[{{'CidrIp':'0.0.0.0/0'}}]}}])"
        )])
        .envs(shop.moto.env())
        .output()
        .unwrap();
    assert!(
        drift.status.success(),
        "{}",
        String::from_utf8_lossy(&drift.stderr)
    );
    let plan = shop.ok(&["plan", "--from", "infra", "--to", "schedule"]);
    assert!(plan.contains("1 to update"), "{plan}");
    shop.ok(&["--yes", "phase", "infra", "apply"]);
    let rules = &sg_rules(&shop.inventory(), "nodes");
    assert!(!rules.iter().any(|r| r[3] == "0.0.0.0/0"), "{rules:?}");

    // Destroy without the state file (it is a cache): nothing tagged
    // remains, look-alikes untouched; twice is fine.
    std::fs::remove_dir_all(shop.dir.path().join(".eshop")).unwrap();
    shop.ok(&["--yes", "destroy"]);
    let after = shop.inventory();
    for (k, n) in counts(&after) {
        assert_eq!(n, 0, "{k} left after destroy: {after:#}");
    }
    let alive = shop.py(&["alive", &look.to_string()]);
    assert_eq!(
        alive,
        serde_json::json!({"vpc": true, "sg": true, "instance": true, "role": true})
    );
    let twice = shop.ok(&["--yes", "destroy"]);
    assert!(twice.contains("destroy: 0 object(s) removed"), "{twice}");
}

fn sg_rules(inv: &Value, role: &str) -> Vec<Value> {
    inv["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == role)
        .unwrap()["rules"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn kill_9_at_any_point_of_apply_then_apply_again_converges_without_duplicates() {
    let shop = Shop::new("kill");
    // Spread over the apply: moto answers in milliseconds, so the points
    // are early; each kill lands somewhere different in the sequence.
    let full: usize = EXPECTED.iter().map(|(_, n)| n).sum();
    let mut partial = Vec::new();
    for ms in [150u64, 400, 700, 1000, 1500] {
        let mut child = shop
            .cmd(&["--yes", "up", "--from", "infra", "--to", "schedule"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let have: usize = counts(&shop.inventory()).iter().map(|(_, n)| n).sum();
        partial.push(have);
    }
    // The kills must have landed inside apply, not before or after it.
    assert!(
        partial.iter().any(|n| *n > 0 && *n < full),
        "no kill left a half-built shop: resources after each kill {partial:?} of {full}"
    );
    shop.ok(&["--yes", "up", "--from", "infra", "--to", "schedule"]);
    let inv = shop.inventory();
    assert_converged(&inv);
    let again = shop.ok(&["--yes", "up", "--from", "infra", "--to", "schedule"]);
    assert!(again.contains("up: 0 change(s)"), "{again}");
    shop.ok(&["--yes", "destroy"]);
    assert!(counts(&shop.inventory()).iter().all(|(_, n)| *n == 0));
}

#[test]
fn bad_aws_config_exits_2_naming_key_and_line_before_any_api_call() {
    // A fake endpoint that counts connections: there must be none.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    fake.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", fake.local_addr().unwrap());
    let p = Project::new()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    let key = p.dir.path().join("id.pub");
    std::fs::write(&key, PUBKEY).unwrap();
    let head = format!(
        "project = \"bad\"\ntarget = \"aws\"\n[aws]\nendpoint = \"{endpoint}\"\nssh_public_key = \"{}\"\n",
        key.display()
    );
    let cases = [
        (
            "subnet_cidrs = [\"10.42.1.0/24\", \"10.42.1.128/25\"]\n",
            "eshop.toml:6:33: aws.subnet_cidrs: 10.42.1.128/25 overlaps 10.42.1.0/24",
        ),
        (
            "region = \"eu-middle-9\"\n",
            "eshop.toml:6:10: aws.region: unknown region",
        ),
        (
            "min_size = 5\nmax_size = 2\n",
            "eshop.toml:6:12: aws.min_size: 5 is larger than aws.max_size 2",
        ),
        (
            "vpc_cidr = \"10.42.0.0/33\"\n",
            "eshop.toml:6:12: aws.vpc_cidr",
        ),
        (
            "subnet_cidrs = [\"10.42.1.0/24\", \"192.168.0.0/24\"]\n",
            "aws.subnet_cidrs: 192.168.0.0/24 is not inside aws.vpc_cidr",
        ),
        (
            "admin_cidr = \"0.0.0.0\"\n",
            "eshop.toml:6:14: aws.admin_cidr",
        ),
        (
            "admin_cidr = \"0.0.0.0/0\"\n",
            "eshop.toml:6:14: aws.admin_cidr: 0.0.0.0/0 opens SSH (22) and the Kubernetes API (6443) to the whole internet",
        ),
        (
            "[schedule]\ntime_zone = \"Europe/Pariss\"\n",
            "eshop.toml:7:13: schedule.time_zone",
        ),
        (
            "[schedule]\nstop_at = \"25:00\"\n",
            "eshop.toml:7:11: schedule.stop_at",
        ),
    ];
    let commands: [&[&str]; 3] = [&["plan"], &["--yes", "up"], &["phase", "schedule", "apply"]];
    p.rejects_configs(&head, &cases, &commands);
    // A missing public key is found before any call too.
    p.write_config(&format!("project = \"bad\"\ntarget = \"aws\"\n[aws]\nendpoint = \"{endpoint}\"\nssh_public_key = \"/nonexistent/key.pub\"\n"));
    let err = p.fails(&["phase", "infra", "plan"], 2);
    assert!(
        err.contains("aws.ssh_public_key") && err.contains("/nonexistent/key.pub"),
        "{err}"
    );
    assert!(
        matches!(fake.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "eshop called the AWS endpoint although the configuration was bad"
    );
}

/// A small fault-injecting proxy in front of moto: a share of the calls
/// get AWS-style throttling (400/429 with the protocol's error code) or a
/// 503, without reaching moto; the rest pass through.
mod faults {
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    pub struct Counts {
        pub seen: AtomicUsize,
        pub throttled: AtomicUsize,
        pub unavailable: AtomicUsize,
    }

    #[derive(Clone)]
    struct Proxy {
        upstream: String,
        client: reqwest::Client,
        counts: Arc<Counts>,
    }

    pub fn start(upstream: String) -> (u16, Arc<Counts>) {
        let counts = Arc::new(Counts {
            seen: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            unavailable: AtomicUsize::new(0),
        });
        let state = Proxy {
            upstream,
            client: reqwest::Client::new(),
            counts: counts.clone(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        (port, counts)
    }

    async fn handle(
        State(p): State<Proxy>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response<Body> {
        let n = p.counts.seen.fetch_add(1, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&body);
        if n % 4 == 1 {
            p.counts.throttled.fetch_add(1, Ordering::SeqCst);
            return throttle(&text, &headers);
        }
        if n % 5 == 3 {
            p.counts.unavailable.fetch_add(1, Ordering::SeqCst);
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(Body::from("Service Unavailable"))
                .unwrap();
        }
        let url = format!(
            "{}{}",
            p.upstream,
            uri.path_and_query().map_or("", |q| q.as_str())
        );
        let mut req = p.client.request(method, url).body(body);
        for (k, v) in &headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(_) => {
                return Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Body::empty())
                    .unwrap()
            }
        };
        let mut out = Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            if k != "content-length" && k != "transfer-encoding" {
                out = out.header(k.as_str(), v.as_bytes());
            }
        }
        out.body(Body::from(resp.bytes().await.unwrap_or_default()))
            .unwrap()
    }

    /// Throttling as each AWS protocol spells it.
    fn throttle(body: &str, headers: &HeaderMap) -> Response<Body> {
        if body.contains("Version=2016-11-15") {
            // EC2's own XML.
            return Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(Body::from("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault</RequestID></Response>"))
                .unwrap();
        }
        if body.contains("Action=") {
            // awsQuery (IAM, Auto Scaling, ELBv2).
            return Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header("content-type", "text/xml")
                .body(Body::from("<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>"))
                .unwrap();
        }
        let _ = headers;
        // REST-JSON (Lambda, Scheduler).
        Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("content-type", "application/json")
            .header("x-amzn-errortype", "ThrottlingException")
            .body(Body::from(r#"{"message":"Rate exceeded"}"#))
            .unwrap()
    }
}

#[test]
fn apply_and_destroy_converge_through_injected_throttling_and_5xx() {
    let moto = Moto::start();
    let (port, injected) = faults::start(moto.url());
    let shop = Shop::with(moto, format!("http://127.0.0.1:{port}"), "faults");
    assert_ne!(shop.endpoint, shop.moto.url());
    shop.ok(&["--yes", "up", "--from", "infra", "--to", "schedule"]);
    assert_converged(&shop.inventory());
    let plan = shop.ok(&["plan", "--from", "infra", "--to", "schedule"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete"),
        "{plan}"
    );
    shop.ok(&["--yes", "destroy"]);
    assert!(counts(&shop.inventory()).iter().all(|(_, n)| *n == 0));
    use std::sync::atomic::Ordering::SeqCst;
    let (seen, thr, una) = (
        injected.seen.load(SeqCst),
        injected.throttled.load(SeqCst),
        injected.unavailable.load(SeqCst),
    );
    assert!(
        thr > 10 && una > 10,
        "faults injected: {thr} throttled, {una} unavailable of {seen}"
    );
}

/// Adds `lines` at the top of the `[aws]` table of the shop's eshop.toml.
fn set_aws(shop: &Shop, lines: &str) {
    let toml = std::fs::read_to_string(shop.config()).unwrap();
    let toml = toml.replacen("[aws]\n", &format!("[aws]\n{lines}"), 1);
    std::fs::write(shop.config(), toml).unwrap();
}

#[test]
fn a_vpc_cidr_change_is_refused_by_plan_and_apply_alike_before_anything_is_touched() {
    let shop = Shop::new("cidr");
    shop.ok(&["--yes", "phase", "infra", "apply"]);
    let before = shop.inventory();
    // A VPC's CIDR cannot change: plan must not promise an update that
    // apply cannot make.
    set_aws(
        &shop,
        "vpc_cidr = \"10.43.0.0/16\"\nsubnet_cidrs = [\"10.43.1.0/24\", \"10.43.2.0/24\"]\n",
    );
    for args in [
        vec!["plan", "--from", "infra", "--to", "schedule"],
        vec!["phase", "infra", "plan"],
        vec!["--yes", "phase", "infra", "apply"],
        vec!["--yes", "up", "--from", "infra", "--to", "schedule"],
    ] {
        let out = shop.eshop(&args);
        let err = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("10.42.0.0/16") && err.contains("10.43.0.0/16"),
            "{args:?} must name the old and the new CIDR: {err}"
        );
        assert!(err.contains("eshop destroy"), "{args:?}: {err}");
    }
    let after = shop.inventory();
    assert_eq!(ids(&after), ids(&before), "apply touched the old VPC");
    assert_eq!(len(&after, "subnets"), 2, "{after:#}");
    // Doing what the message says works: destroy, then the new CIDR.
    shop.ok(&["--yes", "destroy"]);
    shop.ok(&["--yes", "phase", "infra", "apply"]);
    assert_eq!(shop.inventory()["vpcs"][0]["cidr"], "10.43.0.0/16");
    shop.ok(&["--yes", "destroy"]);
}

#[test]
fn hand_edits_to_the_function_configuration_show_in_the_plan_and_apply_reverts_them() {
    let shop = Shop::new("fdrift");
    shop.ok(&["--yes", "phase", "schedule", "apply"]);
    let name = format!("eshop-{}-stop-shop", shop.project);
    let python = |code: &str| {
        let out = Command::new(venv_bin("python"))
            .args(["-c", &format!(
                "import boto3,json,os\nlam=boto3.client('lambda',endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n{code}"
            )])
            .envs(shop.moto.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let read = format!(
        "c=lam.get_function_configuration(FunctionName='{name}')\n\
         print(json.dumps([c['MemorySize'],c['Timeout'],c['Handler'],c.get('Environment',{{}}).get('Variables',{{}})]))"
    );
    let converged = python(&read);
    let plan = shop.ok(&["plan", "--from", "schedule", "--to", "schedule"]);
    assert!(plan.contains("0 to update"), "{plan}");
    // Each drift alone, so a plan that looks at one field only fails.
    for (edit, why) in [
        ("MemorySize=512", "memory 512 → 128"),
        ("Timeout=5", "timeout 5 → 60"),
        (
            "Handler='other.handler'",
            "handler other.handler → stop_shop.handler",
        ),
        (
            "Environment={'Variables':{'ESHOP_PROJECT':'someone-else'}}",
            "environment ESHOP_PROJECT",
        ),
    ] {
        python(&format!(
            "lam.update_function_configuration(FunctionName='{name}',{edit})"
        ));
        assert_ne!(python(&read), converged, "{edit} changed nothing");
        let plan = shop.ok(&["plan", "--from", "schedule", "--to", "schedule"]);
        assert!(
            plan.contains("1 to update")
                && plan.contains(&format!("~ lambda function {name} ({why})")),
            "{edit}: {plan}"
        );
        assert!(
            !plan.contains("someone-else"),
            "a variable's value shown: {plan}"
        );
        let out = shop.ok(&["--yes", "phase", "schedule", "apply"]);
        assert!(out.contains("configuration"), "{edit}: {out}");
        assert_eq!(python(&read), converged, "{edit} not reverted");
        let plan = shop.ok(&["plan", "--from", "schedule", "--to", "schedule"]);
        assert!(plan.contains("0 to update"), "{edit}: {plan}");
    }
    shop.ok(&["--yes", "destroy"]);
}

#[test]
fn render_writes_the_infra_user_data_and_the_schedule_documents_for_review() {
    let shop = Shop::new("render");
    let out = shop.dir.path().join("review");
    let infra = out.join("infra");
    let said = shop.ok(&["render", "infra", "--out", infra.to_str().unwrap()]);
    assert!(!said.contains("no templates"), "{said}");
    for role in ["control-plane", "worker"] {
        let p = infra.join(format!("node-user-data-{role}.sh"));
        let script =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}\n{said}", p.display()));
        assert!(
            script.contains(&format!("project={} role={role}", shop.project)),
            "{script}"
        );
        assert!(!script.contains("{{"), "{script}");
        let check = Command::new("sh").arg("-n").arg(&p).output().unwrap();
        assert!(check.status.success(), "{}", text(&check));
    }
    let sched = out.join("schedule");
    shop.ok(&["render", "schedule", "--out", sched.to_str().unwrap()]);
    let handler = std::fs::read(sched.join("stop_shop.py")).unwrap();
    let template = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/templates/lambda/stop_shop.py"
    ))
    .unwrap();
    assert_eq!(handler, template);
    for doc in [
        "lambda-trust.json",
        "lambda-policy.json",
        "scheduler-trust.json",
        "scheduler-policy.json",
    ] {
        let body = std::fs::read_to_string(sched.join(doc)).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert_eq!(v["Version"], "2012-10-17", "{doc}: {body}");
    }
    let policy = std::fs::read_to_string(sched.join("lambda-policy.json")).unwrap();
    assert!(
        policy.contains(&format!("eshop-{}-stop-shop", shop.project)),
        "{policy}"
    );
}
