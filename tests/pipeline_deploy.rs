//! Push-to-deploy, for real: a copy of this repository runs its shop on
//! the local target (Docker), phase 8 adds the `eshop` remote whose
//! post-receive hook runs the pipeline's stages, and `git push`es do the
//! rest. A commit that changes the landing page's title goes through every
//! stage and the running shop serves the new title; a commit that breaks a
//! unit test stops at the unit tests and the shop keeps the last good
//! commit. Slow (it builds the whole workspace in the hook's work tree):
//! one test, run once.

mod common;

use common::cli::Project;
use std::path::Path;
use std::process::Command;

/// The shop's own address, away from other tests' (127.0.0.1) and from
/// the smoke stage's throw-away shop (127.0.0.2).
const BIND: &str = "127.0.0.3";

fn git(dir: &Path, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=trainer",
            "-c",
            "user.email=trainer@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "git {args:?}:\n{text}");
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

/// Removes the test's shop (containers, volumes) when the test ends, also
/// when it fails half-way.
struct Cleanup<'a>(&'a Project);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.eshop(&["--yes", "destroy", "--purge-data"]);
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Slow (about 15 minutes on 2 cores: the hook builds, lints, tests and
/// packages the whole workspace in its own work tree, twice), so it is not
/// part of `.ci/run`'s time budget: run it with
/// `cargo test --test pipeline_deploy -- --ignored`.
#[test]
#[ignore = "slow end-to-end (~15 min): cargo test --test pipeline_deploy -- --ignored"]
fn a_push_ships_a_new_title_and_a_broken_unit_test_ships_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("shop");
    let src = env!("CARGO_MANIFEST_DIR");
    git(
        dir.path(),
        &["clone", "-q", src, repo.to_str().unwrap()],
        &[],
    );
    std::fs::write(
        repo.join("eshop.toml"),
        format!(
            "project = \"ptdtest\"\n[local]\nbind = \"{BIND}\"\ndemo_data = false\n[pipeline]\nenabled = true\npush_to_deploy = true\n"
        ),
    )
    .unwrap();
    git(&repo, &["add", "eshop.toml"], &[]);
    git(
        &repo,
        &["commit", "-q", "-m", "the shop's configuration"],
        &[],
    );
    let var = |k: &str| std::env::var(k).expect("run scripts/test-setup.sh");
    // What this machine can run (as scripts/up.sh picks): the local base
    // and Prometheus images, no Grafana.
    let env = [
        ("ESHOP_IMAGES_BASE_IMAGE", var("ESHOP_TEST_BASE_IMAGE")),
        (
            "ESHOP_MONITORING_PROMETHEUS_IMAGE",
            var("ESHOP_TEST_PROMETHEUS_IMAGE"),
        ),
        ("ESHOP_MONITORING_GRAFANA_IMAGE", "none".to_owned()),
    ];
    let p = Project::in_dir(tempfile::TempDir::new_in(dir.path()).unwrap())
        .env("ESHOP_CONFIG", repo.join("eshop.toml"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    // The shop as it is, then the remote and the pipeline's files,
    // committed as a team would.
    // Whatever happens below, the shop and its data go at the end.
    let _cleanup = Cleanup(&p);
    // `up` runs phase 8 too (enabled): the files and the remote.
    let out = p.ok(&["up"]);
    assert!(out.contains("git push eshop main"), "{out}");
    let before = landing_title();
    assert_eq!(before, "eshop · price calculator");
    let again = p.ok(&["phase", "pipeline", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    assert!(git(&repo, &["remote", "-v"], &[]).contains("ptdtest-deploy.git"));
    git(&repo, &["add", "-A"], &[]);
    git(&repo, &["commit", "-q", "-m", "the pipeline"], &[]);

    // A new title: every stage passes, the shop serves it.
    edit(
        &repo.join("services/pricing/templates/index.html"),
        "<title>eshop · price calculator</title>",
        "<title>eshop · price calculator, pushed</title>",
    );
    git(&repo, &["commit", "-q", "-am", "a new landing title"], &[]);
    let pushed = git(&repo, &["push", "eshop", "HEAD:main"], &env);
    for stage in [
        "Build",
        "Static analysis",
        "Unit tests",
        "Images",
        "Container smoke test",
        "Push",
        "Deploy",
        "Post-deploy check",
    ] {
        assert!(
            pushed.contains(&format!("eshop: stage {stage}:")),
            "{stage} did not run:\n{pushed}"
        );
    }
    assert!(pushed.contains(": passed"), "{pushed}");
    assert_eq!(landing_title(), "eshop · price calculator, pushed");

    // A broken unit test: the run stops there, nothing new ships.
    edit(
        &repo.join("services/pricing/src/quote.rs"),
        r#"availability(4, 1, 5).message, "Only 4 left""#,
        r#"availability(4, 1, 5).message, "Only 5 left""#,
    );
    edit(
        &repo.join("services/pricing/templates/index.html"),
        "price calculator, pushed",
        "price calculator, broken",
    );
    git(&repo, &["commit", "-q", "-am", "a broken unit test"], &[]);
    let pushed = git(&repo, &["push", "eshop", "HEAD:main"], &env);
    assert!(pushed.contains("failed at unit-tests"), "{pushed}");
    assert!(!pushed.contains("eshop: stage Images:"), "{pushed}");
    assert_eq!(landing_title(), "eshop · price calculator, pushed");

    // Status shows both runs, newest first; each has its log.
    let status = p.eshop(&["phase", "pipeline", "status"]);
    let text = common::cli::text(&status);
    let failed = text.find("failed at unit-tests").expect("the failed run");
    let passed = text.find("passed (8 stage(s)").expect("the passed run");
    assert!(failed < passed, "{text}");
    let runs = repo.join(".eshop/ptdtest-deploy/runs");
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
    assert!(!repo.join(".eshop/ptdtest-deploy.git").exists());
    p.ok(&["--yes", "destroy", "--purge-data"]);
}
