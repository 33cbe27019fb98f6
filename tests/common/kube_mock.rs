//! A mock Kubernetes API server for integration tests.
//!
//! **This is a mock, not Kubernetes:** a small in-memory REST server that
//! answers the handful of API calls eshop's Kubernetes apply, prune, wait and
//! destroy logic makes, with simple but faithful semantics where eshop
//! depends on them. It has no admission, no validation against OpenAPI
//! schemas, no controllers, no watch, no authentication and no TLS. Where it
//! departs from a real API server:
//!
//! * Server-side apply replaces the whole object with the one sent (keeping
//!   the stored uid, creationTimestamp and status); it does not merge with
//!   fields owned by other field managers, never reports field conflicts
//!   (so `force` changes nothing) and keeps no `managedFields`. A request
//!   identical to what is stored is a no-op (resourceVersion and generation
//!   kept), as on a real server.
//! * `metadata.generation` is kept for every kind (real servers do not keep
//!   it for e.g. ConfigMaps) and bumped when anything outside `metadata` and
//!   `status` changes.
//! * Objects may be created in a namespace that does not exist; deleting a
//!   Namespace deletes everything in it at once (no Terminating phase, no
//!   finalizers), and deleting any object is immediate.
//! * Deployments, StatefulSets and DaemonSets "roll out" after a number of
//!   GETs of the single object ([`KubeMock::set_ready_after_polls`], default
//!   2: the 2nd GET after a change that bumped the generation sees it rolled
//!   out); [`KubeMock::stuck`] ones never do. No pods exist.
//! * Approving a CertificateSigningRequest (the `approval` subresource)
//!   sets `status.certificate` to a fake PEM block that is NOT a certificate:
//!   the mock signs nothing.
//! * Label selectors support `k=v`, `k==v`, `k!=v`, `k` and `!k` (no set
//!   syntax); field selectors only `metadata.name` and `metadata.namespace`.
//! * There is no discovery: only `/version` and resource paths are served.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// One request the mock received, in arrival order.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// The query parameters, percent-decoded.
    pub query: BTreeMap<String, String>,
    /// The body parsed as JSON; a body that is not JSON is kept as a string.
    pub body: Option<Value>,
}

/// (group/version, plural, namespace or "" for cluster-scoped, name)
type Key = (String, String, String, String);

