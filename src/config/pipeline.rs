//! `[pipeline]` (phase 8): the CI/CD pipeline eshop renders for Jenkins,
//! GitLab CI and GitHub Actions, the Jenkins job it keeps, and the local
//! push-to-deploy remote. The Jenkins credentials come only from the
//! environment and print as `<redacted>`.

use super::apm::check_url;
use super::layer::{optional, Origin};
use super::{ConfigError, Secret};
use serde::Deserialize;
use toml::Spanned;

pub const JENKINS_USER_ENV: &str = "ESHOP_JENKINS_USER";
pub const JENKINS_TOKEN_ENV: &str = "ESHOP_JENKINS_TOKEN";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePipeline {
    enabled: Option<Spanned<bool>>,
    branch: Option<Spanned<String>>,
    jenkins_url: Option<Spanned<String>>,
    jenkins_job: Option<Spanned<String>>,
    repository_url: Option<Spanned<String>>,
    push_to_deploy: Option<Spanned<bool>>,
}

/// A Jenkins eshop keeps the pipeline job on.
#[derive(Debug, Clone)]
pub struct Jenkins {
    /// Base URL without a trailing slash.
    pub url: String,
    pub job: String,
    /// What the job checks out ("Pipeline script from SCM").
    pub repository_url: String,
    pub user: String,
    pub token: Secret,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Phase 8 does something (writes the files, keeps the job).
    pub enabled: bool,
    /// The branch whose pushes ship and deploy.
    pub branch: String,
    pub jenkins: Option<Jenkins>,
    /// `jenkins_url` when it is set but the credentials are not in the
    /// environment: fine for every command that does not manage the job
    /// (the pipeline's own stages run eshop on agents that have no Jenkins
    /// token); lib.rs refuses the ones that do, before touching anything.
    pub jenkins_without_credentials: Option<String>,
    /// On the local target: a bare repository whose post-receive hook runs
    /// the pipeline for each pushed commit.
    pub push_to_deploy: bool,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            enabled: false,
            branch: "main".into(),
            jenkins: None,
            jenkins_without_credentials: None,
            push_to_deploy: false,
        }
    }
}

/// A git branch name that means the same in a shell, YAML, Groovy and a
/// ref: letters, digits, `.`, `_`, `-`, `/`; no `..`, no leading `-` or
/// `/`, no trailing `/` or `.lock`.
fn check_branch(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && !s.contains("..")
        && !s.contains("//")
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.ends_with(".lock");
    ok.then(|| s.to_owned()).ok_or_else(|| {
        "must be a branch name of letters, digits, '.', '_', '-' and '/' (e.g. main)".into()
    })
}

/// A Jenkins job name: letters, digits, `.`, `_`, `-`.
pub(crate) fn check_job(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| s.to_owned())
        .ok_or_else(|| "must be 1-64 letters, digits, '.', '_' or '-'".into())
}

/// What Jenkins clones: an http(s) URL without credentials (they belong in
/// a Jenkins credential), or an SSH address (`git@host:path`,
/// `ssh://…`).
fn check_repository(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        return check_url(s, false);
    }
    let ok = !s.is_empty()
        && s.len() <= 500
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"'\"\\`$<>&;|".contains(&b));
    ok.then(|| s.to_owned()).ok_or_else(|| {
        "must be an https URL or an SSH address (git@host:owner/repo.git) without quotes or shell characters".into()
    })
}

pub(super) fn pipeline(
    o: &Origin,
    f: &FilePipeline,
    project: &str,
) -> Result<Pipeline, ConfigError> {
    let enabled = o
        .key("pipeline.enabled", &f.enabled)
        .env("ESHOP_PIPELINE_ENABLED")
        .or(false, |b| Ok(*b))?;
    let branch = o
        .key("pipeline.branch", &f.branch)
        .env("ESHOP_PIPELINE_BRANCH")
        .or("main".to_owned(), check_branch)?;
    let push_to_deploy = o
        .key("pipeline.push_to_deploy", &f.push_to_deploy)
        .env("ESHOP_PIPELINE_PUSH_TO_DEPLOY")
        .or(false, |b| Ok(*b))?;
    let url_layer = o
        .key("pipeline.jenkins_url", &f.jenkins_url)
        .env("ESHOP_JENKINS_URL");
    let url = url_layer.get(optional(|u| check_url(u, false)))?.flatten();
    let job = o
        .key("pipeline.jenkins_job", &f.jenkins_job)
        .env("ESHOP_JENKINS_JOB")
        .or(format!("eshop-{project}"), check_job)?;
    let repo_layer = o
        .key("pipeline.repository_url", &f.repository_url)
        .env("ESHOP_PIPELINE_REPOSITORY_URL");
    let repository_url = repo_layer.get(optional(check_repository))?.flatten();
    let user = o
        .secret(JENKINS_USER_ENV)
        .get(optional(|u| Ok(u.to_owned())))?;
    let token = o
        .secret(JENKINS_TOKEN_ENV)
        .get(optional(|t| Ok(Secret::new(t.to_owned()))))?;
    let mut jenkins_without_credentials = None;
    let jenkins = match url {
        None => None,
        Some(url) => {
            let Some(repository_url) = repository_url else {
                return Err(url_layer.blame(
                    "needs pipeline.repository_url: the repository the Jenkins job checks out",
                ));
            };
            match (user, token) {
                (Some(Some(user)), Some(Some(token))) => Some(Jenkins {
                    url,
                    job,
                    repository_url,
                    user,
                    token,
                }),
                _ => {
                    jenkins_without_credentials = Some(url);
                    None
                }
            }
        }
    };
    Ok(Pipeline {
        enabled,
        branch,
        jenkins,
        jenkins_without_credentials,
        push_to_deploy,
    })
}

/// The error for a command that would manage the Jenkins job without
/// the credentials to.
pub fn missing_credentials(url: &str) -> ConfigError {
    ConfigError(format!(
        "pipeline.jenkins_url = {url:?} needs {JENKINS_USER_ENV} and {JENKINS_TOKEN_ENV} in the environment (a Jenkins user and its API token) to keep the job"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_jobs_and_repositories_are_checked() {
        for good in ["main", "release/1.2", "feature_x-1"] {
            assert_eq!(check_branch(good).unwrap(), good);
        }
        for bad in [
            "", "-x", "a..b", "a b", "a/", "x.lock", "$(id)", "a'b", ".x",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
        assert!(check_job("eshop-shop").is_ok());
        assert!(check_job("a/b").is_err());
        for good in [
            "https://git.example.com/shop/eshop.git",
            "git@github.com:shop/eshop.git",
            "ssh://git@host:2222/shop.git",
        ] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "https://user:pw@host/x.git",
            "git@host:x'; rm -rf /",
            "-oProxyCommand=x",
            "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }
}
