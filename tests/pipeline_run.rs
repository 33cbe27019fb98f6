//! Phase 8's pipeline, run for real. A copy of this repository runs its
//! shop on the local target (Docker, on 127.0.0.3), then the same stages
//! run three ways, each shipping a new landing-page title that the
//! running shop must serve afterwards:
//!
//! 1. `git push` to push-to-deploy's remote (the hook runs the stages in
//!    its own work tree);
//! 2. the rendered `.gitlab-ci.yml` under gitlab-ci-local (shell
//!    executor, in the copy itself);
//! 3. the rendered GitHub workflow under act in host mode: a self-hosted
//!    runner on this machine, whose checkout is act's copy of the work
//!    tree while the shop's configuration and state stay outside it
//!    (`ESHOP_CONFIG`);
//!
//! and last a push that breaks a unit test stops at the unit tests and
//! ships nothing.
//!
//! The stages compile the workspace (cargo's dev profile: the copy says
//! `build.profile = "dev"`, so the images pack what the build stage
//! compiled) into one target dir the three share, under this build's
//! target dir, so dependencies compile once. Still the slowest test:
//! one test, run once.

mod common;

use common::cli::Project;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The shop's own address, away from other tests' (127.0.0.1) and from
/// the smoke stage's throw-away shop (127.0.0.2).
const BIND: &str = "127.0.0.3";
const PROJECT: &str = "pipe";
/// The test registry (scripts/test-setup.sh), a namespace of this test's.
const REGISTRY: &str = "127.0.0.1:5000/eshop-pipeline-test";
const TITLE: &str = "eshop · price calculator";

/// The model's stages: job / step ids and titles, in order.
const STAGES: [(&str, &str); 8] = [
    ("build", "Build"),
    ("analysis", "Static analysis"),
    ("unit-tests", "Unit tests"),
    ("images", "Images"),
    ("smoke", "Container smoke test"),
    ("push", "Push"),
    ("deploy", "Deploy"),
    ("verify", "Post-deploy check"),
];

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run scripts/test-setup.sh"))
}

/// Runs `cmd`; its success, its output (both streams), and how long it
/// took on stderr (the figures in the README come from here).
fn run(what: &str, cmd: &mut Command) -> (bool, String) {
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    eprintln!("{what}: {:.0} s", t.elapsed().as_secs_f64());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn git(dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let (ok, text) = run(
        &format!("git {}", args[0]),
        Command::new("git")
            .args([
                "-c",
                "user.name=trainer",
                "-c",
                "user.email=trainer@example.com",
            ])
            .args(args)
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    assert!(ok, "git {args:?}:\n{text}");
    text
}

fn landing_title() -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &format!("http://{BIND}:8080/")])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    page.split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or_default()
        .to_owned()
}

/// A commit that gives the landing page `title` (the pricing service's
/// template: a change the whole pipeline must carry to the running shop).
fn retitle(repo: &Path, title: &str) {
    let page = repo.join("services/pricing/templates/index.html");
    let text = std::fs::read_to_string(&page).unwrap();
    let (head, rest) = text.split_once("<title>").expect("a title");
    let (_, tail) = rest.split_once("</title>").expect("a closed title");
    std::fs::write(&page, format!("{head}<title>{title}</title>{tail}")).unwrap();
    git(
        repo,
        &["commit", "-q", "-am", &format!("title: {title}")],
        &[],
    );
}

/// What phase 2 made current for pricing (`repo:tag@digest`), from the
/// shop's state file.
fn current_pricing(repo: &Path) -> String {
    let state: Value = serde_json::from_slice(
        &std::fs::read(repo.join(format!(".eshop/{PROJECT}-local.json"))).unwrap(),
    )
    .unwrap();
    state["phases"]["images"]["current"]["pricing"]
        .as_str()
        .unwrap_or_else(|| panic!("no current pricing image in {state}"))
        .to_owned()
}

/// Whether the registry holds the manifest `repo:tag@digest` names.
fn in_registry(reference: &str) -> bool {
    let (name_tag, digest) = reference.split_once('@').expect("pinned by digest");
    let name = name_tag.rsplit_once(':').unwrap().0;
    let path = name
        .strip_prefix("127.0.0.1:5000/")
        .expect("in the test registry");
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I"])
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json"])
        .arg(format!("http://127.0.0.1:5000/v2/{path}/manifests/{digest}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout) == "200"
}

/// Removes the test's shop (containers, volumes) when the test ends, also
/// when it fails half-way.
struct Cleanup<'a>(&'a Project);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.eshop(&["--yes", "destroy", "--purge-data"]);
    }
}

/// One target dir for every cargo the pipelines run, kept between runs of
/// this test (under this build's own target dir, which `cargo clean`
/// empties), apart from the one the tests themselves are built in: the
/// copy's crates have the same names and would overwrite them.
fn pipeline_target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipeline-target");
    if !dir.join("debug").exists() {
        seed(&dir);
    }
    dir
}