struct Inner {
    objects: BTreeMap<Key, Value>,
    /// The global resourceVersion counter: the last one handed out.
    rv: u64,
    uids: u64,
    uid_seed: std::collections::hash_map::RandomState,
    /// GETs of a workload since the change that last bumped its generation.
    polls: HashMap<Key, u32>,
    ready_after_polls: u32,
    /// (plural, namespace, name) of workloads that never roll out.
    stuck: HashSet<(String, String, String)>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

/// A mock Kubernetes API server on a free loopback port (see the module
/// documentation for what it is not). Shut down when dropped.
pub struct KubeMock {
    port: u16,
    inner: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KubeMock {
    /// Binds 127.0.0.1:0 and serves on a background thread with its own
    /// tokio runtime; returns once the server is listening.
    pub fn start() -> KubeMock {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            objects: BTreeMap::new(),
            rv: 1000,
            uids: 0,
            uid_seed: std::collections::hash_map::RandomState::new(),
            polls: HashMap::new(),
            ready_after_polls: 2,
            stuck: HashSet::new(),
            requests: Vec::new(),
        }));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let state = inner.clone();
        let thread = std::thread::Builder::new()
            .name("kube-mock".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("kube mock runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("kube mock bind");
                    port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                    let app = axum::Router::new().fallback(handle).with_state(state);
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("kube mock serve"),
                        _ = shutdown_rx => {}
                    }
                });
                // Open keep-alive connections are dropped with the runtime.
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .expect("kube mock thread");
        let port = port_rx.recv().expect("kube mock did not start");
        KubeMock {
            port,
            inner,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes a kubeconfig with one cluster (server = [`Self::url`]), one
    /// user with the dummy token `mock-token` and one context named
    /// `context` (namespace `default`), which is the current context.
    pub fn write_kubeconfig(&self, path: &Path, context: &str) {
        // JSON strings are YAML strings: quotes any context name safely.
        let ctx = Value::String(context.to_owned()).to_string();
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: kube-mock\n  \
               cluster:\n    \
                 server: {url}\n\
             users:\n\
             - name: kube-mock-user\n  \
               user:\n    \
                 token: mock-token\n\
             contexts:\n\
             - name: {ctx}\n  \
               context:\n    \
                 cluster: kube-mock\n    \
                 user: kube-mock-user\n    \
                 namespace: default\n\
             current-context: {ctx}\n\
             preferences: {{}}\n",
            url = self.url(),
        );
        std::fs::write(path, yaml).expect("write kubeconfig");
    }

    /// How many GETs of a single Deployment/StatefulSet/DaemonSet, after a
    /// change that bumped its generation, it takes to see it rolled out:
    /// the `n`-th GET returns it ready (0 or 1: the first GET does).
    pub fn set_ready_after_polls(&self, n: u32) {
        self.lock().ready_after_polls = n;
    }

    /// The workload `plural` (e.g. "deployments") named `name` in
    /// `namespace` never rolls out.
    pub fn stuck(&self, plural: &str, namespace: &str, name: &str) {
        self.lock()
            .stuck
            .insert((plural.to_owned(), namespace.to_owned(), name.to_owned()));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The stored object, if any ("" namespace = cluster-scoped;
    /// `api_version` like "v1" or "apps/v1"). Does not count as a poll.
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        self.lock()
            .objects
            .get(&key(api_version, plural, namespace, name))
            .cloned()
    }

    /// Every stored object, sorted by (apiVersion, plural, namespace, name).
    pub fn all(&self) -> Vec<Value> {
        self.lock().objects.values().cloned().collect()
    }

    /// Stores `obj` directly (e.g. a foreign object without eshop's labels),
    /// replacing any object of the same name; fills in metadata.uid,
    /// resourceVersion, generation (1) and creationTimestamp when missing,
    /// and an unready status for a workload that has none.
    pub fn put(&self, api_version: &str, plural: &str, mut obj: Value) {
        let name = str_at(&obj, &["metadata", "name"])
            .expect("put: metadata.name")
            .to_owned();
        let ns = str_at(&obj, &["metadata", "namespace"])
            .unwrap_or("")
            .to_owned();
        let mut inner = self.lock();
        let rv = inner.next_rv();
        let uid = inner.new_uid();
        let meta = metadata_mut(&mut obj);
        meta.entry("uid").or_insert_with(|| uid.into());
        meta.insert("resourceVersion".into(), rv.to_string().into());
        meta.entry("generation").or_insert_with(|| 1.into());
        meta.entry("creationTimestamp")
            .or_insert_with(|| now_rfc3339().into());
        if is_workload(plural) && obj.get("status").is_none() {
            obj["status"] = rollout_status(plural, &obj, false);
        }
        let k = key(api_version, plural, &ns, &name);
        inner.polls.remove(&k);
        inner.objects.insert(k, obj);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for KubeMock {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// A random-looking, unique UUID (version 4 layout).
    fn new_uid(&mut self) -> String {
        self.uids += 1;
        let word = |salt: u64| {
            let mut h = self.uid_seed.build_hasher();
            h.write_u64(self.uids);
            h.write_u64(salt);
            h.finish()
        };
        let (a, b) = (word(1), word(2));
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

fn key(gv: &str, plural: &str, ns: &str, name: &str) -> Key {
    (gv.into(), plural.into(), ns.into(), name.into())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .unwrap()
        .to_string()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(p))?.as_str()
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let o = obj.as_object_mut().unwrap();
    let m = o.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().unwrap()
}

fn is_workload(plural: &str) -> bool {
    matches!(plural, "deployments" | "statefulsets" | "daemonsets")
}

// ---------------------------------------------------------------- responses

fn respond(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A `Status` object as the API server returns for errors.
fn status(code: StatusCode, reason: &str, message: String, details: Option<Value>) -> Response {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    respond(code, &s)
}

fn not_found(plural: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{plural} \"{name}\" not found"),
        Some(json!({"name": name, "kind": plural})),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message.into(), None)
}

fn method_not_allowed(method: &Method, path: &str) -> Response {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("the kube mock does not support {method} {path}"),
        None,
    )
}

fn route_not_found(path: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
        Some(json!({})),
    )
}

