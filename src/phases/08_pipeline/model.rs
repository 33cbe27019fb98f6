//! The one pipeline: its stages, each one short shell command, and the
//! credentials each needs, by name only. Jenkins, GitLab CI, GitHub
//! Actions and the local push-to-deploy hook all run exactly these
//! commands (files.rs renders them; hook.rs runs them).
//!
//! The commands call `eshop` for everything eshop does already (images,
//! push, deploy, status): a pipeline never re-implements a phase.

use crate::config::{Config, Target};

/// A credential a stage needs. Values never appear in a pipeline file:
/// each CI system injects them as these variables from its own store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    /// `ESHOP_REGISTRY_USERNAME` / `ESHOP_REGISTRY_PASSWORD` (phase 2's).
    Registry,
    /// `KUBECONFIG`: a file with the cluster's credentials.
    Kubeconfig,
    /// `SONAR_TOKEN` (with `SONAR_HOST_URL`, which is not secret).
    Sonar,
}

impl Cred {
    /// The Jenkins credential id, the GitHub secret's name.
    pub fn id(self) -> &'static str {
        match self {
            Cred::Registry => "eshop-registry",
            Cred::Kubeconfig => "eshop-kubeconfig",
            Cred::Sonar => "eshop-sonar-token",
        }
    }

    /// The variables it arrives in.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Cred::Registry => &[
                crate::config::REGISTRY_USERNAME_ENV,
                crate::config::REGISTRY_PASSWORD_ENV,
            ],
            Cred::Kubeconfig => &["KUBECONFIG"],
            Cred::Sonar => &["SONAR_TOKEN"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Job and step id: `unit-tests`.
    pub id: &'static str,
    /// What people read: `Unit tests`.
    pub title: &'static str,
    /// One short shell command, the same in every CI system.
    pub run: String,
    pub creds: &'static [Cred],
    /// Only for the shipping branch's pushes (push, deploy, verify);
    /// merge requests stop before.
    pub ships: bool,
    /// A JUnit report the stage writes.
    pub junit: Option<&'static str>,
    /// Files worth keeping from the stage.
    pub artifacts: &'static [&'static str],
}

/// How often Jenkins polls the repository: the Jenkinsfile's `pollSCM`
/// and the Jenkins job's SCM trigger (jenkins.rs) say the same.
pub const POLL_SCM: &str = "H/2 * * * *";

/// The report files, relative to the repository.
pub const JUNIT: &str = "target/eshop-junit.xml";
pub const CLIPPY: &str = "target/clippy.json";

#[derive(Debug, Clone)]
pub struct Model {
    pub project: String,
    /// The branch whose pushes ship.
    pub branch: String,
    /// In order; a failing stage stops the ones after it.
    pub stages: Vec<Stage>,
}

/// `eshop <args>` as a pipeline runs it: the CLI of the commit under
/// test, built by the build stage (cargo finds it up to date).
fn eshop(args: &str) -> String {
    format!("cargo run --locked --quiet --bin eshop -- {args}")
}

pub fn model(cfg: &Config) -> Model {
    let deploy = match cfg.target {
        // On the local target phase 2 runs the containers: that is the
        // deployment.
        Target::Local => "phase images apply",
        Target::Aws => "phase kubernetes apply",
    };
    let deploy_creds: &'static [Cred] = match cfg.target {
        Target::Local => &[],
        Target::Aws => &[Cred::Kubeconfig],
    };
    let stage = |id, title, run: String| Stage {
        id,
        title,
        run,
        creds: &[],
        ships: false,
        junit: None,
        artifacts: &[],
    };
    let stages = vec![
        stage("build", "Build", "cargo build --locked --workspace".into()),
        Stage {
            creds: &[Cred::Sonar],
            artifacts: &[CLIPPY],
            ..stage("analysis", "Static analysis", eshop("pipeline analysis"))
        },
        Stage {
            junit: Some(JUNIT),
            artifacts: &[JUNIT],
            ..stage("unit-tests", "Unit tests", eshop("pipeline test"))
        },
        // Not `image`: GitLab reserves that name for its global keyword.
        stage("images", "Images", eshop("pipeline image")),
        stage("smoke", "Container smoke test", eshop("pipeline smoke")),
        Stage {
            creds: &[Cred::Registry],
            ships: true,
            ..stage("push", "Push", eshop("pipeline push"))
        },
        Stage {
            creds: deploy_creds,
            ships: true,
            ..stage("deploy", "Deploy", eshop(deploy))
        },
        Stage {
            creds: deploy_creds,
            ships: true,
            ..stage("verify", "Post-deploy check", eshop("status"))
        },
    ];
    Model {
        project: cfg.project.clone(),
        branch: cfg.pipeline.branch.clone(),
        stages,
    }
}

/// The first line of every file eshop writes for this project: what
/// wrote it, and that eshop owns it (destroy removes only files that
/// start with it).
pub fn marker(project: &str) -> String {
    format!("Written by eshop (phase 8 pipeline, project {project}): `eshop phase pipeline apply` rewrites it, `eshop phase pipeline destroy` removes it.")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn cfg(text: &str) -> Config {
        Config::parse(
            text,
            std::path::Path::new("/repo/eshop.toml"),
            std::path::Path::new("/repo"),
            &std::collections::BTreeMap::new(),
            &crate::config::Overrides::default(),
        )
        .unwrap()
    }

    #[test]
    fn every_stage_is_one_short_command() {
        let m = model(&cfg("project = \"shop\"\n"));
        let ids: Vec<_> = m.stages.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [
                "build",
                "analysis",
                "unit-tests",
                "images",
                "smoke",
                "push",
                "deploy",
                "verify"
            ]
        );
        for s in &m.stages {
            assert!(
                s.run.len() < 80 && !s.run.contains(['\n', ';', '&', '|', '$', '\'', '"']),
                "{}: {}",
                s.id,
                s.run
            );
        }
        assert!(m.stages.iter().filter(|s| s.ships).count() == 3);
        let deploy = |t: &str| model(&cfg(t)).stages[6].run.clone();
        assert!(deploy("").ends_with("phase images apply"));
        assert!(deploy("target = \"aws\"\n").ends_with("phase kubernetes apply"));
    }
}
