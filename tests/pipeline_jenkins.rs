//! Phase 8's Jenkins job, kept through Jenkins's REST API, against a
//! recording STAND-IN for that API.
//!
//! **No Jenkins can run here, and this stand-in is not Jenkins.** It is a
//! small in-memory axum server that answers the calls eshop makes, the way
//! Jenkins documents and answers them:
//!
//! * every request needs basic auth (user `ci`, API token [`TOKEN`]): 401
//!   otherwise;
//! * `GET /crumbIssuer/api/json` hands out a crumb and sets a session
//!   cookie; every POST must carry both (crumb header and cookie), else 403,
//!   as with Jenkins's CSRF protection (crumbs are bound to the session);
//! * `GET /job/NAME/config.xml` returns the stored configuration with
//!   Jenkins's own `<?xml version='1.1' encoding='UTF-8'?>` in front; `POST
//!   /createItem?name=NAME` (Content-Type application/xml) creates, `POST
//!   /job/NAME/config.xml` replaces, `POST /job/NAME/doDelete` deletes and
//!   redirects to the parent; `GET /job/NAME/lastBuild/api/json` answers
//!   404 until a test sets a result; `GET /api/json?tree=jobs[name,description]`
//!   lists the jobs with the text of their `<description>` (XML entities
//!   undone; other `tree` values are refused).
//!
//! What it does not do: it neither parses nor validates the XML, keeps no
//! plugin versions, rewrites nothing else, runs no builds, and knows no
//! folders, views or permissions beyond the one user. Every request is
//! recorded (method, path with query, whether crumb and cookie were right,
//! body) so the tests can count POSTs.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::cli::Project;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const USER: &str = "ci";
const TOKEN: &str = "t0k3n-secret-value";
const CRUMB_FIELD: &str = "Jenkins-Crumb";
const CRUMB: &str = "5f0c2a9e77d1crumb";
const SESSION: &str = "JSESSIONID.4a1b2c3d=node0standin";
const DECLARATION: &str = "<?xml version='1.1' encoding='UTF-8'?>";
const REPO: &str = "https://git.example.com/shop/eshop.git";
const JOB: &str = "eshop-shop";

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    /// Path and query, as sent.
    path: String,
    crumb_ok: bool,
    cookie_ok: bool,
    body: String,
}