// ------------------------------------------------------------------ routing

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?))
            .flatten();
        match (escaped, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// A parsed resource path.
struct Target {
    gv: String,
    plural: String,
    /// "" for cluster-scoped paths (and lists across all namespaces).
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let (gv, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 2 => (segs[1].clone(), &segs[2..]),
        Some("apis") if segs.len() >= 3 => (format!("{}/{}", segs[1], segs[2]), &segs[3..]),
        _ => return None,
    };
    let (ns, rest) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (rest[1].clone(), &rest[2..])
    } else {
        (String::new(), rest)
    };
    if rest.is_empty() || rest.len() > 3 {
        return None;
    }
    Some(Target {
        gv,
        plural: rest[0].clone(),
        ns,
        name: rest.get(1).cloned(),
        sub: rest.get(2).cloned(),
    })
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = percent_decode(uri.path(), false);
    let query = parse_query(uri.query());
    let body_json = if body.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        )
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let mut inner = shared.lock().unwrap_or_else(|e| e.into_inner());
    inner.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body_json.clone(),
    });
    let req = Req {
        method: &method,
        path: &path,
        query: &query,
        body: body_json,
        content_type: &content_type,
    };
    req.dispatch(&mut inner)
}

struct Req<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    body: Option<Value>,
    content_type: &'a str,
}

