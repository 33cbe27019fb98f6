//! Phase 8: the pipeline files in a repository (written only when they
//! change, a foreign file never touched, destroy removing only eshop's),
//! and each file read by the real tool that runs it: gitlab-ci-local
//! lists the GitLab jobs, act lists and validates the GitHub workflow,
//! Debian's Groovy parses the Jenkinsfile (no Jenkins can run here), and a
//! structural check holds the Jenkinsfile to the model.

mod common;

use common::cli::Project;
use std::path::Path;
use std::process::Command;

const STAGES: [&str; 8] = [
    "build",
    "analysis",
    "unit-tests",
    "images",
    "smoke",
    "push",
    "deploy",
    "verify",
];

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run scripts/test-setup.sh"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A git repository (with an `origin`, which gitlab-ci-local needs)
/// holding `files`.
fn repo(dir: &Path, files: &[(&str, String)]) {
    let git = |args: &[&str]| {
        run(Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://git.example.com/shop/eshop.git",
    ]);
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "pipeline"]);
}

fn rendered(p: &Project) -> Vec<(&'static str, String)> {
    let out = p.dir.path().join("rendered");
    p.ok(&["render", "pipeline", "--out", out.to_str().unwrap()]);
    [
        "Jenkinsfile",
        ".gitlab-ci.yml",
        ".github/workflows/eshop.yml",
        "sonar-project.properties",
    ]
    .into_iter()
    .map(|f| (f, std::fs::read_to_string(out.join(f)).unwrap()))
    .collect()
}

#[test]
fn apply_writes_the_files_once_and_destroy_takes_only_its_own() {
    let p = Project::with_config("project = \"shop\"\n[pipeline]\nenabled = true\n");
    let repo = p.dir.path();
    let foreign = repo.join("sonar-project.properties");
    std::fs::write(&foreign, "sonar.projectKey=theirs\n").unwrap();
    // Someone else's file of the same name: refused before anything is written.
    let err = p.fails(&["phase", "pipeline", "apply"], 1);
    assert!(
        err.contains("sonar-project.properties exists and eshop did not write it"),
        "{err}"
    );
    assert!(!repo.join("Jenkinsfile").exists(), "nothing half-done");
    std::fs::remove_file(&foreign).unwrap();

    let out = p.ok(&["phase", "pipeline", "apply"]);
    assert!(out.contains("4 change(s)"), "{out}");
    for f in [
        "Jenkinsfile",
        ".gitlab-ci.yml",
        ".github/workflows/eshop.yml",
    ] {
        assert!(repo.join(f).exists(), "{f}");
    }
    let again = p.ok(&["phase", "pipeline", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");

    // An edit by hand shows as a diff in the plan, and apply puts the
    // model back.
    let jf = repo.join("Jenkinsfile");
    let text = std::fs::read_to_string(&jf).unwrap();
    std::fs::write(&jf, text.replace("H/2 * * * *", "H/30 * * * *")).unwrap();
    let plan = p.ok(&["phase", "pipeline", "plan"]);
    assert!(
        plan.contains("- Jenkinsfile") || plan.contains("~ Jenkinsfile"),
        "{plan}"
    );
    assert!(plan.contains("+         pollSCM('H/2 * * * *')"), "{plan}");
    assert!(plan.contains("-         pollSCM('H/30 * * * *')"), "{plan}");
    assert!(p
        .ok(&["phase", "pipeline", "apply"])
        .contains("1 change(s)"));

    // A changed branch is a changed model.
    p.write_config("project = \"shop\"\n[pipeline]\nenabled = true\nbranch = \"trunk\"\n");
    assert!(p
        .ok(&["phase", "pipeline", "apply"])
        .contains("3 change(s)"));
    let gl = std::fs::read_to_string(repo.join(".gitlab-ci.yml")).unwrap();
    assert!(gl.contains(r#"$CI_COMMIT_BRANCH == "trunk""#), "{gl}");

    // destroy: eshop's files go, a file eshop did not write stays.
    std::fs::remove_file(repo.join("sonar-project.properties")).unwrap();
    std::fs::write(&foreign, "sonar.projectKey=theirs\n").unwrap();
    let out = p.ok(&["phase", "pipeline", "destroy"]);
    assert!(out.contains("kept sonar-project.properties"), "{out}");
    for f in ["Jenkinsfile", ".gitlab-ci.yml", ".github"] {
        assert!(!repo.join(f).exists(), "{f} is gone");
    }
    assert_eq!(
        std::fs::read_to_string(&foreign).unwrap(),
        "sonar.projectKey=theirs\n"
    );
}

#[test]
fn not_enabled_the_phase_says_how_and_touches_nothing() {
    let p = Project::with_config("project = \"shop\"\n");
    let out = p.ok(&["phase", "pipeline", "apply"]);
    assert!(
        out.contains("pipeline.enabled") || out.contains("[pipeline] enabled"),
        "{out}"
    );
    assert!(!p.dir.path().join("Jenkinsfile").exists());
    p.rejects_configs(
        "project = \"shop\"\n[pipeline]\n",
        &[
            ("branch = \"a b\"\n", "pipeline.branch"),
            (
                "jenkins_url = \"https://ci.example.com\"\n",
                "pipeline.repository_url",
            ),
            (
                "repository_url = \"git@host:x'; id\"\n",
                "pipeline.repository_url",
            ),
        ],
        &[&["render", "pipeline", "--out", "out"]],
    );
    // Without the Jenkins credentials, what keeps the job is refused
    // before anything is touched; what does not (a stage on an agent,
    // status) runs.
    p.write_config(
        "project = \"shop\"\n[pipeline]\nenabled = true\njenkins_url = \"https://ci.example.com\"\nrepository_url = \"https://git.example.com/x.git\"\n",
    );
    for args in [
        &["phase", "pipeline", "apply"][..],
        &["up", "--from", "pipeline", "--to", "pipeline"],
        &["--yes", "destroy"],
    ] {
        let err = p.fails(args, 2);
        assert!(err.contains("ESHOP_JENKINS_TOKEN"), "{args:?}: {err}");
    }
    assert!(!p.dir.path().join("Jenkinsfile").exists());
    let out = p.eshop(&["phase", "pipeline", "status"]);
    assert!(
        common::cli::text(&out).contains("not checked"),
        "{}",
        common::cli::text(&out)
    );
}

#[test]
fn gitlab_ci_local_reads_every_stage_in_order() {
    let p = Project::with_config("project = \"shop\"\n");
    let files = rendered(&p);
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), &files);
    let list = run(Command::new(tool("ESHOP_TEST_GITLAB_CI_LOCAL"))
        .arg("--list")
        .current_dir(dir.path()));
    // One job per stage, each in its own stage, in the model's order.
    let mut at = 0;
    for s in STAGES {
        let line = list
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s))
            .unwrap_or_else(|| panic!("no job {s} in:\n{list}"));
        let i = list.find(line).unwrap();
        assert!(i >= at, "{s} out of order:\n{list}");
        at = i;
    }
    // The shipping stages only run for pushes to main.
    let preview = run(Command::new(tool("ESHOP_TEST_GITLAB_CI_LOCAL"))
        .arg("--preview")
        .current_dir(dir.path()));
    assert!(
        preview.contains(r#"$CI_PIPELINE_SOURCE == "push" && $CI_COMMIT_BRANCH == "main""#),
        "{preview}"
    );
}

#[test]
fn act_lists_and_validates_the_workflow() {
    let p = Project::with_config("project = \"shop\"\n");
    let files = rendered(&p);
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), &files);
    let act = tool("ESHOP_TEST_ACT");
    let list = run(Command::new(&act)
        .args(["--list", "-P", "ubuntu-latest=-self-hosted"])
        .current_dir(dir.path()));
    assert!(
        list.contains("pipeline") && list.contains("eshop.yml"),
        "{list}"
    );
    // act's schema check passes the file, and fails a broken one.
    run(Command::new(&act)
        .args(["--validate", "-P", "ubuntu-latest=-self-hosted"])
        .current_dir(dir.path()));
    let wf = dir.path().join(".github/workflows/eshop.yml");
    let text = std::fs::read_to_string(&wf).unwrap();
    std::fs::write(&wf, text.replace("steps:", "stepz:")).unwrap();
    let out = Command::new(&act)
        .arg("--validate")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "act accepted a job without steps");
}

