//! `eshop pipeline <stage>`: the stage bodies every CI system runs (the
//! model's commands), for what needs more than one command: clippy's
//! report and the Sonar scan, unit tests with a JUnit report, the images
//! (phases 1 and 2's own code, nothing re-implemented), a smoke test of
//! the images as a throw-away shop, and the push.

use super::model::{CLIPPY, JUNIT};
use super::PHASE;
use crate::config::Config;
use crate::phases::{build::Build, images::Images, Ctx, Kinds, Phase};
use crate::util::xml;
use std::path::Path;
use std::process::Stdio;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum StageCmd {
    /// clippy over the workspace as JSON (target/clippy.json, for Sonar),
    /// failing on any warning; then the Sonar scan when SONAR_HOST_URL and
    /// SONAR_TOKEN are set (waiting for the quality gate).
    Analysis,
    /// The workspace's unit tests (--lib --bins), with a JUnit report
    /// (target/eshop-junit.xml).
    Test,
    /// Phase 1's release build and phase 2's content-tagged images,
    /// nothing pushed or run.
    Image,
    /// The images as a throw-away shop (project `<project>-smoke` on
    /// 127.0.0.2): started, every /readyz answered, removed.
    Smoke,
    /// The images pushed to `images.registry` (phase 2's push); without
    /// a registry, says so and passes.
    Push,
    /// The push-to-deploy hook's body: the pipeline for each commit git
    /// hands over on stdin (`old new ref` lines).
    Run,
}

pub async fn run(ctx: &Ctx, stage: StageCmd) -> anyhow::Result<()> {
    match stage {
        StageCmd::Analysis => analysis(ctx).await,
        StageCmd::Test => test(&ctx.config).await,
        StageCmd::Image => image(ctx).await,
        StageCmd::Smoke => smoke(ctx).await,
        // Handled before the state is opened (lib.rs): its stages open it.
        StageCmd::Run => unreachable!("the hook runs without the state lock"),
        StageCmd::Push => {
            if ctx.config.registry.is_empty() {
                ctx.ui.info(
                    PHASE,
                    "push: skipped: no registry configured (images.registry)",
                );
                return Ok(());
            }
            let (changed, _) = Images.build_and_push(ctx, true).await?;
            ctx.ui.info(PHASE, &format!("push: {changed} change(s)"));
            Ok(())
        }
    }
}

fn cargo(cfg: &Config) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
    c.current_dir(&cfg.source_dir);
    c
}

async fn analysis(ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = &ctx.config;
    let report = cfg.source_dir.join(CLIPPY);
    std::fs::create_dir_all(report.parent().expect("a file in target/"))?;
    let out = cargo(cfg)
        .args(["clippy", "--workspace", "--all-targets", "--locked"])
        .args(["--message-format=json", "--", "-D", "warnings"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running cargo clippy: {e}"))?;
    std::fs::write(&report, &out.stdout)?;
    let findings = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-message""#))
        .count();
    ctx.ui.info(
        PHASE,
        &format!("clippy: {findings} message(s), report in {CLIPPY}"),
    );
    if !out.status.success() {
        anyhow::bail!("clippy found problems (see above; {CLIPPY} holds them for Sonar)");
    }
    let host = std::env::var("SONAR_HOST_URL").unwrap_or_default();
    let token = std::env::var("SONAR_TOKEN").unwrap_or_default();
    if host.is_empty() || token.is_empty() {
        ctx.ui.info(
            PHASE,
            "Sonar: skipped: no Sonar server configured (set SONAR_HOST_URL and SONAR_TOKEN)",
        );
        return Ok(());
    }
    // The scanner reads SONAR_HOST_URL and SONAR_TOKEN from the
    // environment: the token is never an argument.
    let status = tokio::process::Command::new("sonar-scanner")
        .current_dir(&cfg.source_dir)
        .arg("-Dsonar.qualitygate.wait=true")
        .status()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "running sonar-scanner ({e}): install the SonarScanner CLI on the agent"
            )
        })?;
    if !status.success() {
        anyhow::bail!("the Sonar scan failed or the quality gate is red ({status})");
    }
    Ok(())
}