impl Req<'_> {
    fn dispatch(self, inner: &mut Inner) -> Response {
        if self.path.trim_end_matches('/') == "/version" {
            return if *self.method == Method::GET {
                respond(StatusCode::OK, &version())
            } else {
                method_not_allowed(self.method, self.path)
            };
        }
        let Some(t) = parse_path(self.path) else {
            return route_not_found(self.path);
        };
        let dry_run = match self.query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => return bad_request(format!("invalid dryRun value {other:?}")),
        };
        match (&t.name, &t.sub) {
            (None, _) => match *self.method {
                Method::GET => self.list(inner, &t),
                Method::POST => self.create(inner, &t, dry_run),
                _ => method_not_allowed(self.method, self.path),
            },
            (Some(name), None) => match *self.method {
                Method::GET => get_polled(inner, &t, name),
                Method::PATCH => self.patch(inner, &t, name, dry_run),
                Method::PUT => self.replace(inner, &t, name, dry_run),
                Method::DELETE => delete(inner, &t, name, dry_run),
                _ => method_not_allowed(self.method, self.path),
            },
            (Some(name), Some(sub)) => match (self.method, sub.as_str()) {
                (&Method::PUT, "approval") if t.plural == "certificatesigningrequests" => {
                    self.approve(inner, &t, name, dry_run)
                }
                (&Method::GET, "status") => {
                    match inner.objects.get(&key(&t.gv, &t.plural, &t.ns, name)) {
                        Some(o) => respond(StatusCode::OK, o),
                        None => not_found(&t.plural, name),
                    }
                }
                _ => method_not_allowed(self.method, self.path),
            },
        }
    }

    /// The sent object, checked against the path: a JSON object with
    /// apiVersion and kind, whose name and namespace (filled in from the
    /// path when missing) match the path's.
    fn sent_object(&self, t: &Target, name: Option<&str>) -> Result<Value, String> {
        let mut obj = match &self.body {
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err("the body is not a JSON object".into()),
            None => return Err("the body is empty".into()),
        };
        for field in ["apiVersion", "kind"] {
            if obj
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                return Err(format!("Object '{field}' is missing in the request body"));
            }
        }
        let meta = metadata_mut(&mut obj);
        if let Some(name) = name {
            match meta.get("name").and_then(Value::as_str) {
                None => {
                    meta.insert("name".into(), name.into());
                }
                Some(n) if n == name => {}
                Some(n) => {
                    return Err(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    ))
                }
            }
        }
        if !t.ns.is_empty() {
            match meta.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    meta.insert("namespace".into(), t.ns.clone().into());
                }
                Some(n) if n == t.ns => {}
                Some(n) => {
                    return Err(format!(
                        "the namespace of the object ({n}) does not match the namespace on the URL ({})",
                        t.ns
                    ))
                }
            }
        }
        Ok(obj)
    }

    fn list(&self, inner: &mut Inner, t: &Target) -> Response {
        if matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        ) {
            return method_not_allowed(self.method, &format!("{} (watch)", self.path));
        }
        let selector = match parse_selector(self.query.get("labelSelector").map(String::as_str)) {
            Ok(s) => s,
            Err(e) => return bad_request(e),
        };
        let mut field_name = None;
        let mut field_ns = None;
        for req in self
            .query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, v) = req
                .split_once("==")
                .or_else(|| req.split_once('='))
                .unwrap_or((req, ""));
            match k.trim() {
                "metadata.name" => field_name = Some(v.trim().to_owned()),
                "metadata.namespace" => field_ns = Some(v.trim().to_owned()),
                _ => {
                    return bad_request(format!(
                        "the kube mock only supports metadata.name and metadata.namespace field selectors, not {req:?}"
                    ))
                }
            }
        }
        // BTreeMap order within one (gv, plural) is (namespace, name).
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((gv, plural, ns, name), obj)| {
                *gv == t.gv
                    && *plural == t.plural
                    && (t.ns.is_empty() || *ns == t.ns)
                    && field_name.as_ref().is_none_or(|f| f == name)
                    && field_ns.as_ref().is_none_or(|f| f == ns)
                    && selector.iter().all(|r| r.matches(obj))
            })
            .map(|(_, obj)| obj.clone())
            .collect();
        let kind = kind_of(&t.plural, items.first());
        respond(
            StatusCode::OK,
            &json!({
                "apiVersion": t.gv,
                "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": inner.rv.to_string()},
                "items": items,
            }),
        )
    }

    fn create(&self, inner: &mut Inner, t: &Target, dry_run: bool) -> Response {
        let mut obj = match self.sent_object(t, None) {
            Ok(o) => o,
            Err(e) => return bad_request(e),
        };
        let meta = metadata_mut(&mut obj);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    let suffix: String = inner
                        .new_uid()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .take(5)
                        .collect();
                    let n = format!("{prefix}{suffix}");
                    metadata_mut(&mut obj).insert("name".into(), n.clone().into());
                    n
                }
                None => return bad_request("metadata.name or metadata.generateName is required"),
            },
        };
        let k = key(&t.gv, &t.plural, &t.ns, &name);
        if inner.objects.contains_key(&k) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", t.plural),
                Some(json!({"name": name, "kind": t.plural})),
            );
        }
        let obj = new_object(inner, t, obj, dry_run);
        if !dry_run {
            inner.polls.remove(&k);
            inner.objects.insert(k, obj.clone());
        }
        respond(StatusCode::CREATED, &obj)
    }

    fn patch(&self, inner: &mut Inner, t: &Target, name: &str, dry_run: bool) -> Response {
        if self.content_type != "application/apply-patch+yaml" {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the kube mock only supports server-side apply patches (application/apply-patch+yaml), not {:?}",
                    self.content_type
                ),
                None,
            );
        }
        if self.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return bad_request("PATCH, fieldManager: Required value: is required for apply patch");
        }
        let sent = match self.sent_object(t, Some(name)) {
            Ok(o) => o,
            Err(e) => return bad_request(e),
        };
        let k = key(&t.gv, &t.plural, &t.ns, name);
        match inner.objects.get(&k).cloned() {
            None => {
                let obj = new_object(inner, t, sent, dry_run);
                if !dry_run {
                    inner.polls.remove(&k);
                    inner.objects.insert(k, obj.clone());
                }
                respond(StatusCode::CREATED, &obj)
            }
            Some(stored) => update(inner, t, k, &stored, sent, dry_run),
        }
    }

    /// PUT of a whole object: an update with optimistic concurrency when
    /// the sent object carries a resourceVersion.
    fn replace(&self, inner: &mut Inner, t: &Target, name: &str, dry_run: bool) -> Response {
        let sent = match self.sent_object(t, Some(name)) {
            Ok(o) => o,
            Err(e) => return bad_request(e),
        };
        let k = key(&t.gv, &t.plural, &t.ns, name);
        match inner.objects.get(&k).cloned() {
            None => not_found(&t.plural, name),
            Some(stored) => update(inner, t, k, &stored, sent, dry_run),
        }
    }

    fn approve(&self, inner: &mut Inner, t: &Target, name: &str, dry_run: bool) -> Response {
        let sent = match self.sent_object(t, Some(name)) {
            Ok(o) => o,
            Err(e) => return bad_request(e),
        };
        let k = key(&t.gv, &t.plural, &t.ns, name);
        let Some(mut obj) = inner.objects.get(&k).cloned() else {
            return not_found(&t.plural, name);
        };
        let conditions = sent
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let approved = conditions.as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Approved")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
        if !obj.get("status").is_some_and(Value::is_object) {
            obj["status"] = json!({});
        }
        obj["status"]["conditions"] = conditions;
        if approved {
            let subject = csr_common_name(&obj)
                .or_else(|| str_at(&obj, &["spec", "username"]).map(str::to_owned))
                .unwrap_or_else(|| name.to_owned());
            let pem =
                format!("-----BEGIN CERTIFICATE-----\nMOCK {subject}\n-----END CERTIFICATE-----\n");
            obj["status"]["certificate"] =
                base64::engine::general_purpose::STANDARD.encode(pem).into();
        }
        if !dry_run {
            let rv = inner.next_rv();
            metadata_mut(&mut obj).insert("resourceVersion".into(), rv.to_string().into());
            inner.objects.insert(k, obj.clone());
        }
        respond(StatusCode::OK, &obj)
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.2-mock",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-11-11T00:00:00Z",
        "goVersion": "go1.24.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// The Kind of a plural, for list kinds: known plurals, else the kind of an
/// item, else a guess.
fn kind_of(plural: &str, item: Option<&Value>) -> String {
    let known = match plural {
        "namespaces" => "Namespace",
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "services" => "Service",
        "serviceaccounts" => "ServiceAccount",
        "pods" => "Pod",
        "nodes" => "Node",
        "endpoints" => "Endpoints",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "persistentvolumes" => "PersistentVolume",
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        "ingresses" => "Ingress",
        "ingressclasses" => "IngressClass",
        "networkpolicies" => "NetworkPolicy",
        "roles" => "Role",
        "rolebindings" => "RoleBinding",
        "clusterroles" => "ClusterRole",
        "clusterrolebindings" => "ClusterRoleBinding",
        "certificatesigningrequests" => "CertificateSigningRequest",
        "storageclasses" => "StorageClass",
        "horizontalpodautoscalers" => "HorizontalPodAutoscaler",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        "customresourcedefinitions" => "CustomResourceDefinition",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    if let Some(k) = item.and_then(|i| i.get("kind")).and_then(Value::as_str) {
        return k.to_owned();
    }
    let singular = plural.strip_suffix('s').unwrap_or(plural);
    let mut c = singular.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

// ---------------------------------------------------------- object changes

/// A sent object made a stored one: uid, resourceVersion, generation 1,
/// creationTimestamp, and an unready status for a workload. With `dry_run`
/// the resourceVersion is the one it would get, and none is used up.
fn new_object(inner: &mut Inner, t: &Target, mut obj: Value, dry_run: bool) -> Value {
    let rv = if dry_run {
        inner.rv + 1
    } else {
        inner.next_rv()
    };
    let uid = inner.new_uid();
    let meta = metadata_mut(&mut obj);
    meta.remove("managedFields");
    meta.insert("uid".into(), uid.into());
    meta.insert("resourceVersion".into(), rv.to_string().into());
    meta.insert("generation".into(), 1.into());
    meta.insert("creationTimestamp".into(), now_rfc3339().into());
    if is_workload(&t.plural) {
        obj["status"] = rollout_status(&t.plural, &obj, false);
    }
    obj
}

/// The object without what the server manages: status and the metadata
/// fields resourceVersion, generation, managedFields, uid,
/// creationTimestamp.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "resourceVersion",
            "generation",
            "managedFields",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(f);
        }
    }
    o
}

