//! Push-to-deploy with nothing but git (the local target): a bare
//! repository eshop keeps (`.eshop/<project>-deploy.git`, added to the
//! source repository as the remote `eshop`) whose post-receive hook runs
//! the pipeline's stages for each commit pushed to the shipping branch:
//! the model's commands, the very ones Jenkins, GitLab and GitHub run, in
//! a work tree kept between runs (so builds are incremental), each run's
//! log and result kept per commit. A stage that fails stops the run: the
//! shop keeps running the last commit that passed.

use super::model;
use super::PHASE;
use crate::config::Config;
use crate::phases::{Action, Change, Ctx, Status};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const HOOK: &str = include_str!("../../../templates/pipeline/post-receive");
/// The name of the remote eshop adds to the source repository.
pub const REMOTE: &str = "eshop";

pub struct Paths {
    pub bare: PathBuf,
    pub work: PathBuf,
    pub runs: PathBuf,
}

pub fn paths(cfg: &Config) -> Paths {
    // Absolute: the remote's URL and the hook must not depend on the
    // folder git or eshop runs in.
    let state = std::path::absolute(&cfg.state_dir).unwrap_or_else(|_| cfg.state_dir.clone());
    let base = state.join(format!("{}-deploy", cfg.project));
    Paths {
        bare: state.join(format!("{}-deploy.git", cfg.project)),
        work: base.join("work"),
        runs: base.join("runs"),
    }
}

/// One run of the pipeline for a pushed commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Run {
    pub commit: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub stages: Vec<StageRun>,
    /// `passed`, or `failed at <stage>`.
    pub result: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageRun {
    pub id: String,
    pub passed: bool,
    pub secs: u64,
}

fn git(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    // A hook's environment names the bare repository: never inherited.
    c.env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    let out = c
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run git ({e}); install git"))?;
    if !out.status.success() {
        anyhow::bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The URL of the source repository's remote `eshop`; None when the
/// source is no git repository or has no such remote.
fn remote_url(cfg: &Config) -> Option<String> {
    git(Some(&cfg.source_dir), &["remote", "get-url", REMOTE]).ok()
}

fn is_repo(dir: &Path) -> bool {
    git(Some(dir), &["rev-parse", "--git-dir"]).is_ok()
}

/// The hook's two settings lines: the eshop binary and the configuration.
fn settings(config_path: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let config = std::fs::canonicalize(config_path).map_err(|e| {
        anyhow::anyhow!(
            "push-to-deploy runs eshop with this project's configuration file, and {} cannot be read ({e})",
            config_path.display()
        )
    })?;
    let lines = [exe.display().to_string(), config.display().to_string()];
    if lines.iter().any(|l| l.contains(['\n', '\r'])) {
        anyhow::bail!("a path with a line break cannot be handed to the hook");
    }
    Ok(format!("{}\n{}\n", lines[0], lines[1]))
}

pub fn plan(cfg: &Config) -> Vec<Change> {
    let p = paths(cfg);
    let hook_ok =
        std::fs::read_to_string(p.bare.join("hooks/post-receive")).is_ok_and(|h| h == HOOK);
    let mut plan = vec![Change::new(
        format!("push-to-deploy repository {}", p.bare.display()),
        if hook_ok {
            Action::NoOp
        } else {
            Action::Create
        },
        if hook_ok {
            "with its hook"
        } else {
            "a bare repository whose hook runs the pipeline"
        },
    )];
    if is_repo(&cfg.source_dir) {
        let want = p.bare.display().to_string();
        plan.push(match remote_url(cfg) {
            Some(u) if u == want => {
                Change::new(format!("git remote {REMOTE}"), Action::NoOp, "points at it")
            }
            Some(_) => Change::new(
                format!("git remote {REMOTE}"),
                Action::NoOp,
                "exists and points elsewhere: left alone",
            ),
            None => Change::new(
                format!("git remote {REMOTE}"),
                Action::Create,
                "in the source repository",
            ),
        });
    }
    plan
}

pub fn apply(ctx: &Ctx, config_path: &Path) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let p = paths(cfg);
    let mut changed = 0;
    if !p.bare.join("HEAD").exists() {
        std::fs::create_dir_all(&p.bare)?;
        git(
            None,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                &cfg.pipeline.branch,
                &p.bare.display().to_string(),
            ],
        )?;
        changed += 1;
    }
    let hook = p.bare.join("hooks/post-receive");
    if std::fs::read_to_string(&hook).ok().as_deref() != Some(HOOK) {
        std::fs::create_dir_all(hook.parent().expect("in hooks/"))?;
        crate::util::write_atomic(&hook, HOOK.as_bytes(), 0o755)?;
        changed += 1;
    }
    let s = settings(config_path)?;
    let file = p.bare.join("hooks/eshop-hook");
    if std::fs::read_to_string(&file).ok() != Some(s.clone()) {
        crate::util::write_atomic(&file, s.as_bytes(), 0o644)?;
        changed += 1;
    }
    std::fs::create_dir_all(&p.runs)?;
    if is_repo(&cfg.source_dir) {
        let want = p.bare.display().to_string();
        match remote_url(cfg) {
            None => {
                git(Some(&cfg.source_dir), &["remote", "add", REMOTE, &want])?;
                changed += 1;
                ctx.ui.info(PHASE, &format!("push-to-deploy: git push {REMOTE} {}", cfg.pipeline.branch));
            }
            Some(u) if u != want => ctx.ui.warn(
                PHASE,
                &format!("the remote {REMOTE} points at {u}, not eshop's {want}: left alone; push there with git push {want} {}", cfg.pipeline.branch),
            ),
            Some(_) => {}
        }
    }
    Ok(changed)
}

