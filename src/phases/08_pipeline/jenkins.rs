//! The Jenkins job that runs the Jenkinsfile, kept through Jenkins's REST
//! API: a Pipeline job ("Pipeline script from SCM") that checks out
//! `pipeline.repository_url` at `pipeline.branch`, reads `Jenkinsfile`, and
//! polls the repository on the Jenkinsfile's own schedule.
//!
//! eshop owns the job only while its description carries eshop's marker for
//! this project ([`marker`]): a job of the same name without it is refused,
//! never updated or deleted.
//!
//! The API token goes only into the Authorization header (basic auth, which
//! reqwest marks sensitive); errors name the URL and the variables, never
//! a value.

use super::model::{marker, POLL_SCM};
use super::{diff, files, Action, Change, Ctx, Status, PHASE};
use crate::config::pipeline::{Jenkins, JENKINS_TOKEN_ENV, JENKINS_USER_ENV};
use crate::config::Config;
use crate::util::xml;
use anyhow::{anyhow, bail, Context as _};
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use std::time::Duration;

/// One API call's limit: Jenkins answers these from memory, so a slow
/// answer means a Jenkins in trouble, not a big job.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The job's `config.xml`: a Pipeline job whose definition is the
/// repository's `Jenkinsfile`, triggered by polling (the same schedule as
/// the Jenkinsfile's `pollSCM`, so whichever Jenkins reads first agrees).
/// The elements are laid out as Jenkins itself stores them (XStream's
/// order and defaults), so the copy Jenkins returns compares equal
/// after [`normalise`].
pub fn job_config(cfg: &Config, j: &Jenkins) -> String {
    let branch = format!("*/{}", cfg.pipeline.branch);
    format!(
        r#"<flow-definition plugin="workflow-job">
  <actions/>
  <description>{description}</description>
  <keepDependencies>false</keepDependencies>
  <properties>
    <org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>
      <triggers>
        <hudson.triggers.SCMTrigger>
          <spec>{spec}</spec>
          <ignorePostCommitHooks>false</ignorePostCommitHooks>
        </hudson.triggers.SCMTrigger>
      </triggers>
    </org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>
  </properties>
  <definition class="org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition" plugin="workflow-cps">
    <scm class="hudson.plugins.git.GitSCM" plugin="git">
      <configVersion>2</configVersion>
      <userRemoteConfigs>
        <hudson.plugins.git.UserRemoteConfig>
          <url>{url}</url>
        </hudson.plugins.git.UserRemoteConfig>
      </userRemoteConfigs>
      <branches>
        <hudson.plugins.git.BranchSpec>
          <name>{branch}</name>
        </hudson.plugins.git.BranchSpec>
      </branches>
      <extensions/>
    </scm>
    <scriptPath>{script}</scriptPath>
    <lightweight>true</lightweight>
  </definition>
  <triggers/>
  <disabled>false</disabled>
</flow-definition>
"#,
        description = xml(&marker(&cfg.project)),
        spec = xml(POLL_SCM),
        url = xml(&j.repository_url),
        branch = xml(&branch),
        script = xml(files::JENKINSFILE),
    )
}

/// A config.xml as eshop compares it. Jenkins rewrites what it stores in
/// ways that change no setting, and these must not read as "changed":
/// - the XML declaration: Jenkins (XStream) writes its own,
///   `<?xml version='1.1' encoding='UTF-8'?>`, whatever was posted (eshop
///   posts none);
/// - plugin versions: `plugin="git"` is stored as `plugin="git@5.2.2"`;
/// - line endings and trailing whitespace, on each line and at the end.
///
/// Anything else Jenkins adds (a plugin's new default field) shows as a
/// difference, and apply posts the model again: harmless, and visible in
/// plan's diff.
pub fn normalise(text: &str) -> String {
    let mut s = text.trim_start_matches('\u{feff}').trim_start();
    if s.starts_with("<?xml") {
        s = s.find("?>").map_or(s, |end| &s[end + 2..]);
    }
    let mut out = String::with_capacity(s.len());
    for line in s.trim().lines() {
        out.push_str(&strip_plugin_versions(line.trim_end()));
        out.push('\n');
    }
    out
}