/// Everything but metadata and status: a change here bumps the generation.
fn generation_relevant(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
        m.remove("metadata");
    }
    o
}

/// Updates a stored object with a sent one (server-side apply or PUT):
/// the sent object replaces it, keeping its uid, creationTimestamp and
/// status; a no-op keeps resourceVersion and generation.
fn update(
    inner: &mut Inner,
    t: &Target,
    k: Key,
    stored: &Value,
    mut sent: Value,
    dry_run: bool,
) -> Response {
    if let Some(rv) = str_at(&sent, &["metadata", "resourceVersion"]).filter(|s| !s.is_empty()) {
        let current = str_at(stored, &["metadata", "resourceVersion"]).unwrap_or("");
        if rv != current {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                    t.plural, k.3
                ),
                Some(json!({"name": k.3, "kind": t.plural})),
            );
        }
    }
    let smeta = stored.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = metadata_mut(&mut sent);
    meta.remove("managedFields");
    for f in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
        match smeta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    if let Some(m) = sent.as_object_mut() {
        match stored.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    if comparable(&sent) == comparable(stored) {
        // A no-op: exactly what is stored.
        return respond(StatusCode::OK, stored);
    }
    let spec_changed = generation_relevant(&sent) != generation_relevant(stored);
    let rv = if dry_run {
        inner.rv + 1
    } else {
        inner.next_rv()
    };
    let generation =
        smeta.get("generation").and_then(Value::as_i64).unwrap_or(1) + i64::from(spec_changed);
    let meta = metadata_mut(&mut sent);
    meta.insert("resourceVersion".into(), rv.to_string().into());
    meta.insert("generation".into(), generation.into());
    if spec_changed && is_workload(&t.plural) {
        sent["status"] = rollout_status(&t.plural, &sent, false);
    }
    if !dry_run {
        if spec_changed {
            inner.polls.remove(&k);
        }
        inner.objects.insert(k, sent.clone());
    }
    respond(StatusCode::OK, &sent)
}