pub fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let p = paths(cfg);
    let mut changed = 0;
    // Only eshop's repository: its hook is eshop's.
    let ours = std::fs::read_to_string(p.bare.join("hooks/post-receive"))
        .is_ok_and(|h| h.contains("Written by eshop (phase 8 pipeline)"));
    if ours {
        std::fs::remove_dir_all(&p.bare)?;
        changed += 1;
    }
    let base = p
        .work
        .parent()
        .expect("under the deploy folder")
        .to_path_buf();
    if base.exists() {
        std::fs::remove_dir_all(&base)?;
        changed += 1;
    }
    if remote_url(cfg).is_some_and(|u| u == p.bare.display().to_string()) {
        git(Some(&cfg.source_dir), &["remote", "remove", REMOTE])?;
        changed += 1;
    }
    Ok(changed)
}

/// The last runs, newest first.
pub fn runs(cfg: &Config, n: usize) -> Vec<Run> {
    let mut runs: Vec<Run> = std::fs::read_dir(paths(cfg).runs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    runs.sort_by_key(|r: &Run| std::cmp::Reverse(r.started));
    runs.truncate(n);
    runs
}

pub fn status(cfg: &Config) -> Vec<Status> {
    let p = paths(cfg);
    let mut out = vec![Status {
        resource: format!("push-to-deploy repository {}", p.bare.display()),
        state: if p.bare.join("hooks/post-receive").exists() {
            "present".into()
        } else {
            "absent: eshop phase pipeline apply".into()
        },
        healthy: p.bare.join("hooks/post-receive").exists(),
    }];
    for r in runs(cfg, 5) {
        let short: String = r.commit.chars().take(12).collect();
        out.push(Status {
            resource: format!("run {short}"),
            state: format!(
                "{} ({} stage(s), {} s)",
                r.result,
                r.stages.len(),
                r.stages.iter().map(|s| s.secs).sum::<u64>()
            ),
            // History: a run that failed says nothing about what runs
            // now (the shop keeps the last commit that passed), and must
            // not fail the next run's post-deploy check.
            healthy: true,
        });
    }
    out
}

fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The hook's body: for each ref git hands over on `input`, the pipeline
/// for the shipping branch's new commit. Fails when a run failed (git
/// then tells the pusher).
pub fn run(cfg: &Config, config_path: &Path, input: impl BufRead) -> anyhow::Result<()> {
    let branch_ref = format!("refs/heads/{}", cfg.pipeline.branch);
    let mut failed = Vec::new();
    for line in input.lines() {
        let line = line?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_, new, r] = parts.as_slice() else {
            continue;
        };
        if *r != branch_ref || !is_commit(new) || new.bytes().all(|b| b == b'0') {
            println!("eshop: {r}: not {branch_ref}, nothing to run");
            continue;
        }
        let run = run_commit(cfg, config_path, new)?;
        println!("eshop: pipeline for {}: {}", &new[..12], run.result);
        if run.result != "passed" {
            failed.push(run.result);
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "the pipeline {}; the shop keeps running the last commit that passed",
            failed.join(", ")
        );
    }
    Ok(())
}