/// One test as libtest printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: String,
    pub outcome: Outcome,
    /// The test's captured output, for a failure.
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    Ignored,
}

/// libtest's plain output (`test a::b ... ok`, then `---- a::b stdout
/// ----` blocks for failures) as cases.
pub fn parse_libtest(stdout: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut current: Option<usize> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, result)) = rest.rsplit_once(" ... ") {
                let outcome = match result.trim() {
                    "ok" => Outcome::Passed,
                    "FAILED" => Outcome::Failed,
                    r if r.starts_with("ignored") => Outcome::Ignored,
                    _ => continue,
                };
                cases.push(Case {
                    name: name.to_owned(),
                    outcome,
                    output: String::new(),
                });
                continue;
            }
        }
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = cases.iter().position(|c| c.name == name);
            continue;
        }
        if line == "failures:" || line.starts_with("test result:") {
            current = None;
            continue;
        }
        if let Some(i) = current {
            cases[i].output.push_str(line);
            cases[i].output.push('\n');
        }
    }
    cases
}

/// A JUnit XML report: one suite per test binary.
pub fn junit(suites: &[(String, Vec<Case>)]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (suite, cases) in suites {
        let count = |o: Outcome| cases.iter().filter(|c| c.outcome == o).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
            xml(suite),
            cases.len(),
            count(Outcome::Failed),
            count(Outcome::Ignored)
        ));
        for c in cases {
            out.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml(suite),
                xml(&c.name)
            ));
            match c.outcome {
                Outcome::Passed => out.push_str("/>\n"),
                Outcome::Ignored => out.push_str("><skipped/></testcase>\n"),
                Outcome::Failed => out.push_str(&format!(
                    "><failure message=\"failed\">{}</failure></testcase>\n",
                    xml(&c.output)
                )),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The unit-test executables cargo built: (suite name, path, package dir).
async fn test_binaries(cfg: &Config) -> anyhow::Result<Vec<(String, String, String)>> {
    let out = cargo(cfg)
        .args(["test", "--workspace", "--locked", "--lib", "--bins"])
        .args(["--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("running cargo test: {e}"))?;
    if !out.status.success() {
        anyhow::bail!("the unit tests do not compile (see above)");
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), true) = (v["executable"].as_str(), v["profile"]["test"] == true) else {
            continue;
        };
        let kind = v["target"]["kind"][0].as_str().unwrap_or("lib");
        let name = format!("{}::{kind}", v["target"]["name"].as_str().unwrap_or("?"));
        let dir = Path::new(v["manifest_path"].as_str().unwrap_or("."))
            .parent()
            .unwrap_or(Path::new("."))
            .display()
            .to_string();
        bins.push((name, exe.to_owned(), dir));
    }
    Ok(bins)
}

async fn test(cfg: &Config) -> anyhow::Result<()> {
    let mut suites = Vec::new();
    let mut failed = 0;
    for (suite, exe, dir) in test_binaries(cfg).await? {
        // As cargo test runs them: from the package's folder.
        let out = tokio::process::Command::new(&exe)
            .current_dir(&dir)
            .stderr(Stdio::inherit())
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("running {exe}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        let cases = parse_libtest(&text);
        if !out.status.success() {
            failed += 1;
            if !cases.iter().any(|c| c.outcome == Outcome::Failed) {
                anyhow::bail!("{suite} failed without a test result ({})", out.status);
            }
        }
        suites.push((suite, cases));
    }
    let report = cfg.source_dir.join(JUNIT);
    std::fs::create_dir_all(report.parent().expect("a file in target/"))?;
    std::fs::write(&report, junit(&suites))?;
    let total: usize = suites.iter().map(|(_, c)| c.len()).sum();
    println!(
        "unit tests: {total} in {} binaries; JUnit report in {JUNIT}",
        suites.len()
    );
    if failed > 0 {
        anyhow::bail!(
            "unit tests failed in {failed} test binar{}",
            if failed == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

/// The same configuration, for another project (its own names, labels and
/// state) and with `edit` applied.
fn ctx_for(ctx: &Ctx, project: String, edit: impl FnOnce(&mut Config)) -> anyhow::Result<Ctx> {
    let mut cfg = ctx.config.clone();
    cfg.project = project;
    edit(&mut cfg);
    let store = crate::state::Store::open(&cfg.state_dir, &cfg.project, cfg.target.as_str())?;
    Ok(Ctx::new(cfg, ctx.ui.clone(), store, true))
}

async fn image(ctx: &Ctx) -> anyhow::Result<()> {
    // Without build.test (lib.rs): the tests ran in their own stage.
    Build.apply(ctx).await?;
    let (changed, images) = Images.build_and_push(ctx, false).await?;
    ctx.ui.info(
        PHASE,
        &format!("{} image(s), {changed} built", images.len()),
    );
    Ok(())
}

/// The project name the smoke test's shop runs under.
pub fn smoke_project(project: &str) -> String {
    // Project names are at most 32 characters.
    let base: String = project.chars().take(26).collect();
    format!("{base}-smoke")
}

async fn smoke(ctx: &Ctx) -> anyhow::Result<()> {
    // Its own names and a loopback address of its own, so it never meets
    // the shop this machine may be running.
    let smoke = ctx_for(ctx, smoke_project(&ctx.config.project), |c| {
        c.target = crate::config::Target::Local;
        c.bind = std::net::IpAddr::from([127, 0, 0, 2]);
        c.demo_data = false;
        c.push = false;
    })?;
    // The binaries the images stage built (phase 1's record).
    let built = ctx
        .store
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .phase(crate::phases::build::NAME)
        .cloned();
    if let Some(b) = built {
        smoke.set_phase_state(crate::phases::build::NAME, b)?;
    }
    let (_, images) = Images.build_and_push(&smoke, false).await?;
    let engine = smoke.docker().await?;
    let ran = Images.run_local(&smoke, engine, &images).await;
    // Removed whether it came up or not; its data goes too, and what it
    // recorded.
    let removed = crate::phases::remove_labelled(&smoke, engine, None, PHASE, Kinds::All).await;
    for phase in [crate::phases::build::NAME, crate::phases::images::NAME] {
        smoke.clear_phase_state(phase)?;
    }
    ran?;
    removed?;
    ctx.ui.info(
        PHASE,
        &format!(
            "smoke test: {} service(s) ready, then removed",
            images.len()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\nrunning 3 tests\ntest a::ok_one ... ok\ntest a::bad <b> ... FAILED\ntest a::later ... ignored, needs a cluster\n\nfailures:\n\n---- a::bad <b> stdout ----\nthread panicked at 'x & y'\n\n\nfailures:\n    a::bad <b>\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored\n";

    #[test]
    fn libtest_output_becomes_a_junit_report() {
        let cases = parse_libtest(OUTPUT);
        let outcomes: Vec<_> = cases.iter().map(|c| (c.name.as_str(), c.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("a::ok_one", Outcome::Passed),
                ("a::bad <b>", Outcome::Failed),
                ("a::later", Outcome::Ignored)
            ]
        );
        assert!(cases[1].output.contains("thread panicked at 'x & y'"));
        let xml = junit(&[("eshop::lib".into(), cases)]);
        assert!(xml.contains(r#"<testsuite name="eshop::lib" tests="3" failures="1" skipped="1">"#));
        assert!(xml.contains(r#"name="a::bad &lt;b&gt;""#));
        assert!(xml.contains("x &amp; y"));
        assert!(xml.contains(r#"<testcase classname="eshop::lib" name="a::later"><skipped/>"#));
    }

    #[test]
    fn the_smoke_shop_has_a_valid_project_name_of_its_own() {
        assert_eq!(smoke_project("shop"), "shop-smoke");
        let long = "a".repeat(32);
        assert_eq!(smoke_project(&long).len(), 32);
    }
}