#[derive(Default)]
struct Inner {
    /// Job name → config.xml as posted (without a declaration).
    jobs: BTreeMap<String, String>,
    /// Job name → the last build's result.
    last_build: BTreeMap<String, String>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Inner>>;

/// The stand-in, on a free loopback port, served by its own runtime
/// (dropped with it).
struct StandIn {
    port: u16,
    inner: Shared,
    _rt: tokio::runtime::Runtime,
}

impl StandIn {
    fn start() -> StandIn {
        let inner = Shared::default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        StandIn {
            port,
            inner,
            _rt: rt,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A project whose phase 8 keeps its job on this stand-in, with the
    /// right credentials in its environment.
    fn project(&self, pipeline: &str) -> Project {
        Project::with_config(&self.config(pipeline))
            .env("ESHOP_JENKINS_USER", USER)
            .env("ESHOP_JENKINS_TOKEN", TOKEN)
    }

    fn config(&self, pipeline: &str) -> String {
        format!(
            "project = \"shop\"\n[pipeline]\nenabled = true\njenkins_url = \"http://127.0.0.1:{}\"\n{pipeline}",
            self.port
        )
    }

    fn posts(&self) -> Vec<Recorded> {
        let l = self.lock();
        l.requests
            .iter()
            .filter(|r| r.method == "POST")
            .cloned()
            .collect()
    }

    /// The one POST since [`Self::clear`]: to `path`, with crumb and cookie.
    fn only_post(&self, path: &str) -> Recorded {
        let posts = self.posts();
        assert_eq!(posts.len(), 1, "{posts:#?}");
        assert_eq!(posts[0].path, path);
        assert!(posts[0].crumb_ok && posts[0].cookie_ok, "{:?}", posts[0]);
        posts[0].clone()
    }

    fn clear(&self) {
        self.lock().requests.clear();
    }

    fn job(&self, name: &str) -> Option<String> {
        self.lock().jobs.get(name).cloned()
    }
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let get = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"));
    let authed = get(header::AUTHORIZATION) == format!("Basic {basic}");
    let crumb_ok = headers.get(CRUMB_FIELD).is_some_and(|v| v == CRUMB);
    let cookie_ok = get(header::COOKIE).split(';').any(|c| c.trim() == SESSION);
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let mut inner = s.lock().unwrap_or_else(|e| e.into_inner());
    inner.requests.push(Recorded {
        method: method.to_string(),
        path: uri.to_string(),
        crumb_ok,
        cookie_ok,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if !authed {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"Jenkins\"")],
            "Invalid password/token for user",
        )
            .into_response();
    }
    if method == Method::POST && !(crumb_ok && cookie_ok) {
        return (
            StatusCode::FORBIDDEN,
            "No valid crumb was included in the request",
        )
            .into_response();
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["crumbIssuer", "api", "json"]) => (
            [(header::SET_COOKIE, format!("{SESSION}; Path=/; HttpOnly"))],
            axum::Json(serde_json::json!({
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": CRUMB,
                "crumbRequestField": CRUMB_FIELD,
            })),
        )
            .into_response(),
        ("GET", ["api", "json"]) => {
            let q = query.replace("%5B", "[").replace("%5D", "]");
            if q != "tree=jobs[name,description]" {
                return (StatusCode::BAD_REQUEST, format!("stand-in: tree {q:?}")).into_response();
            }
            let jobs: Vec<_> = inner
                .jobs
                .iter()
                .map(|(name, config)| {
                    let d = config
                        .split_once("<description>")
                        .and_then(|(_, rest)| rest.split_once("</description>"))
                        .map(|(d, _)| {
                            d.replace("&lt;", "<")
                                .replace("&gt;", ">")
                                .replace("&quot;", "\"")
                                .replace("&apos;", "'")
                                .replace("&amp;", "&")
                        });
                    serde_json::json!({"_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                                       "name": name, "description": d})
                })
                .collect();
            axum::Json(serde_json::json!({"_class": "hudson.model.Hudson", "jobs": jobs}))
                .into_response()
        }
        ("POST", ["createItem"]) => {
            let Some(name) = query.strip_prefix("name=") else {
                return (
                    StatusCode::BAD_REQUEST,
                    "Query parameter 'name' is required",
                )
                    .into_response();
            };
            if get(header::CONTENT_TYPE) != "application/xml" {
                return (StatusCode::BAD_REQUEST, "expected an XML body").into_response();
            }
            if inner.jobs.contains_key(name) {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("A job already exists with the name '{name}'"),
                )
                    .into_response();
            }
            let config = String::from_utf8_lossy(&body).into_owned();
            inner.jobs.insert(name.to_owned(), config);
            StatusCode::OK.into_response()
        }
        (m, ["job", name, rest @ ..]) => {
            let name = name.to_string();
            if !inner.jobs.contains_key(&name) {
                return StatusCode::NOT_FOUND.into_response();
            }
            match (m, rest) {
                ("GET", ["config.xml"]) => (
                    [(header::CONTENT_TYPE, "application/xml")],
                    format!("{DECLARATION}\n{}", inner.jobs[&name]),
                )
                    .into_response(),
                ("POST", ["config.xml"]) => {
                    let config = String::from_utf8_lossy(&body).into_owned();
                    inner.jobs.insert(name, config);
                    StatusCode::OK.into_response()
                }
                ("POST", ["doDelete"]) => {
                    inner.jobs.remove(&name);
                    (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response()
                }
                ("GET", ["lastBuild", "api", "json"]) => match inner.last_build.get(&name) {
                    Some(r) => axum::Json(serde_json::json!({"result": r})).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                },
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Every file under the project's `.eshop/`, as text.
fn state_files(p: &Project) -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&p.dir.path().join(".eshop"), &mut out);
    out
}

#[test]
fn stand_in_jenkins_apply_creates_the_job_once_follows_the_branch_and_destroy_deletes_it() {
    let j = StandIn::start();
    let p = j.project(&format!("repository_url = \"{REPO}\"\n"));

    let plan = p.ok(&["phase", "pipeline", "plan"]);
    assert!(plan.contains(&format!("+ jenkins job {JOB}")), "{plan}");
    assert!(j.posts().is_empty(), "plan posts nothing");

    let out = p.ok(&["phase", "pipeline", "apply"]);
    assert!(out.contains("5 change(s)"), "four files and the job: {out}");
    assert!(out.contains(&format!("created jenkins job {JOB}")), "{out}");
    let create = j.only_post(&format!("/createItem?name={JOB}"));
    for want in [
        "<flow-definition plugin=\"workflow-job\">",
        &format!("<url>{REPO}</url>"),
        "<name>*/main</name>",
        "<scriptPath>Jenkinsfile</scriptPath>",
        "<lightweight>true</lightweight>",
        "<spec>H/2 * * * *</spec>",
        "<disabled>false</disabled>",
        "Written by eshop (phase 8 pipeline, project shop)",
    ] {
        assert!(
            create.body.contains(want),
            "{want} missing:\n{}",
            create.body
        );
    }
    // The Jenkinsfile polls on the same schedule as the job.
    let jf = std::fs::read_to_string(p.dir.path().join("Jenkinsfile")).unwrap();
    assert!(jf.contains("pollSCM('H/2 * * * *')"), "{jf}");

    // Jenkins's copy (with its declaration in front) equals the model: no POST.
    j.clear();
    let again = p.ok(&["phase", "pipeline", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    assert!(j.posts().is_empty(), "{:#?}", j.posts());

    let status = p.ok(&["phase", "pipeline", "status"]);
    assert!(
        status.contains(&format!("jenkins job {JOB}"))
            && status.contains("up to date; no build yet"),
        "{status}"
    );
    j.lock().last_build.insert(JOB.into(), "SUCCESS".into());
    let status = p.ok(&["phase", "pipeline", "status"]);
    assert!(status.contains("last build SUCCESS"), "{status}");

    // Another branch: plan shows the job's diff, apply posts one update.
    p.write_config(&j.config(&format!(
        "repository_url = \"{REPO}\"\nbranch = \"trunk\"\n"
    )));
    let plan = p.ok(&["phase", "pipeline", "plan"]);
    let diff_line = |sign: &str, branch: &str| {
        plan.lines().any(|l| {
            l.contains(&format!("jenkins job {JOB}: {sign} "))
                && l.ends_with(&format!("<name>*/{branch}</name>"))
        })
    };
    assert!(diff_line("+", "trunk") && diff_line("-", "main"), "{plan}");
    assert!(plan.contains(&format!("~ jenkins job {JOB}")), "{plan}");
    j.clear();
    let out = p.ok(&["phase", "pipeline", "apply"]);
    assert!(out.contains(&format!("updated jenkins job {JOB}")), "{out}");
    let update = j.only_post(&format!("/job/{JOB}/config.xml"));
    assert!(update.body.contains("<name>*/trunk</name>"));
    assert!(j.job(JOB).unwrap().contains("*/trunk"));

    // destroy: the job goes (Jenkins answers with a redirect), and a second
    // destroy finds nothing to do.
    j.clear();
    let out = p.ok(&["phase", "pipeline", "destroy"]);
    assert!(out.contains(&format!("deleted jenkins job {JOB}")), "{out}");
    j.only_post(&format!("/job/{JOB}/doDelete"));
    assert!(j.job(JOB).is_none());
    j.clear();
    let out = p.ok(&["phase", "pipeline", "destroy"]);
    assert!(out.contains("0 object(s) removed"), "{out}");
    assert!(j.posts().is_empty());
    let out = p.eshop(&["phase", "pipeline", "status"]);
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("jenkins job {JOB}")) && text.contains("absent"),
        "{text}"
    );
}

/// pipeline.jenkins_job renamed: apply creates the job under the new name
/// and deletes eshop's job under the old one (found by its marker, no
/// state needed); a job without the marker is never touched; destroy takes
/// an old-named job of eshop's with the current one.
#[test]
fn stand_in_jenkins_a_renamed_job_replaces_eshops_old_one_and_only_it() {
    let j = StandIn::start();
    let p = j.project(&format!("repository_url = \"{REPO}\"\n"));
    p.ok(&["phase", "pipeline", "apply"]);
    j.lock().jobs.insert(
        "team-build".into(),
        "<flow-definition><description>theirs</description></flow-definition>".into(),
    );

    p.write_config(&j.config(&format!(
        "repository_url = \"{REPO}\"\njenkins_job = \"shop-ci\"\n"
    )));
    let plan = p.ok(&["phase", "pipeline", "plan"]);
    assert!(plan.contains("+ jenkins job shop-ci"), "{plan}");
    assert!(plan.contains(&format!("- jenkins job {JOB}")), "{plan}");
    assert!(!plan.contains("team-build"), "{plan}");
    j.clear();
    let out = p.ok(&["phase", "pipeline", "apply"]);
    assert!(out.contains(&format!("deleted jenkins job {JOB}")), "{out}");
    let paths: Vec<String> = j.posts().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/createItem?name=shop-ci".to_owned(),
            format!("/job/{JOB}/doDelete")
        ],
        "the new job first, then the old one goes"
    );
    assert!(j.job(JOB).is_none() && j.job("shop-ci").is_some());
    assert!(j.job("team-build").is_some());
    j.clear();
    assert!(p
        .ok(&["phase", "pipeline", "apply"])
        .contains("0 change(s)"));
    assert!(j.posts().is_empty(), "{:#?}", j.posts());

    // An old-named job of eshop's still there (a rename whose apply died
    // before the delete): destroy takes it with the current one.
    let ours = j.job("shop-ci").unwrap();
    j.lock().jobs.insert(JOB.into(), ours);
    let out = p.ok(&["phase", "pipeline", "destroy"]);
    assert!(
        out.contains(&format!("deleted jenkins job {JOB}"))
            && out.contains("deleted jenkins job shop-ci"),
        "{out}"
    );
    assert!(j.job("shop-ci").is_none());
    assert_eq!(j.lock().jobs.keys().collect::<Vec<_>>(), ["team-build"]);
}

#[test]
fn stand_in_jenkins_a_job_eshop_did_not_create_is_refused_and_kept() {
    let j = StandIn::start();
    let theirs = "<flow-definition plugin=\"workflow-job\">\n  <description>The team's own build</description>\n</flow-definition>\n";
    j.lock().jobs.insert(JOB.into(), theirs.into());
    let p = j.project(&format!("repository_url = \"{REPO}\"\n"));

    let err = p.fails(&["phase", "pipeline", "apply"], 1);
    assert!(
        err.contains(&format!(
            "job {JOB} exists on Jenkins and eshop did not create it"
        )),
        "{err}"
    );
    assert!(
        err.contains("pipeline.jenkins_job"),
        "says the way out: {err}"
    );
    assert!(j.posts().is_empty(), "{:#?}", j.posts());
    assert!(
        !p.dir.path().join("Jenkinsfile").exists(),
        "refused before any file is written"
    );
    let err = p.fails(&["phase", "pipeline", "plan"], 1);
    assert!(err.contains("eshop did not create it"), "{err}");

    let out = p.ok(&["phase", "pipeline", "destroy"]);
    assert!(out.contains(&format!("kept jenkins job {JOB}")), "{out}");
    assert!(j.posts().is_empty());
    assert_eq!(j.job(JOB).as_deref(), Some(theirs));

    // Another job name is the way out.
    p.write_config(&j.config(&format!(
        "repository_url = \"{REPO}\"\njenkins_job = \"shop-deploy\"\n"
    )));
    p.ok(&["phase", "pipeline", "apply"]);
    assert!(j.job("shop-deploy").is_some());
    assert_eq!(j.job(JOB).as_deref(), Some(theirs));
}

#[test]
fn stand_in_jenkins_a_wrong_token_is_a_clear_error_naming_the_variable() {
    let j = StandIn::start();
    let wrong = "not-the-t0k3n-value";
    let p = Project::with_config(&j.config(&format!("repository_url = \"{REPO}\"\n")))
        .env("ESHOP_JENKINS_USER", USER)
        .env("ESHOP_JENKINS_TOKEN", wrong);
    for cmd in ["plan", "apply"] {
        let out = p.eshop(&["phase", "pipeline", cmd]);
        let text = common::cli::text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {text}");
        assert!(text.contains("Jenkins refused the user's token"), "{text}");
        assert!(text.contains("ESHOP_JENKINS_TOKEN"), "{text}");
        assert!(!text.contains(wrong), "the value is never printed: {text}");
    }
    let out = p.eshop(&["phase", "pipeline", "status"]);
    let text = common::cli::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("ESHOP_JENKINS_TOKEN") && !text.contains(wrong),
        "{text}"
    );
    assert!(j.posts().is_empty());
    assert!(j.job(JOB).is_none());
}

#[test]
fn stand_in_jenkins_the_token_never_reaches_output_or_state() {
    let j = StandIn::start();
    let p = j.project(&format!("repository_url = \"{REPO}\"\n"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{TOKEN}"));
    let mut printed = String::new();
    for args in [
        &["-vv", "phase", "pipeline", "plan"][..],
        &["-vv", "phase", "pipeline", "apply"],
        &["--output", "json", "phase", "pipeline", "apply"],
        &["-vv", "phase", "pipeline", "status"],
        &["-vv", "phase", "pipeline", "destroy"],
    ] {
        printed.push_str(&p.ok(args));
    }
    assert!(printed.contains(&format!("jenkins job {JOB}")), "{printed}");
    assert!(
        !printed.contains(TOKEN) && !printed.contains(&basic),
        "{printed}"
    );
    let files = state_files(&p);
    assert!(
        !files.is_empty(),
        "eshop keeps its state and log under .eshop/"
    );
    for (file, text) in files {
        assert!(!text.contains(TOKEN) && !text.contains(&basic), "{file}");
    }
    // Nor the job: Jenkins's own copy holds no credential.
    let bodies: String = j.lock().requests.iter().map(|r| r.body.clone()).collect();
    assert!(bodies.contains("<flow-definition") && !bodies.contains(TOKEN));
}

#[test]
fn stand_in_jenkins_values_are_xml_escaped_in_the_job() {
    let j = StandIn::start();
    let p = j.project(
        "repository_url = \"https://git.example.com/shop&co/eshop.git\"\nbranch = \"release/1.2\"\n",
    );
    p.ok(&["phase", "pipeline", "apply"]);
    let body = &j.only_post(&format!("/createItem?name={JOB}")).body;
    assert!(
        body.contains("<url>https://git.example.com/shop&amp;co/eshop.git</url>"),
        "{body}"
    );
    assert!(!body.contains("shop&co"), "{body}");
    assert!(body.contains("<name>*/release/1.2</name>"), "{body}");
    // Escaped the same way when read back: still no change.
    j.clear();
    assert!(p
        .ok(&["phase", "pipeline", "apply"])
        .contains("0 change(s)"));
    assert!(j.posts().is_empty());
}