/// A first pipeline target dir starts with the dependencies this very
/// build compiled (tests and builds compile them with the same features:
/// tests/features.rs), so the pipelines compile only the workspace's own
/// crates, as a CI system's restored cache would have it. Libraries are
/// hard links (no disk, no time: rustc replaces an artifact by renaming a
/// new file over it, so a link is never written through); cargo's own
/// records (.fingerprint, build scripts' output), which cargo rewrites in
/// place, are copies.
fn seed(dir: &Path) {
    let from = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("tmp/ is in the target dir")
        .join("debug");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let own: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().replace('-', "_"))
        .collect();
    // `name-hash…` (package names with `-` in cargo's records, `_` in
    // file names): the workspace's own crates are left out.
    let theirs = |file: &str| {
        let stem = file.strip_prefix("lib").unwrap_or(file).replace('-', "_");
        !own.iter().any(|o| stem.starts_with(&format!("{o}_")))
    };
    let to = dir.join("debug");
    std::fs::create_dir_all(to.join("deps")).unwrap();
    for e in std::fs::read_dir(from.join("deps")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let lib =
            name.starts_with("lib") && [".rlib", ".rmeta", ".so"].iter().any(|x| name.ends_with(x));
        if lib && theirs(&name) {
            std::fs::hard_link(e.path(), to.join("deps").join(&name)).unwrap();
        }
    }
    for sub in [".fingerprint", "build"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if theirs(&name) {
                let ok = Command::new("cp")
                    .args(["-a"])
                    .arg(e.path())
                    .arg(to.join(sub))
                    .status()
                    .unwrap();
                assert!(ok.success(), "copying {}", e.path().display());
            }
        }
    }
}

fn cargo_home() -> String {
    std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").expect("a home folder")))
}

