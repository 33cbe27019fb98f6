//! Tests of the mock Kubernetes API server itself (tests/common/kube_mock.rs),
//! driven with plain HTTP and, once, with the `kube` client eshop uses.

mod common;

use common::kube_mock::KubeMock;
use serde_json::{json, Value};

const APPLY: &str = "application/apply-patch+yaml";

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    fn new(mock: &KubeMock) -> Http {
        Http {
            base: mock.url(),
            client: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some((content_type, body)) = body {
            req = req
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let resp = req.send().await.expect("request to the mock");
        let code = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
        (code, resp.json().await.expect("JSON body"))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn apply(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some((APPLY, body)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", body)),
        )
        .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        let body = json!({"propagationPolicy": "Foreground"});
        self.send(
            reqwest::Method::DELETE,
            path,
            Some(("application/json", &body)),
        )
        .await
    }
}

fn rv(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"].as_str().unwrap()
}

fn generation(obj: &Value) -> i64 {
    obj["metadata"]["generation"].as_i64().unwrap()
}

fn deployment(name: &str, ns: &str, replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    })
}

fn configmap(name: &str, ns: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "data": {"k": "v"},
    })
}

#[tokio::test]
async fn version_and_unknown_routes() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let (code, v) = http.get("/version").await;
    assert_eq!(code, 200);
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "34");
    assert_eq!(v["gitVersion"], "v1.34.2-mock");
    assert_eq!(v["platform"], "linux/amd64");
    for path in ["/healthz", "/apis", "/apis/apps", "/api/v1/a/b/c/d"] {
        let (code, s) = http.get(path).await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(s["kind"], "Status", "{path}");
        assert_eq!(s["reason"], "NotFound", "{path}");
    }
}

#[tokio::test]
async fn not_found_is_a_status() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let (code, s) = http
        .get("/apis/apps/v1/namespaces/shop/deployments/web")
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        s,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "deployments \"web\" not found",
            "reason": "NotFound",
            "details": {"name": "web", "kind": "deployments"},
            "code": 404,
        })
    );
    let (code, s) = http.delete("/api/v1/namespaces/shop").await;
    assert_eq!(code, 404);
    assert_eq!(s["message"], "namespaces \"shop\" not found");
}