/// GET of one object; for a workload, counts a poll and rolls it out once
/// it has been polled enough (a status change bumps resourceVersion).
fn get_polled(inner: &mut Inner, t: &Target, name: &str) -> Response {
    let k = key(&t.gv, &t.plural, &t.ns, name);
    if !inner.objects.contains_key(&k) {
        return not_found(&t.plural, name);
    }
    if is_workload(&t.plural)
        && !inner
            .stuck
            .contains(&(t.plural.clone(), t.ns.clone(), name.to_owned()))
    {
        let polls = inner.polls.entry(k.clone()).or_insert(0);
        *polls += 1;
        let polls = *polls;
        if polls >= inner.ready_after_polls {
            let current = inner.objects[&k].clone();
            let ready = rollout_status(&t.plural, &current, true);
            if current.get("status") != Some(&ready) {
                let rv = inner.next_rv();
                let obj = inner.objects.get_mut(&k).unwrap();
                obj["status"] = ready;
                metadata_mut(obj).insert("resourceVersion".into(), rv.to_string().into());
            }
        }
    }
    respond(StatusCode::OK, &inner.objects[&k])
}

fn delete(inner: &mut Inner, t: &Target, name: &str, dry_run: bool) -> Response {
    let k = key(&t.gv, &t.plural, &t.ns, name);
    let Some(obj) = inner.objects.get(&k).cloned() else {
        return not_found(&t.plural, name);
    };
    if !dry_run {
        inner.objects.remove(&k);
        inner.polls.remove(&k);
        if t.gv == "v1" && t.plural == "namespaces" && t.ns.is_empty() {
            inner.objects.retain(|(_, _, ns, _), _| ns != name);
            inner.polls.retain(|(_, _, ns, _), _| ns != name);
        }
    }
    respond(StatusCode::OK, &obj)
}