#[test]
fn groovy_parses_the_jenkinsfile_and_it_holds_to_the_model() {
    let p = Project::with_config("project = \"shop\"\ntarget = \"aws\"\n");
    let files = rendered(&p);
    let jf = &files[0].1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Jenkinsfile");
    std::fs::write(&path, jf).unwrap();
    let parsed = run(Command::new(tool("ESHOP_TEST_GROOVY"))
        .env("JAVA_HOME", tool("ESHOP_TEST_JAVA_HOME"))
        .args([
            "-e",
            "new GroovyShell().parse(new File(args[0])); println 'parsed'",
        ])
        .arg(&path));
    assert!(parsed.contains("parsed"), "{parsed}");
    // And a broken one is refused by the same check (it can fail).
    std::fs::write(&path, jf.replacen("stages {", "stages {{", 1)).unwrap();
    let out = Command::new(tool("ESHOP_TEST_GROOVY"))
        .env("JAVA_HOME", tool("ESHOP_TEST_JAVA_HOME"))
        .args(["-e", "new GroovyShell().parse(new File(args[0]))"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The declarative sections, every stage in order, each credential
    // bound by withCredentials, nothing double-quoted (Groovy interpolates
    // double quotes: a secret there would reach the build log).
    for section in [
        "agent any",
        "options {",
        "timeout(time: 60",
        "buildDiscarder(",
        "triggers {",
        "stages {",
        "post {",
    ] {
        assert!(jf.contains(section), "{section} missing:\n{jf}");
    }
    let titles = [
        "Checkout",
        "Build",
        "Static analysis",
        "Unit tests",
        "Images",
        "Container smoke test",
        "Push",
        "Deploy",
        "Post-deploy check",
    ];
    let mut at = 0;
    for t in titles {
        let i = jf
            .find(&format!("stage('{t}')"))
            .unwrap_or_else(|| panic!("no stage {t}"));
        assert!(i > at, "{t} out of order");
        at = i;
    }
    for binding in [
        "usernamePassword(credentialsId: 'eshop-registry', usernameVariable: 'ESHOP_REGISTRY_USERNAME', passwordVariable: 'ESHOP_REGISTRY_PASSWORD')",
        "file(credentialsId: 'eshop-kubeconfig', variable: 'KUBECONFIG')",
        "string(credentialsId: 'eshop-sonar-token', variable: 'SONAR_TOKEN')",
    ] {
        assert!(jf.contains(binding), "{binding} missing");
    }
    assert!(!jf.contains('"'), "no double-quoted Groovy string:\n{jf}");
    assert!(jf.contains("junit testResults: 'target/eshop-junit.xml'"));
}
