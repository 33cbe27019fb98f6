//! The pipeline model (model.rs) as the files each CI system reads:
//! a declarative `Jenkinsfile`, `.gitlab-ci.yml`, a GitHub Actions
//! workflow, and `sonar-project.properties` for the analysis stage.
//!
//! The YAML files are built as data and serialised. The Jenkinsfile is
//! Groovy: every value in it is a single-quoted Groovy string made by
//! [`groovy`] (no interpolation, escapes applied), and secrets are only
//! ever bound by `withCredentials` into the environment of `sh` steps,
//! whose commands are single-quoted too, so Groovy never sees a secret.

use super::model::{marker, Cred, Model, Stage, CLIPPY, JUNIT, POLL_SCM};
use serde_yaml::{Mapping, Value};

/// Where each file goes in the repository.
pub const JENKINSFILE: &str = "Jenkinsfile";
pub const GITLAB: &str = ".gitlab-ci.yml";
pub const GITHUB: &str = ".github/workflows/eshop.yml";
pub const SONAR: &str = "sonar-project.properties";

/// The whole pipeline must finish within this (Jenkins' timeout, GitLab's
/// and GitHub's job timeouts).
const TIMEOUT_MINUTES: u32 = 60;
/// actions/checkout v4.2.2, by commit: a tag can be moved, a commit cannot.
const CHECKOUT_ACTION: &str = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683";

/// Every file, as (path in the repository, content).
pub fn render(m: &Model) -> anyhow::Result<Vec<(&'static str, String)>> {
    Ok(vec![
        (JENKINSFILE, jenkinsfile(m)),
        (GITLAB, gitlab(m)?),
        (GITHUB, github(m)?),
        (SONAR, sonar(m)),
    ])
}

/// Whether `content` is a file eshop wrote for `project` (its first line
/// carries the marker, behind the file type's comment sign).
pub fn is_ours(content: &str, project: &str) -> bool {
    content
        .lines()
        .next()
        .is_some_and(|l| l.ends_with(&marker(project)))
}

