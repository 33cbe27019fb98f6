//! Phase 8, pipeline: CI/CD for the shop from one model (model.rs), as a
//! `Jenkinsfile`, a `.gitlab-ci.yml` and a GitHub Actions workflow
//! (files.rs), written into the repository; each stage is one short
//! command, the same in all three, calling `eshop` for what eshop does
//! (`eshop pipeline <stage>`: stages.rs).
//!
//! eshop owns a file only while its first line carries eshop's marker for
//! this project: plan refuses to overwrite any other file of the same
//! name, and destroy removes only marked files.

pub mod files;
pub mod hook;
pub mod jenkins;
pub mod model;
pub mod stages;

use super::{Action, Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::Config;
use std::path::{Path, PathBuf};

pub struct Pipeline;

pub const PHASE: &str = "pipeline";
pub const NUMBER: u8 = 8;

/// What is on disk for one file, compared with what the model renders.
enum OnDisk {
    Absent,
    Same,
    /// eshop's, with other content (the old text).
    Differs(String),
    /// Someone else's file.
    Foreign,
}

fn on_disk(cfg: &Config, rel: &str, want: &str) -> anyhow::Result<OnDisk> {
    let path = cfg.source_dir.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(have) if have == want => Ok(OnDisk::Same),
        Ok(have) if files::is_ours(&have, &cfg.project) => Ok(OnDisk::Differs(have)),
        Ok(_) => Ok(OnDisk::Foreign),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OnDisk::Absent),
        // A file that is not UTF-8 text is not one eshop wrote.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(OnDisk::Foreign),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

fn foreign(rel: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{rel} exists and eshop did not write it (its first line lacks eshop's marker): move it away to let phase 8 write its own, or set pipeline.enabled = false"
    )
}

/// A line diff of two small texts (`-` old, `+` new), at most `max` lines.
pub fn diff(old: &str, new: &str, max: usize) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    if out.len() > max {
        let more = out.len() - max;
        out.truncate(max);
        out.push(format!("… and {more} more changed line(s)"));
    }
    out
}

/// The plan for the files; shows each change's diff.
fn plan_files(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    let mut plan = Vec::new();
    for (rel, want) in files::render(&model::model(cfg))? {
        plan.push(match on_disk(cfg, rel, &want)? {
            OnDisk::Absent => Change::new(rel, Action::Create, "not in the repository"),
            OnDisk::Same => Change::new(rel, Action::NoOp, "as the model renders it"),
            OnDisk::Differs(have) => {
                for line in diff(&have, &want, 60) {
                    ctx.ui.info(PHASE, &format!("{rel}: {line}"));
                }
                Change::new(rel, Action::Update, "differs from the model")
            }
            OnDisk::Foreign => return Err(foreign(rel)),
        });
    }
    Ok(plan)
}

/// Push-to-deploy runs on this machine: the local target only.
fn push_to_deploy(cfg: &Config) -> bool {
    cfg.pipeline.push_to_deploy && cfg.target == crate::config::Target::Local
}

impl Phase for Pipeline {
    const INFO: Info = Info::new(
        NUMBER,
        PHASE,
        "CI/CD from one model: Jenkinsfile, .gitlab-ci.yml and a GitHub workflow whose stages call eshop",
        EVERYWHERE,
    );

    fn skip(&self, cfg: &Config) -> Option<String> {
        (!cfg.pipeline.enabled).then(|| {
            "not enabled: set [pipeline] enabled = true (or ESHOP_PIPELINE_ENABLED=true) to write the pipeline files; `eshop render pipeline --out DIR` shows them".to_owned()
        })
    }

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let mut plan = plan_files(ctx)?;
        if push_to_deploy(&ctx.config) {
            plan.extend(hook::plan(&ctx.config));
        }
        plan.extend(jenkins::plan(ctx).await?);
        Ok(plan)
    }

    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        // Every file is checked before any is written.
        let plan = plan_files(ctx)?;
        // And the Jenkins job (a foreign one refused) before any is written.
        let job = jenkins::check(ctx).await?;
        let rendered = files::render(&model::model(cfg))?;
        let mut changed = 0;
        for ((rel, content), change) in rendered.iter().zip(&plan) {
            if change.action == Action::NoOp {
                continue;
            }
            let path = cfg.source_dir.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            crate::util::write_atomic(&path, content.as_bytes(), 0o644)?;
            ctx.ui.info(PHASE, &format!("wrote {rel}"));
            changed += 1;
        }
        if push_to_deploy(cfg) {
            changed += hook::apply(ctx, &cfg.config_file)?;
        }
        changed += jenkins::converge(ctx, job).await?;
        Ok(Outcome { changed })
    }

    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        let cfg = &ctx.config;
        let mut changed = 0;
        for rel in [
            files::JENKINSFILE,
            files::GITLAB,
            files::GITHUB,
            files::SONAR,
        ] {
            let path = cfg.source_dir.join(rel);
            let Ok(have) = std::fs::read_to_string(&path) else {
                continue;
            };
            if !files::is_ours(&have, &cfg.project) {
                ctx.ui
                    .info(PHASE, &format!("kept {rel}: eshop did not write it"));
                continue;
            }
            std::fs::remove_file(&path)?;
            ctx.ui.info(PHASE, &format!("removed {rel}"));
            changed += 1;
        }
        // The workflow's folders, if nothing else is in them.
        for dir in [".github/workflows", ".github"] {
            let _ = std::fs::remove_dir(cfg.source_dir.join(dir));
        }
        // Whatever the configuration says now: found by its marker.
        changed += hook::destroy(ctx)?;
        changed += jenkins::destroy(ctx).await?;
        Ok(Outcome { changed })
    }

    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let cfg = &ctx.config;
        let mut out = Vec::new();
        for (rel, want) in files::render(&model::model(cfg))? {
            let (state, healthy) = match on_disk(cfg, rel, &want)? {
                OnDisk::Same => ("up to date", true),
                OnDisk::Differs(_) => ("differs from the model: eshop phase pipeline apply", false),
                OnDisk::Absent => ("absent: eshop phase pipeline apply", false),
                OnDisk::Foreign => ("not eshop's", false),
            };
            out.push(Status {
                resource: rel.to_owned(),
                state: state.to_owned(),
                healthy,
            });
        }
        if push_to_deploy(cfg) {
            out.extend(hook::status(cfg));
        }
        out.extend(jenkins::status(cfg).await);
        if let Some(url) = &cfg.pipeline.jenkins_without_credentials {
            out.push(Status {
                resource: format!("jenkins job at {url}"),
                state: "not checked: ESHOP_JENKINS_USER and ESHOP_JENKINS_TOKEN are not set".into(),
                healthy: true,
            });
        }
        Ok(out)
    }

    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (rel, content) in files::render(&model::model(&ctx.config))? {
            let path = out.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, content)?;
            written.push(path);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_show_what_changes() {
        assert!(diff("a\nb\nc\n", "a\nb\nc\n", 10).is_empty());
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n", 10), ["+ x", "- b"]);
        assert_eq!(diff("", "a\n", 10), ["+ a"]);
        let long = diff("", &"x\n".repeat(100), 5);
        assert_eq!(long.len(), 6);
        assert!(long[5].contains("95 more"));
    }
}