/// The status of a workload for its current generation: rolled out
/// (`ready`) or with no updated, ready or available replica yet.
fn rollout_status(plural: &str, obj: &Value, ready: bool) -> Value {
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let name = str_at(obj, &["metadata", "name"]).unwrap_or("");
    let desired = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let n = if ready { desired } else { 0 };
    match plural {
        // A DaemonSet has no replicas: the mock pretends there is one node.
        "daemonsets" => json!({
            "observedGeneration": generation,
            "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1,
            "numberMisscheduled": 0,
            "updatedNumberScheduled": i64::from(ready),
            "numberReady": i64::from(ready),
            "numberAvailable": i64::from(ready),
            "numberUnavailable": i64::from(!ready),
        }),
        "statefulsets" => {
            let update_revision = format!("{name}-rev{generation}");
            let current_revision = if ready {
                update_revision.clone()
            } else {
                format!("{name}-rev{}", generation - 1)
            };
            json!({
                "observedGeneration": generation,
                "replicas": desired,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
                "currentReplicas": n,
                "currentRevision": current_revision,
                "updateRevision": update_revision,
            })
        }
        _ => {
            let (reason, message) = if ready {
                ("NewReplicaSetAvailable", "the mock rolled it out")
            } else {
                ("ReplicaSetUpdated", "the mock is rolling it out")
            };
            let available = if ready || desired == 0 {
                "True"
            } else {
                "False"
            };
            json!({
                "observedGeneration": generation,
                "replicas": desired,
                "updatedReplicas": n,
                "readyReplicas": n,
                "availableReplicas": n,
                "unavailableReplicas": desired - n,
                "conditions": [
                    {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable", "message": message},
                    {"type": "Progressing", "status": "True", "reason": reason, "message": message},
                ],
            })
        }
    }
}

/// The CN in the subject of the PEM certificate request in `spec.request`,
/// found by scanning the DER for the commonName attribute (2.5.4.3).
fn csr_common_name(csr: &Value) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = b64.decode(str_at(csr, &["spec", "request"])?).ok()?;
    let pem = String::from_utf8(pem).ok()?;
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = b64.decode(body.trim()).ok()?;
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(oid.len()).position(|w| w == oid)? + oid.len();
    // A string tag (UTF8String, PrintableString, ...) and a short length.
    let len = usize::from(*der.get(at + 1)?);
    let value = der.get(at + 2..at + 2 + len)?;
    String::from_utf8(value.to_vec()).ok()
}

// ----------------------------------------------------------- label selector

enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match self {
            Requirement::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            Requirement::Ne(k, v) => label(k).as_deref() != Some(v.as_str()),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        }
    }
}

fn parse_selector(s: Option<&str>) -> Result<Vec<Requirement>, String> {
    let s = s.unwrap_or("");
    if s.contains('(') {
        return Err(format!(
            "the kube mock does not support set-based label selectors: {s:?}"
        ));
    }
    s.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let req = if let Some(k) = r.strip_prefix('!') {
                Requirement::NotExists(k.trim().to_owned())
            } else if let Some((k, v)) = r.split_once("!=") {
                Requirement::Ne(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = r.split_once("==") {
                Requirement::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = r.split_once('=') {
                Requirement::Eq(k.trim().to_owned(), v.trim().to_owned())
            } else {
                Requirement::Exists(r.to_owned())
            };
            match &req {
                Requirement::Eq(k, _)
                | Requirement::Ne(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k)
                    if k.is_empty() || k.contains(char::is_whitespace) =>
                {
                    Err(format!("invalid label selector {r:?}"))
                }
                _ => Ok(req),
            }
        })
        .collect()
}