/// A single-quoted Groovy string: no `$` interpolation, `\` and `'`
/// escaped, control characters as escapes.
pub fn groovy(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `withCredentials` bindings for a stage's credentials.
fn bindings(creds: &[Cred]) -> Vec<String> {
    creds
        .iter()
        .map(|c| {
            let id = groovy(c.id());
            match c {
                Cred::Registry => format!(
                    "usernamePassword(credentialsId: {id}, usernameVariable: {}, passwordVariable: {})",
                    groovy(c.variables()[0]),
                    groovy(c.variables()[1])
                ),
                Cred::Kubeconfig => {
                    format!("file(credentialsId: {id}, variable: {})", groovy(c.variables()[0]))
                }
                Cred::Sonar => {
                    format!("string(credentialsId: {id}, variable: {})", groovy(c.variables()[0]))
                }
            }
        })
        .collect()
}

fn jenkins_stage(out: &mut String, s: &Stage, branch: &str) {
    let sh = format!("sh {}", groovy(&s.run));
    out.push_str(&format!("        stage({}) {{\n", groovy(s.title)));
    if s.ships {
        // A job from SCM has no `branch` condition outside multibranch
        // pipelines: GIT_BRANCH is `origin/<branch>` there.
        out.push_str(&format!(
            "            when {{\n                expression {{ env.GIT_BRANCH == {} || env.GIT_BRANCH == {} }}\n            }}\n",
            groovy(branch),
            groovy(&format!("origin/{branch}"))
        ));
    }
    out.push_str("            steps {\n");
    let optional_sonar = s.creds == [Cred::Sonar];
    if optional_sonar {
        // Without a Sonar server the stage still runs (clippy's report)
        // and says the scan was skipped; the token is bound only when a
        // server is configured, so a Jenkins without it needs none.
        out.push_str("                script {\n");
        out.push_str("                    if (env.SONAR_HOST_URL) {\n");
        out.push_str(&format!(
            "                        withCredentials([{}]) {{\n                            {sh}\n                        }}\n",
            bindings(s.creds).join(", ")
        ));
        out.push_str(&format!(
            "                    }} else {{\n                        {sh}\n                    }}\n"
        ));
        out.push_str("                }\n");
    } else if s.creds.is_empty() {
        out.push_str(&format!("                {sh}\n"));
    } else {
        out.push_str(&format!(
            "                withCredentials([{}]) {{\n                    {sh}\n                }}\n",
            bindings(s.creds).join(", ")
        ));
    }
    out.push_str("            }\n");
    if let Some(report) = s.junit {
        out.push_str(&format!(
            "            post {{\n                always {{\n                    junit testResults: {}, allowEmptyResults: true\n                }}\n            }}\n",
            groovy(report)
        ));
    }
    out.push_str("        }\n");
}

pub fn jenkinsfile(m: &Model) -> String {
    let mut out = format!("// {}\n", marker(&m.project));
    out.push_str("pipeline {\n    agent any\n");
    out.push_str(&format!(
        "    options {{\n        timeout(time: {TIMEOUT_MINUTES}, unit: 'MINUTES')\n        buildDiscarder(logRotator(numToKeepStr: '30'))\n        disableConcurrentBuilds()\n        skipDefaultCheckout()\n    }}\n"
    ));
    // Polling is the trigger that needs nothing on the git server; a
    // webhook (phases/08-pipeline.md) makes it immediate.
    out.push_str(&format!(
        "    triggers {{\n        pollSCM({})\n    }}\n",
        groovy(POLL_SCM)
    ));
    out.push_str("    environment {\n        CARGO_TERM_COLOR = 'never'\n    }\n");
    out.push_str("    stages {\n");
    out.push_str("        stage('Checkout') {\n            steps {\n                checkout scm\n            }\n        }\n");
    for s in &m.stages {
        jenkins_stage(&mut out, s, &m.branch);
    }
    out.push_str("    }\n");
    let kept: Vec<&str> = m
        .stages
        .iter()
        .flat_map(|s| s.artifacts.iter().copied())
        .collect();
    out.push_str(&format!(
        "    post {{\n        always {{\n            archiveArtifacts artifacts: {}, allowEmptyArchive: true\n        }}\n    }}\n}}\n",
        groovy(&kept.join(","))
    ));
    out
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        m.insert(Value::String(k.to_owned()), v);
    }
    Value::Mapping(m)
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn list(items: &[&str]) -> Value {
    Value::Sequence(items.iter().map(|i| s(i)).collect())
}

/// `# marker` then the document.
fn yaml_file(project: &str, doc: &Value) -> anyhow::Result<String> {
    Ok(format!(
        "# {}\n{}",
        marker(project),
        serde_yaml::to_string(doc)?
    ))
}

pub fn gitlab(m: &Model) -> anyhow::Result<String> {
    let on_branch = format!("$CI_COMMIT_BRANCH == \"{}\"", m.branch);
    // Pushes to the shipping branch and merge requests; no duplicate
    // branch pipeline while a merge request is open.
    let workflow = map(vec![(
        "rules",
        Value::Sequence(vec![
            map(vec![(
                "if",
                s("$CI_PIPELINE_SOURCE == \"merge_request_event\""),
            )]),
            map(vec![
                ("if", s("$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS")),
                ("when", s("never")),
            ]),
            map(vec![("if", s(&on_branch))]),
        ]),
    )]);
    let mut doc = vec![
        ("workflow", workflow),
        (
            "stages",
            Value::Sequence(m.stages.iter().map(|st| s(st.id)).collect()),
        ),
        (
            "variables",
            map(vec![
                ("CARGO_TERM_COLOR", s("never")),
                ("CARGO_HOME", s("$CI_PROJECT_DIR/.cargo")),
                // As in the GitHub workflow: the sources are the checkout,
                // wherever eshop's configuration and state live.
                ("ESHOP_BUILD_SOURCE_DIR", s("$CI_PROJECT_DIR")),
                // Jobs of one pipeline share the build in the cache.
                ("GIT_CLEAN_FLAGS", s("-ffdx -e target/ -e .cargo/")),
            ]),
        ),
        (
            "default",
            map(vec![
                ("timeout", s(&format!("{TIMEOUT_MINUTES} minutes"))),
                ("interruptible", Value::Bool(true)),
                (
                    "cache",
                    map(vec![
                        ("key", s("eshop-$CI_COMMIT_REF_SLUG")),
                        ("paths", list(&["target/", ".cargo/registry/"])),
                    ]),
                ),
            ]),
        ),
    ];
    let jobs: Vec<(String, Value)> = m
        .stages
        .iter()
        .map(|st| {
            let mut job = vec![("stage", s(st.id)), ("script", list(&[&st.run]))];
            if st.ships {
                job.push((
                    "rules",
                    Value::Sequence(vec![map(vec![(
                        "if",
                        s(&format!("$CI_PIPELINE_SOURCE == \"push\" && {on_branch}")),
                    )])]),
                ));
                // One deployment at a time.
                job.push(("resource_group", s(&format!("eshop-{}", m.project))));
            }
            if !st.artifacts.is_empty() || st.junit.is_some() {
                let mut a = vec![("when", s("always")), ("paths", list(st.artifacts))];
                if let Some(j) = st.junit {
                    a.push(("reports", map(vec![("junit", s(j))])));
                }
                a.push(("expire_in", s("30 days")));
                job.push(("artifacts", map(a)));
            }
            (st.id.to_owned(), map(job))
        })
        .collect();
    let mut top = Mapping::new();
    for (k, v) in doc.drain(..) {
        top.insert(s(k), v);
    }
    for (k, v) in jobs {
        top.insert(Value::String(k), v);
    }
    yaml_file(&m.project, &Value::Mapping(top))
}

pub fn github(m: &Model) -> anyhow::Result<String> {
    let branches = list(&[&m.branch]);
    let ships = format!(
        "github.event_name == 'push' && github.ref == 'refs/heads/{}'",
        m.branch
    );
    let mut steps = vec![map(vec![
        ("name", s("Checkout")),
        // act (which runs this file on a workstation) fetches nothing
        // here: it replaces the checkout of the repository under test
        // with a copy of the local work tree.
        ("uses", s(CHECKOUT_ACTION)),
        (
            "with",
            map(vec![("persist-credentials", Value::Bool(false))]),
        ),
    ])];
    for st in &m.stages {
        let mut env: Vec<(&str, Value)> = Vec::new();
        for c in st.creds {
            match c {
                Cred::Registry => {
                    for v in c.variables() {
                        env.push((v, s(&format!("${{{{ secrets.{} }}}}", v))));
                    }
                }
                Cred::Sonar => {
                    env.push(("SONAR_TOKEN", s("${{ secrets.SONAR_TOKEN }}")));
                    env.push(("SONAR_HOST_URL", s("${{ vars.SONAR_HOST_URL }}")));
                }
                Cred::Kubeconfig => {
                    env.push(("KUBECONFIG", s("${{ runner.temp }}/kubeconfig")));
                }
            }
        }
        if st.creds.contains(&Cred::Kubeconfig) && st.id == "deploy" {
            // The kubeconfig secret becomes a file for deploy and verify;
            // its text stays in the environment of this one step.
            steps.push(map(vec![
                ("name", s("Kubeconfig")),
                ("if", s(&ships)),
                (
                    "env",
                    map(vec![
                        ("KUBECONFIG_DATA", s("${{ secrets.ESHOP_KUBECONFIG }}")),
                        ("KUBECONFIG", s("${{ runner.temp }}/kubeconfig")),
                    ]),
                ),
                (
                    "run",
                    s("umask 077 && printf '%s' \"$KUBECONFIG_DATA\" > \"$KUBECONFIG\""),
                ),
            ]));
        }
        let mut step = vec![("name", s(st.title)), ("id", s(st.id))];
        if st.ships {
            step.push(("if", s(&ships)));
        }
        if !env.is_empty() {
            step.push(("env", map(env)));
        }
        step.push(("run", s(&st.run)));
        steps.push(map(step));
    }
    // The reports, where the runner shows them (no remote action needed).
    steps.push(map(vec![
        ("name", s("Reports")),
        ("if", s("always()")),
        (
            "run",
            s(&format!(
                "ls -l {JUNIT} {CLIPPY} >> \"$GITHUB_STEP_SUMMARY\" 2>&1 || true"
            )),
        ),
    ]));
    let doc = map(vec![
        ("name", s("eshop")),
        (
            "on",
            map(vec![
                ("push", map(vec![("branches", branches.clone())])),
                ("pull_request", map(vec![("branches", branches)])),
            ]),
        ),
        // Least privilege: read the code, nothing else.
        ("permissions", map(vec![("contents", s("read"))])),
        (
            "concurrency",
            map(vec![
                ("group", s("eshop-${{ github.ref }}")),
                (
                    "cancel-in-progress",
                    s("${{ github.event_name == 'pull_request' }}"),
                ),
            ]),
        ),
        (
            "jobs",
            map(vec![(
                "pipeline",
                map(vec![
                    ("runs-on", s("ubuntu-latest")),
                    ("timeout-minutes", Value::Number(TIMEOUT_MINUTES.into())),
                    (
                        "env",
                        map(vec![
                            ("CARGO_TERM_COLOR", s("never")),
                            // The sources are the checkout, also when
                            // eshop's configuration and state live
                            // outside it (ESHOP_CONFIG on a self-hosted
                            // runner that keeps the shop's state).
                            ("ESHOP_BUILD_SOURCE_DIR", s("${{ github.workspace }}")),
                        ]),
                    ),
                    ("steps", Value::Sequence(steps)),
                ]),
            )]),
        ),
    ]);
    yaml_file(&m.project, &doc)
}

/// The analysis stage's Sonar settings. The community Rust plugin has
/// read clippy's JSON under two keys across its versions: both are set.
pub fn sonar(m: &Model) -> String {
    let key = format!("eshop-{}", m.project);
    [
        format!("# {}", marker(&m.project)),
        format!("sonar.projectKey={key}"),
        format!("sonar.projectName={key}"),
        "sonar.sources=src,services".into(),
        "sonar.exclusions=**/target/**,**/tests/**".into(),
        "sonar.tests=tests,services".into(),
        "sonar.test.inclusions=**/tests/**".into(),
        "sonar.sourceEncoding=UTF-8".into(),
        format!("sonar.rust.clippy.reportPaths={CLIPPY}"),
        format!("sonar.rust.clippyReport.reportPaths={CLIPPY}"),
        format!("sonar.junit.reportPaths={JUNIT}"),
        String::new(),
    ]
    .join("\n")
}