/// `plugin="git@5.2.2"` → `plugin="git"`.
fn strip_plugin_versions(line: &str) -> String {
    const ATTR: &str = "plugin=\"";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(ATTR) {
        let value_start = at + ATTR.len();
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        let end = rest.find('"').unwrap_or(rest.len());
        let name_end = rest[..end].find('@').unwrap_or(end);
        out.push_str(&rest[..name_end]);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a config.xml is one eshop wrote for `project`: its
/// `<description>` carries the marker.
pub fn is_ours(config: &str, project: &str) -> bool {
    let Some(start) = config.find("<description>") else {
        return false;
    };
    let text = &config[start + "<description>".len()..];
    let text = &text[..text.find("</description>").unwrap_or(text.len())];
    text.contains(&xml(&marker(project)))
}

/// The job on Jenkins, compared with the model.
#[derive(Debug, PartialEq, Eq)]
pub enum Job {
    Absent,
    Same,
    /// eshop's, with other settings (Jenkins's copy, normalised).
    Differs(String),
    /// Someone else's job of the same name.
    Foreign,
}

pub fn compare(have: Option<&str>, want: &str, project: &str) -> Job {
    match have {
        None => Job::Absent,
        Some(h) if normalise(h) == normalise(want) => Job::Same,
        Some(h) if is_ours(h, project) => Job::Differs(normalise(h)),
        Some(_) => Job::Foreign,
    }
}

/// The crumb Jenkins's CSRF protection wants on every POST, and the session
/// it belongs to (Jenkins ties a crumb to the session that fetched it).
struct Crumb {
    field: String,
    value: String,
    cookie: Option<String>,
}

/// A Jenkins REST client for one job.
struct Client<'a> {
    http: reqwest::Client,
    j: &'a Jenkins,
    /// Fetched before the first POST; `Some(None)`: CSRF protection is off.
    crumb: Option<Option<Crumb>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CrumbJson {
    crumb_request_field: String,
    crumb: String,
}

impl<'a> Client<'a> {
    fn new(j: &'a Jenkins) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect is reported (a Jenkins URL to correct), not followed
            // with the credentials.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Client {
            http,
            j,
            crumb: None,
        })
    }

    fn job_path(&self, tail: &str) -> String {
        format!("/job/{}/{tail}", self.j.job)
    }

    /// One call; the answer is returned whatever its status, except a
    /// refusal of the credentials, which is an error naming the variables.
    /// Redirects are not followed (the credentials stay with this URL).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.j.url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.j.user, Some(self.j.token.expose()));
        if let Some(Some(c)) = &self.crumb {
            req = req.header(c.field.as_str(), c.value.as_str());
            if let Some(cookie) = &c.cookie {
                req = req.header(COOKIE, cookie.as_str());
            }
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/xml").body(body);
        }
        // The error names the URL and keeps its sources (printed with {:#}).
        let r = req
            .send()
            .await
            .map_err(|e| anyhow::Error::new(e.without_url()).context(format!("{method} {url}")))?;
        match r.status() {
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(anyhow!(
                "{method} {url}: Jenkins refused the user's token (HTTP {}): check {JENKINS_USER_ENV} and {JENKINS_TOKEN_ENV} (a Jenkins user and one of its API tokens; the user needs Job/Read, Create, Configure and Delete)",
                s.as_u16()
            )),
            _ => Ok(r),
        }
    }

    /// A GET whose 404 means "not there": Ok(None).
    async fn get(&self, path: &str) -> anyhow::Result<Option<Response>> {
        let r = self.send(Method::GET, path, None).await?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(r)),
            // Jenkins behind another base URL (https, a context path).
            s if s.is_redirection() => bail!(
                "GET {}{path}: Jenkins redirected (HTTP {}) to {:?}: set pipeline.jenkins_url to Jenkins's own base URL",
                self.j.url,
                s.as_u16(),
                r.headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("")
            ),
            s => bail!("GET {}{path}: HTTP {}", self.j.url, s.as_u16()),
        }
    }

    /// `GET crumbIssuer/api/json`, with the session cookie it set; 404:
    /// CSRF protection is off, POSTs need no crumb.
    async fn fetch_crumb(&self) -> anyhow::Result<Option<Crumb>> {
        const PATH: &str = "/crumbIssuer/api/json";
        let Some(r) = self.get(PATH).await? else {
            return Ok(None);
        };
        // reqwest keeps no cookies here: the `name=value` of each
        // Set-Cookie goes back as one Cookie header.
        let cookies: Vec<&str> = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::trim)
            .filter(|v| v.contains('='))
            .collect();
        let cookie = (!cookies.is_empty()).then(|| cookies.join("; "));
        let c: CrumbJson = r
            .json()
            .await
            .with_context(|| format!("GET {}{PATH}: not a crumb", self.j.url))?;
        Ok(Some(Crumb {
            field: c.crumb_request_field,
            value: c.crumb,
            cookie,
        }))
    }

    async fn post(&mut self, path: &str, body: Option<String>) -> anyhow::Result<()> {
        if self.crumb.is_none() {
            self.crumb = Some(self.fetch_crumb().await?);
        }
        let r = self.send(Method::POST, path, body).await?;
        // doDelete answers with a redirect to the job's parent.
        anyhow::ensure!(
            r.status().is_success() || r.status().is_redirection(),
            "POST {}{path}: HTTP {}",
            self.j.url,
            r.status().as_u16()
        );
        Ok(())
    }

    /// eshop's other jobs for `project` (left by an earlier
    /// `pipeline.jenkins_job`): top-level jobs whose description carries
    /// the project's marker, by Jenkins's own job list.
    async fn stale_jobs(&self, project: &str) -> anyhow::Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Listed {
            name: String,
            #[serde(default)]
            description: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            jobs: Vec<Listed>,
        }
        const PATH: &str = "/api/json?tree=jobs[name,description]";
        let Some(r) = self.get(PATH).await? else {
            return Ok(Vec::new());
        };
        let list: List = r
            .json()
            .await
            .with_context(|| format!("GET {}{PATH}: not a job list", self.j.url))?;
        let mark = marker(project);
        Ok(list
            .jobs
            .into_iter()
            .filter(|l| l.name != self.j.job)
            .filter(|l| l.description.as_deref().is_some_and(|d| d.contains(&mark)))
            // Names eshop could have given (pipeline.jenkins_job's rule),
            // so the path needs no escaping.
            .filter(|l| crate::config::pipeline::check_job(&l.name).is_ok())
            .map(|l| l.name)
            .collect())
    }

    /// The job's config.xml, or None when there is no such job.
    async fn config(&self) -> anyhow::Result<Option<String>> {
        let path = self.job_path("config.xml");
        match self.get(&path).await? {
            None => Ok(None),
            Some(r) => Ok(Some(r.text().await.with_context(|| {
                format!("GET {}{path}: reading the answer", self.j.url)
            })?)),
        }
    }

    /// The last build's result (`SUCCESS`, `FAILURE`, …; `running` while it
    /// runs), or None before the first build.
    async fn last_result(&self) -> anyhow::Result<Option<String>> {
        let path = self.job_path("lastBuild/api/json");
        let Some(r) = self.get(&path).await? else {
            return Ok(None);
        };
        let v: serde_json::Value = r
            .json()
            .await
            .with_context(|| format!("GET {}{path}: not JSON", self.j.url))?;
        Ok(Some(v["result"].as_str().unwrap_or("running").to_owned()))
    }
}