#[test]
fn gitlab_github_and_a_push_each_ship_a_change_through_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("shop");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            env!("CARGO_MANIFEST_DIR"),
            repo.to_str().unwrap(),
        ],
        &[],
    );
    // gitlab-ci-local derives the project's path from `origin`.
    git(
        &repo,
        &[
            "remote",
            "set-url",
            "origin",
            "https://git.example.com/shop/eshop.git",
        ],
        &[],
    );
    std::fs::write(
        repo.join("eshop.toml"),
        format!(
            "project = \"{PROJECT}\"\n[build]\nprofile = \"dev\"\n[images]\nregistry = \"{REGISTRY}\"\n[local]\nbind = \"{BIND}\"\ndemo_data = false\n[pipeline]\nenabled = true\npush_to_deploy = true\n"
        ),
    )
    .unwrap();
    git(&repo, &["add", "eshop.toml"], &[]);
    git(
        &repo,
        &["commit", "-q", "-m", "the shop's configuration"],
        &[],
    );
    let target = pipeline_target_dir().display().to_string();
    let var = |k: &str| std::env::var(k).expect("run scripts/test-setup.sh");
    // What this machine can run (as scripts/up.sh picks): the local base
    // and Prometheus images, no Grafana; and the pipelines' target dir.
    let env = [
        ("ESHOP_IMAGES_BASE_IMAGE", var("ESHOP_TEST_BASE_IMAGE")),
        (
            "ESHOP_MONITORING_PROMETHEUS_IMAGE",
            var("ESHOP_TEST_PROMETHEUS_IMAGE"),
        ),
        ("ESHOP_MONITORING_GRAFANA_IMAGE", "none".to_owned()),
        ("CARGO_TARGET_DIR", target.clone()),
    ];
    let p = Project::in_dir(tempfile::TempDir::new_in(dir.path()).unwrap())
        .env("ESHOP_CONFIG", repo.join("eshop.toml"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    // Whatever happens below, the shop and its data go at the end.
    let _cleanup = Cleanup(&p);

    // The shop as it is; `up` runs phase 8 too (enabled): the pipeline's
    // files and the push-to-deploy remote, committed as a team would.
    let t = Instant::now();
    let out = p.ok(&["up"]);
    eprintln!("up: {:.0} s", t.elapsed().as_secs_f64());
    assert!(out.contains("git push eshop main"), "{out}");
    assert_eq!(landing_title(), TITLE);
    let first = current_pricing(&repo);
    let again = p.ok(&["phase", "pipeline", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    git(&repo, &["add", "-A"], &[]);
    git(&repo, &["commit", "-q", "-m", "the pipeline"], &[]);

    // 1. Push-to-deploy: a new title goes through every stage, in the
    // hook's own work tree (its first checkout: everything compiles).
    retitle(&repo, "eshop · pushed");
    let pushed = git(&repo, &["push", "eshop", "HEAD:main"], &env);
    for (_, title) in STAGES {
        assert!(
            pushed.contains(&format!("eshop: stage {title}:")),
            "{title} did not run:\n{pushed}"
        );
    }
    assert!(pushed.contains(": passed"), "{pushed}");
    assert_eq!(landing_title(), "eshop · pushed");

    let pushed_image = current_pricing(&repo);
    assert_ne!(pushed_image, first, "the new title made no new image");

    // 2. GitLab CI: every job passes, in the copy itself (as a shell
    // runner does), and the running shop serves the new title. The copy's
    // files are older than what the hook just compiled from the same
    // sources, so cargo compiles only what the new title changed (the
    // pricing service), as in a working copy.
    retitle(&repo, "eshop · shipped by GitLab");
    let (ok, out) = run(
        "gitlab-ci-local",
        Command::new(tool("ESHOP_TEST_GITLAB_CI_LOCAL"))
            .current_dir(&repo)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            // The runner's own cargo home (the file's default, a cache in
            // the project folder, would download every crate again).
            .args(["--variable", &format!("CARGO_HOME={}", cargo_home())])
            .args(["--variable", &format!("CARGO_TARGET_DIR={target}")]),
    );
    assert!(ok, "gitlab-ci-local failed:\n{out}");
    for (id, _) in STAGES {
        assert!(
            out.lines().any(|l| l.trim() == format!("PASS  {id}")),
            "job {id} did not pass:\n{out}"
        );
    }
    assert!(out.contains("clippy: 0 message(s)"), "{out}");
    assert!(
        out.contains("Sonar: skipped: no Sonar server configured"),
        "{out}"
    );
    assert!(
        out.contains("JUnit report in target/eshop-junit.xml"),
        "{out}"
    );
    let junit = std::fs::read_to_string(repo.join("target/eshop-junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite name=\"pricing::lib\""),
        "{junit}"
    );
    assert!(!junit.contains("<failure"), "{junit}");
    let shipped = current_pricing(&repo);
    assert_ne!(shipped, first, "the new title made no new image");
    assert_ne!(shipped, pushed_image, "the new title made no new image");
    assert!(in_registry(&shipped), "{shipped} is not in the registry");
    assert_eq!(landing_title(), "eshop · shipped by GitLab");

    // 3. GitHub Actions: act runs the workflow on this machine (host
    // mode: a self-hosted runner), the shop's configuration and state
    // outside its checkout.
    retitle(&repo, "eshop · shipped by GitHub Actions");
    let act_env = |k: &str, v: &str| ["--env".to_owned(), format!("{k}={v}")];
    let (ok, out) = run(
        "act",
        Command::new(tool("ESHOP_TEST_ACT"))
            .current_dir(&repo)
            .args(["push", "-P", "ubuntu-latest=-self-hosted"])
            .args(act_env(
                "ESHOP_CONFIG",
                &repo.join("eshop.toml").display().to_string(),
            ))
            .args(env.iter().flat_map(|(k, v)| act_env(k, v))),
    );
    assert!(ok, "act failed:\n{out}");
    for (_, title) in STAGES {
        assert!(
            out.contains(&format!("Success - Main {title}")),
            "step {title} did not pass:\n{out}"
        );
    }
    assert_ne!(current_pricing(&repo), shipped);
    assert!(in_registry(&current_pricing(&repo)));
    assert_eq!(landing_title(), "eshop · shipped by GitHub Actions");

    // A broken unit test: the run stops there, nothing new ships.
    let quote = repo.join("services/pricing/src/quote.rs");
    let text = std::fs::read_to_string(&quote).unwrap();
    let good = r#"availability(4, 1, 5).message, "Only 4 left""#;
    assert!(text.contains(good), "{} changed", quote.display());
    std::fs::write(
        &quote,
        text.replacen(good, r#"availability(4, 1, 5).message, "Only 5 left""#, 1),
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "a broken unit test"], &[]);
    retitle(&repo, "eshop · broken");
    let (ok, out) = run(
        "git push (broken)",
        Command::new("git")
            .args(["push", "eshop", "HEAD:main"])
            .current_dir(&repo)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str()))),
    );
    // The hook runs after the push: git accepts the commits and reports
    // the hook's failure.
    assert!(out.contains("failed at unit-tests"), "{ok} {out}");
    assert!(!out.contains("eshop: stage Images:"), "{out}");
    assert_eq!(landing_title(), "eshop · shipped by GitHub Actions");

    // Status shows both runs, newest first; each has its log.
    let status = common::cli::text(&p.eshop(&["phase", "pipeline", "status"]));
    let failed = status.find("failed at unit-tests").expect("the failed run");
    let passed = status.find("passed (8 stage(s)").expect("the passed run");
    assert!(failed < passed, "{status}");
    let runs = repo.join(format!(".eshop/{PROJECT}-deploy/runs"));
    let logs = std::fs::read_dir(&runs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert_eq!(logs, 2);

    // Destroy: the remote and the repository go, then the shop.
    p.ok(&["phase", "pipeline", "destroy"]);
    assert!(!git(&repo, &["remote"], &[]).contains("eshop"));
    assert!(!repo.join(format!(".eshop/{PROJECT}-deploy.git")).exists());
    p.ok(&["--yes", "destroy", "--purge-data"]);
}