#[tokio::test]
async fn server_side_apply_creates_then_no_op_then_updates() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let path = "/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=eshop&force=true";
    let sent = deployment("web", "shop", 2, "web:1");

    let (code, created) = http.apply(path, &sent).await;
    assert_eq!(code, 201);
    assert_eq!(generation(&created), 1);
    assert!(!created["metadata"]["uid"].as_str().unwrap().is_empty());
    assert!(created["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(created["spec"], sent["spec"]);
    assert_eq!(
        mock.get("apps/v1", "deployments", "shop", "web").unwrap(),
        created
    );

    // The same object again: a no-op.
    let (code, same) = http.apply(path, &sent).await;
    assert_eq!(code, 200);
    assert_eq!(rv(&same), rv(&created));
    assert_eq!(generation(&same), 1);
    assert_eq!(same["metadata"]["uid"], created["metadata"]["uid"]);

    // A label: a new resourceVersion, the same generation.
    let mut labelled = sent.clone();
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let (code, relabelled) = http.apply(path, &labelled).await;
    assert_eq!(code, 200);
    assert_ne!(rv(&relabelled), rv(&created));
    assert_eq!(generation(&relabelled), 1);

    // A spec change: a new resourceVersion and generation, same uid.
    let changed = deployment("web", "shop", 2, "web:2");
    let (code, updated) = http.apply(path, &changed).await;
    assert_eq!(code, 200);
    assert_ne!(rv(&updated), rv(&relabelled));
    assert_eq!(generation(&updated), 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_eq!(updated["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );

    // Field manager and force are on record.
    let patches: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 4);
    for r in &patches {
        assert_eq!(r.path, "/apis/apps/v1/namespaces/shop/deployments/web");
        assert_eq!(r.query["fieldManager"], "eshop");
        assert_eq!(r.query["force"], "true");
    }
    assert_eq!(patches[3].body.as_ref().unwrap(), &changed);

    // Server-side apply needs a field manager.
    let (code, s) = http
        .apply("/apis/apps/v1/namespaces/shop/deployments/web", &changed)
        .await;
    assert_eq!(code, 400);
    assert_eq!(s["reason"], "BadRequest");
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let cm = configmap("settings", "shop", json!({}));
    let path = "/api/v1/namespaces/shop/configmaps/settings?fieldManager=eshop&dryRun=All";
    let (code, would_be) = http.apply(path, &cm).await;
    assert_eq!(code, 201);
    assert_eq!(would_be["data"], json!({"k": "v"}));
    assert!(mock.all().is_empty());

    let (code, created) = http
        .apply(
            "/api/v1/namespaces/shop/configmaps/settings?fieldManager=eshop",
            &cm,
        )
        .await;
    assert_eq!(code, 201);
    let mut changed = cm.clone();
    changed["data"]["k"] = json!("w");
    let (code, would_be) = http.apply(path, &changed).await;
    assert_eq!(code, 200);
    assert_eq!(would_be["data"]["k"], "w");
    assert_eq!(generation(&would_be), 2);
    let stored = mock.get("v1", "configmaps", "shop", "settings").unwrap();
    assert_eq!(stored, created);

    // Nothing was used up: the next real change gets the next version.
    let (_, updated) = http
        .apply(
            "/api/v1/namespaces/shop/configmaps/settings?fieldManager=eshop",
            &changed,
        )
        .await;
    assert_eq!(rv(&updated), rv(&would_be));
}

#[tokio::test]
async fn create_with_post_and_conflict() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    let (code, created) = http.post("/api/v1/namespaces", &ns).await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["name"], "shop");
    assert!(mock.get("v1", "namespaces", "", "shop").is_some());
    let (code, s) = http.post("/api/v1/namespaces", &ns).await;
    assert_eq!(code, 409);
    assert_eq!(s["reason"], "AlreadyExists");
    assert_eq!(s["code"], 409);
}

#[tokio::test]
async fn list_with_label_selectors() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let managed = json!({"app.kubernetes.io/managed-by": "eshop", "part": "web"});
    for (name, ns, labels) in [
        ("b", "shop", managed.clone()),
        (
            "a",
            "shop",
            json!({"app.kubernetes.io/managed-by": "eshop", "part": "db"}),
        ),
        ("c", "other", managed.clone()),
        ("d", "shop", json!({"part": "web"})),
    ] {
        let (code, _) = http
            .apply(
                &format!("/api/v1/namespaces/{ns}/configmaps/{name}?fieldManager=eshop"),
                &configmap(name, ns, labels),
            )
            .await;
        assert_eq!(code, 201);
    }
    // A foreign object, stored directly.
    mock.put("v1", "configmaps", configmap("e", "shop", json!({})));

    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (code, all) = http.get("/api/v1/configmaps").await;
    assert_eq!(code, 200);
    assert_eq!(all["kind"], "ConfigMapList");
    assert_eq!(all["apiVersion"], "v1");
    assert!(all["metadata"]["resourceVersion"].is_string());
    assert_eq!(all["items"][0]["kind"], "ConfigMap");
    assert_eq!(
        names(&all),
        ["other/c", "shop/a", "shop/b", "shop/d", "shop/e"]
    );

    let (_, shop) = http.get("/api/v1/namespaces/shop/configmaps").await;
    assert_eq!(names(&shop), ["shop/a", "shop/b", "shop/d", "shop/e"]);

    for (selector, expected) in [
        // `app.kubernetes.io/managed-by=eshop`, URL-encoded
        (
            "app.kubernetes.io%2Fmanaged-by%3Deshop",
            &["other/c", "shop/a", "shop/b"][..],
        ),
        (
            "app.kubernetes.io/managed-by==eshop,part=web",
            &["other/c", "shop/b"],
        ),
        ("part!=web", &["shop/a", "shop/e"]),
        ("part", &["other/c", "shop/a", "shop/b", "shop/d"]),
        ("!app.kubernetes.io/managed-by", &["shop/d", "shop/e"]),
        (
            "app.kubernetes.io/managed-by=eshop,part!=db",
            &["other/c", "shop/b"],
        ),
    ] {
        let (code, list) = http
            .get(&format!("/api/v1/configmaps?labelSelector={selector}"))
            .await;
        assert_eq!(code, 200, "{selector}");
        assert_eq!(names(&list), expected, "{selector}");
    }
    let (_, list) = http
        .get("/api/v1/namespaces/shop/configmaps?labelSelector=part%3Dweb")
        .await;
    assert_eq!(names(&list), ["shop/b", "shop/d"]);

    // An empty list still has its kind.
    let (code, none) = http.get("/apis/apps/v1/deployments").await;
    assert_eq!(code, 200);
    assert_eq!(none["kind"], "DeploymentList");
    assert_eq!(none["items"], json!([]));
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    for ns in ["shop", "other"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        http.apply(
            &format!("/api/v1/namespaces/{ns}?fieldManager=eshop"),
            &body,
        )
        .await;
        http.apply(
            &format!("/api/v1/namespaces/{ns}/configmaps/settings?fieldManager=eshop"),
            &configmap("settings", ns, json!({})),
        )
        .await;
        http.apply(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments/web?fieldManager=eshop"),
            &deployment("web", ns, 1, "web:1"),
        )
        .await;
    }
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [],
    });
    let (code, _) = http
        .apply(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/reader?fieldManager=eshop",
            &role,
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(mock.all().len(), 7);

    let (code, deleted) = http.delete("/api/v1/namespaces/shop").await;
    assert_eq!(code, 200);
    assert_eq!(deleted["metadata"]["name"], "shop");
    let left: Vec<String> = mock
        .all()
        .iter()
        .map(|o| {
            format!(
                "{} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(mock.get("v1", "configmaps", "shop", "settings").is_none());
    assert!(mock.get("apps/v1", "deployments", "shop", "web").is_none());
    assert!(mock.get("apps/v1", "deployments", "other", "web").is_some());
    assert!(mock
        .get("rbac.authorization.k8s.io/v1", "clusterroles", "", "reader")
        .is_some());
    let (code, _) = http
        .get("/api/v1/namespaces/shop/configmaps/settings")
        .await;
    assert_eq!(code, 404);

    // A single delete.
    let (code, gone) = http
        .delete("/apis/rbac.authorization.k8s.io/v1/clusterroles/reader")
        .await;
    assert_eq!(code, 200);
    assert_eq!(gone["kind"], "ClusterRole");
    assert_eq!(mock.all().len(), 3);
}

#[tokio::test]
async fn approving_a_csr_sets_a_fake_certificate() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/admin-alice";
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "admin-alice"},
        "spec": {
            "request": b64.encode("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n"),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "username": "alice",
        },
    });
    let (code, _) = http
        .apply(&format!("{path}?fieldManager=eshop"), &csr)
        .await;
    assert_eq!(code, 201);

    let mut approval = csr.clone();
    approval["status"] = json!({"conditions": [{
        "type": "Approved", "status": "True", "reason": "EshopApproved", "message": "by eshop",
    }]});
    let (code, approved) = http
        .send(
            reqwest::Method::PUT,
            &format!("{path}/approval"),
            Some(("application/json", &approval)),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
    let pem = b64
        .decode(approved["status"]["certificate"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(pem).unwrap(),
        "-----BEGIN CERTIFICATE-----\nMOCK alice\n-----END CERTIFICATE-----\n"
    );
    let stored = mock
        .get(
            "certificates.k8s.io/v1",
            "certificatesigningrequests",
            "",
            "admin-alice",
        )
        .unwrap();
    assert_eq!(stored, approved);

    approval["metadata"]["name"] = json!("nobody");
    let (code, _) = http
        .send(
            reqwest::Method::PUT,
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/nobody/approval",
            Some(("application/json", &approval)),
        )
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn csr_certificate_names_the_common_name_of_the_request() {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "eshop-admin");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;

    let mock = KubeMock::start();
    let http = Http::new(&mock);
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/admin";
    let mut csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "admin"},
        "spec": {
            "request": b64.encode(request),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        },
    });
    http.post(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        &csr,
    )
    .await;
    csr["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
    let (_, approved) = http
        .send(
            reqwest::Method::PUT,
            &format!("{path}/approval"),
            Some(("application/json", &csr)),
        )
        .await;
    let pem = b64
        .decode(approved["status"]["certificate"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(pem)
        .unwrap()
        .contains("MOCK eshop-admin\n"));

    // A denial stores the conditions and no certificate.
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/other";
    csr["metadata"]["name"] = json!("other");
    csr.as_object_mut().unwrap().remove("status");
    http.apply(&format!("{path}?fieldManager=eshop"), &csr)
        .await;
    csr["status"] = json!({"conditions": [{"type": "Denied", "status": "True"}]});
    let (code, denied) = http
        .send(
            reqwest::Method::PUT,
            &format!("{path}/approval"),
            Some(("application/json", &csr)),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(denied["status"]["conditions"][0]["type"], "Denied");
    assert!(denied["status"].get("certificate").is_none());
}

#[tokio::test]
async fn workloads_roll_out_after_polls_unless_stuck() {
    let mock = KubeMock::start();
    mock.set_ready_after_polls(3);
    mock.stuck("deployments", "shop", "stuck");
    let http = Http::new(&mock);
    let web = "/apis/apps/v1/namespaces/shop/deployments/web";
    http.apply(
        &format!("{web}?fieldManager=eshop"),
        &deployment("web", "shop", 3, "web:1"),
    )
    .await;
    let stuck = "/apis/apps/v1/namespaces/shop/deployments/stuck";
    http.apply(
        &format!("{stuck}?fieldManager=eshop"),
        &deployment("stuck", "shop", 1, "stuck:1"),
    )
    .await;

    let ready = |d: &Value| {
        let s = &d["status"];
        s["observedGeneration"] == d["metadata"]["generation"]
            && s["readyReplicas"] == d["spec"]["replicas"]
            && s["updatedReplicas"] == d["spec"]["replicas"]
            && s["availableReplicas"] == d["spec"]["replicas"]
            && s["replicas"] == d["spec"]["replicas"]
    };
    for poll in 1..=2 {
        let (_, d) = http.get(web).await;
        assert!(!ready(&d), "poll {poll}: {d}");
        assert_eq!(d["status"]["observedGeneration"], 1);
        assert_eq!(d["status"]["readyReplicas"], 0);
        assert_eq!(d["status"]["updatedReplicas"], 0);
        assert_eq!(d["status"]["availableReplicas"], 0);
    }
    let (_, d) = http.get(web).await;
    assert!(ready(&d), "{d}");
    assert_eq!(d["status"]["readyReplicas"], 3);

    // A new generation rolls out anew; the status is kept across a
    // metadata-only change.
    let (_, d) = http
        .apply(
            &format!("{web}?fieldManager=eshop"),
            &deployment("web", "shop", 3, "web:2"),
        )
        .await;
    assert_eq!(generation(&d), 2);
    assert!(!ready(&d));
    assert_eq!(d["status"]["observedGeneration"], 2);
    for _ in 1..=2 {
        assert!(!ready(&http.get(web).await.1));
    }
    assert!(ready(&http.get(web).await.1));
    let mut relabelled = deployment("web", "shop", 3, "web:2");
    relabelled["metadata"]["labels"]["x"] = json!("y");
    let (_, d) = http
        .apply(&format!("{web}?fieldManager=eshop"), &relabelled)
        .await;
    assert!(ready(&d));

    for _ in 0..10 {
        let (_, d) = http.get(stuck).await;
        assert!(!ready(&d), "{d}");
        assert_eq!(d["status"]["readyReplicas"], 0);
    }

    // A listing is not a poll.
    mock.set_ready_after_polls(2);
    let sts = json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": {}},
    });
    let db = "/apis/apps/v1/namespaces/shop/statefulsets/db";
    http.apply(&format!("{db}?fieldManager=eshop"), &sts).await;
    for _ in 0..3 {
        http.get("/apis/apps/v1/namespaces/shop/statefulsets").await;
    }
    let (_, s) = http.get(db).await;
    assert_eq!(s["status"]["readyReplicas"], 0);
    assert_ne!(
        s["status"]["currentRevision"],
        s["status"]["updateRevision"]
    );
    let (_, s) = http.get(db).await;
    assert_eq!(
        s["status"],
        json!({
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "currentReplicas": 1,
            "currentRevision": "db-rev1",
            "updateRevision": "db-rev1",
        })
    );

    let ds = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {}},
    });
    let agent = "/apis/apps/v1/namespaces/shop/daemonsets/agent";
    http.apply(&format!("{agent}?fieldManager=eshop"), &ds)
        .await;
    let (_, a) = http.get(agent).await;
    assert_eq!(a["status"]["numberReady"], 0);
    let (_, a) = http.get(agent).await;
    assert_eq!(a["status"]["observedGeneration"], 1);
    assert_eq!(a["status"]["desiredNumberScheduled"], 1);
    assert_eq!(a["status"]["updatedNumberScheduled"], 1);
    assert_eq!(a["status"]["numberAvailable"], 1);
    assert_eq!(a["status"]["numberReady"], 1);
}