fn resource(j: &Jenkins) -> String {
    format!("jenkins job {}", j.job)
}

fn foreign(j: &Jenkins) -> anyhow::Error {
    anyhow!(
        "job {} exists on Jenkins and eshop did not create it (its description lacks eshop's marker; Jenkins at {}): rename or delete it there, or set pipeline.jenkins_job to another name",
        j.job,
        j.url
    )
}

/// The job, checked against the model before apply touches anything.
pub struct Checked<'a> {
    client: Client<'a>,
    job: Job,
    want: String,
    change: Change,
    /// eshop's jobs for this project under earlier names: deleted.
    stale: Vec<String>,
}

fn stale_change(name: &str, j: &Jenkins) -> Change {
    Change::new(
        format!("jenkins job {name}"),
        Action::Delete,
        format!(
            "eshop's job for this project under an earlier pipeline.jenkins_job (now {})",
            j.job
        ),
    )
}

/// Reads the job and compares it (None without `pipeline.jenkins_url`); a
/// job eshop did not create is an error. Shows an update's diff.
pub async fn check(ctx: &Ctx) -> anyhow::Result<Option<Checked<'_>>> {
    let cfg = &ctx.config;
    let Some(j) = &cfg.pipeline.jenkins else {
        return Ok(None);
    };
    if let Some(w) = cleartext(j) {
        ctx.ui.warn(PHASE, &w);
    }
    let client = Client::new(j)?;
    let want = job_config(cfg, j);
    let job = compare(client.config().await?.as_deref(), &want, &cfg.project);
    let name = resource(j);
    let change = match &job {
        Job::Absent => Change::new(name, Action::Create, format!("not on {}", j.url)),
        Job::Same => Change::new(name, Action::NoOp, "as the model renders it"),
        Job::Differs(have) => {
            for line in diff(have, &normalise(&want), 60) {
                ctx.ui.info(PHASE, &format!("{name}: {line}"));
            }
            Change::new(
                name,
                Action::Update,
                "its configuration differs from the model",
            )
        }
        Job::Foreign => return Err(foreign(j)),
    };
    let stale = client.stale_jobs(&cfg.project).await?;
    Ok(Some(Checked {
        client,
        job,
        want,
        change,
        stale,
    }))
}