fn run_commit(cfg: &Config, config_path: &Path, commit: &str) -> anyhow::Result<Run> {
    let p = paths(cfg);
    std::fs::create_dir_all(&p.work)?;
    std::fs::create_dir_all(&p.runs)?;
    // One run at a time per project: a second push waits for the first.
    let lock = std::fs::File::create(p.runs.join("lock"))?;
    lock.lock()?;
    let (bare, work) = (p.bare.display().to_string(), p.work.display().to_string());
    git(
        None,
        &[
            "--git-dir",
            &bare,
            "--work-tree",
            &work,
            "checkout",
            "-f",
            "-q",
            commit,
        ],
    )?;
    // The build output stays between runs; anything else the last run
    // left goes.
    git(
        None,
        &[
            "--git-dir",
            &bare,
            "--work-tree",
            &work,
            "clean",
            "-fdxq",
            "-e",
            "/target/",
        ],
    )?;
    let mut log = std::fs::File::create(p.runs.join(format!("{commit}.log")))?;
    let config = std::fs::canonicalize(config_path).unwrap_or(config_path.to_path_buf());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut run = Run {
        commit: commit.to_owned(),
        started,
        stages: Vec::new(),
        result: "passed".into(),
    };
    for st in model::model(cfg).stages {
        println!("eshop: stage {}: {}", st.title, st.run);
        writeln!(log, "== {} ({}): {}", st.title, st.id, st.run)?;
        let t = Instant::now();
        // The project's configuration and state (its secrets, its
        // containers), the pushed commit's sources.
        let mut child = Command::new("sh")
            .args(["-c", &st.run])
            .current_dir(&p.work)
            .env_remove("GIT_DIR")
            .env("ESHOP_CONFIG", &config)
            .env("ESHOP_BUILD_SOURCE_DIR", &p.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Both streams, line by line as they come, to the pusher (git
        // shows them as `remote:` lines) and to the run's log.
        let shared = std::sync::Arc::new(std::sync::Mutex::new(log.try_clone()?));
        let pumps: Vec<_> = [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ]
        .into_iter()
        .map(|r| {
            let log = shared.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    println!("{line}");
                    if let Ok(mut f) = log.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                }
            })
        })
        .collect();
        for p in pumps {
            let _ = p.join();
        }
        let passed = child.wait()?.success();
        run.stages.push(StageRun {
            id: st.id.to_owned(),
            passed,
            secs: t.elapsed().as_secs(),
        });
        if !passed {
            run.result = format!("failed at {}", st.id);
            break;
        }
    }
    writeln!(log, "== {}", run.result)?;
    crate::util::write_atomic(
        &p.runs.join(format!("{commit}.json")),
        &serde_json::to_vec_pretty(&run)?,
        0o644,
    )?;
    Ok(run)
}