#[tokio::test]
async fn kubeconfig_and_the_kube_client() {
    use kube::api::{
        Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    };
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let mock = KubeMock::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    mock.write_kubeconfig(&path, "eshop-test");
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    assert_eq!(kubeconfig.current_context.as_deref(), Some("eshop-test"));
    let options = KubeConfigOptions {
        context: Some("eshop-test".into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.34.2-mock");

    let ar = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "shop", &ar);
    let obj: DynamicObject = serde_json::from_value(deployment("web", "shop", 2, "web:1")).unwrap();
    let params = PatchParams::apply("eshop").force();
    let created = api
        .patch("web", &params, &Patch::Apply(&obj))
        .await
        .unwrap();
    let again = api
        .patch("web", &params, &Patch::Apply(&obj))
        .await
        .unwrap();
    assert_eq!(
        created.metadata.resource_version,
        again.metadata.resource_version
    );
    assert_eq!(again.metadata.generation, Some(1));
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.query["fieldManager"], "eshop");
    assert_eq!(last.query["force"], "true");

    let dry = PatchParams::apply("eshop").force().dry_run();
    let other: DynamicObject =
        serde_json::from_value(deployment("web", "shop", 2, "web:2")).unwrap();
    let would_be = api.patch("web", &dry, &Patch::Apply(&other)).await.unwrap();
    assert_eq!(would_be.metadata.generation, Some(2));
    assert_eq!(
        mock.get("apps/v1", "deployments", "shop", "web").unwrap()["metadata"]["generation"],
        1
    );

    let fetched = api.get("web").await.unwrap();
    assert_eq!(fetched.data["spec"]["replicas"], 2);
    assert!(api.get_opt("nope").await.unwrap().is_none());
    let everywhere: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let listed = everywhere
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.namespace.as_deref(), Some("shop"));
    let listed = everywhere
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert!(listed.items.is_empty());

    let deleted = api
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert!(deleted.is_left());
    match api.delete("web", &DeleteParams::background()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected a 404, got {other:?}"),
    }
    assert!(mock.all().is_empty());

    // A certificate request: create, approve through the subresource, read.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let csr_ar = ApiResource {
        group: "certificates.k8s.io".into(),
        version: "v1".into(),
        api_version: "certificates.k8s.io/v1".into(),
        kind: "CertificateSigningRequest".into(),
        plural: "certificatesigningrequests".into(),
    };
    let csrs: Api<DynamicObject> = Api::all_with(client, &csr_ar);
    let csr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "alice"},
        "spec": {"request": b64.encode("not a CSR"), "username": "alice", "usages": ["client auth"]},
    }))
    .unwrap();
    csrs.create(&PostParams::default(), &csr).await.unwrap();
    match csrs.create(&PostParams::default(), &csr).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("expected a 409, got {other:?}"),
    }
    let mut approval = serde_json::to_value(csrs.get("alice").await.unwrap()).unwrap();
    approval["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
    csrs.replace_subresource("approval", "alice", &PostParams::default(), &approval)
        .await
        .unwrap();
    let signed = csrs.get("alice").await.unwrap();
    let cert = b64
        .decode(signed.data["status"]["certificate"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(cert).unwrap().contains("MOCK alice"));
}