/// plan's lines for the job, and for eshop's jobs under earlier names.
pub async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let Some(c) = check(ctx).await? else {
        return Ok(Vec::new());
    };
    let j = c.client.j;
    let mut out = vec![c.change];
    out.extend(c.stale.iter().map(|s| stale_change(s, j)));
    Ok(out)
}

/// Deletes eshop's jobs under earlier names; how many.
async fn delete_stale(
    ctx: &Ctx,
    client: &mut Client<'_>,
    stale: &[String],
) -> anyhow::Result<usize> {
    for name in stale {
        client.post(&format!("/job/{name}/doDelete"), None).await?;
        ctx.ui.info(
            PHASE,
            &format!("deleted jenkins job {name} (eshop's, under an earlier pipeline.jenkins_job)"),
        );
    }
    Ok(stale.len())
}

/// Creates or updates the job as [`check`] found it; the number of changes.
pub async fn converge(ctx: &Ctx, checked: Option<Checked<'_>>) -> anyhow::Result<usize> {
    let Some(mut c) = checked else {
        return Ok(0);
    };
    let job = c.client.j.job.clone();
    // The new name first: the pipeline keeps a job while the old one goes.
    let changed = match c.job {
        Job::Same | Job::Foreign => 0,
        Job::Absent => {
            c.client
                .post(&format!("/createItem?name={job}"), Some(c.want))
                .await?;
            ctx.ui.info(PHASE, &format!("created jenkins job {job}"));
            1
        }
        Job::Differs(_) => {
            let path = c.client.job_path("config.xml");
            c.client.post(&path, Some(c.want)).await?;
            ctx.ui.info(PHASE, &format!("updated jenkins job {job}"));
            1
        }
    };
    Ok(changed + delete_stale(ctx, &mut c.client, &c.stale).await?)
}

/// Deletes the job if it is eshop's, and eshop's jobs for the project
/// under earlier names; a missing job is fine, a foreign one is kept.
pub async fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let Some(j) = &ctx.config.pipeline.jenkins else {
        return Ok(0);
    };
    let mut client = Client::new(j)?;
    let stale = client.stale_jobs(&ctx.config.project).await?;
    let gone = delete_stale(ctx, &mut client, &stale).await?;
    Ok(gone + destroy_current(ctx, j, &mut client).await?)
}

async fn destroy_current(ctx: &Ctx, j: &Jenkins, client: &mut Client<'_>) -> anyhow::Result<usize> {
    match client.config().await? {
        None => Ok(0),
        Some(have) if !is_ours(&have, &ctx.config.project) => {
            ctx.ui.info(
                PHASE,
                &format!("kept {}: eshop did not create it", resource(j)),
            );
            Ok(0)
        }
        Some(_) => {
            let path = client.job_path("doDelete");
            client.post(&path, None).await?;
            ctx.ui.info(PHASE, &format!("deleted {}", resource(j)));
            Ok(1)
        }
    }
}

/// status's line for the job: whether it is there and eshop's, and the last
/// build's result (shown, not judged: the pipeline's own `eshop status`
/// stage runs while its build is the last one).
pub async fn status(cfg: &Config) -> Option<Status> {
    let j = cfg.pipeline.jenkins.as_ref()?;
    let (state, healthy) = match job_status(cfg, j).await {
        Ok(s) => s,
        Err(e) => (format!("not readable from here: {e:#}"), false),
    };
    Some(Status {
        resource: resource(j),
        state,
        healthy,
    })
}

async fn job_status(cfg: &Config, j: &Jenkins) -> anyhow::Result<(String, bool)> {
    let client = Client::new(j)?;
    let (state, healthy) = match compare(
        client.config().await?.as_deref(),
        &job_config(cfg, j),
        &cfg.project,
    ) {
        Job::Absent => return Ok(("absent: eshop phase pipeline apply".into(), false)),
        Job::Foreign => return Ok(("exists, not eshop's".into(), false)),
        Job::Same => ("up to date", true),
        Job::Differs(_) => ("differs from the model: eshop phase pipeline apply", false),
    };
    let last = match client.last_result().await? {
        Some(r) => format!("last build {r}"),
        None => "no build yet".to_owned(),
    };
    Ok((
        format!("{state}; {last} ({}/job/{}/)", j.url, j.job),
        healthy,
    ))
}

/// A warning when the token would cross a network in clear text.
fn cleartext(j: &Jenkins) -> Option<String> {
    let u = reqwest::Url::parse(&j.url).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    (u.scheme() == "http" && !loopback).then(|| {
        format!(
            "{JENKINS_TOKEN_ENV} goes to {} over plain http: anyone on the path can read it; use https://",
            j.url
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let env: std::collections::BTreeMap<String, String> = [
            (JENKINS_USER_ENV.to_owned(), "ci".to_owned()),
            (JENKINS_TOKEN_ENV.to_owned(), "tok".to_owned()),
        ]
        .into_iter()
        .collect();
        Config::parse(
            &format!("project = \"shop\"\n[pipeline]\nenabled = true\njenkins_url = \"https://ci.example.com/\"\n{extra}"),
            std::path::Path::new("/repo/eshop.toml"),
            std::path::Path::new("/repo"),
            &env,
            &crate::config::Overrides::default(),
        )
        .unwrap()
    }

    #[test]
    fn the_job_config_escapes_every_value_and_carries_the_marker() {
        let c = cfg(
            "repository_url = \"https://git.example.com/a&b/shop.git\"\nbranch = \"release/1.2\"\n",
        );
        let j = c.pipeline.jenkins.as_ref().unwrap();
        let x = job_config(&c, j);
        assert!(
            x.contains("<url>https://git.example.com/a&amp;b/shop.git</url>"),
            "{x}"
        );
        assert!(x.contains("<name>*/release/1.2</name>"));
        assert!(x.contains("<spec>H/2 * * * *</spec>"));
        assert!(x.contains("<scriptPath>Jenkinsfile</scriptPath>"));
        assert!(is_ours(&x, "shop"));
        assert!(!is_ours(&x, "shop2"));
        assert_eq!(x, job_config(&c, j), "deterministic");
    }

    #[test]
    fn what_jenkins_rewrites_compares_equal_and_nothing_else_does() {
        let c = cfg("repository_url = \"git@host:shop.git\"\n");
        let want = job_config(&c, c.pipeline.jenkins.as_ref().unwrap());
        let stored = format!(
            "<?xml version='1.1' encoding='UTF-8'?>\r\n{}  \n\n",
            want.replace("plugin=\"git\"", "plugin=\"git@5.2.2\"")
                .replace('\n', "\r\n")
        );
        assert_eq!(compare(Some(&stored), &want, "shop"), Job::Same);
        assert_eq!(compare(None, &want, "shop"), Job::Absent);
        let other = stored.replace("*/main", "*/trunk");
        assert!(matches!(
            compare(Some(&other), &want, "shop"),
            Job::Differs(_)
        ));
        let theirs = "<flow-definition><description>mine</description></flow-definition>";
        assert_eq!(compare(Some(theirs), &want, "shop"), Job::Foreign);
        // The marker must be in the description, not anywhere.
        let elsewhere = format!(
            "<project><displayName>{}</displayName></project>",
            marker("shop")
        );
        assert_eq!(compare(Some(&elsewhere), &want, "shop"), Job::Foreign);
    }

    #[test]
    fn plain_http_is_warned_about_off_loopback_only() {
        let mut j = cfg("repository_url = \"git@host:shop.git\"\n")
            .pipeline
            .jenkins
            .unwrap();
        assert!(cleartext(&j).is_none(), "https");
        j.url = "http://127.0.0.1:8080".into();
        assert!(cleartext(&j).is_none(), "loopback");
        j.url = "http://ci.example.com".into();
        assert!(cleartext(&j).unwrap().contains(JENKINS_TOKEN_ENV));
    }
}
