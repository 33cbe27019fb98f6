//! Phase 1, build: compile the bundled services in release mode, or
//! cargo's dev profile with `build.profile = "dev"` (and, when
//! `build.test = true`, test them). Skipped when the sources are unchanged
//! since the last successful build and the binaries are still there.

use super::{Action, Change, Ctx, Info, Outcome, Phase, Recalled, Status, EVERYWHERE};
use crate::config::{Config, Profile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Build;

pub const NAME: &str = "build";

/// Hashes every file that can change the binaries: the profile, the
/// workspace manifests and lock file, and everything under services/
/// except build output.
pub fn fingerprint(source_dir: &Path, profile: Profile) -> anyhow::Result<String> {
    let mut files = Vec::new();
    for top in ["Cargo.toml", "Cargo.lock"] {
        files.push(source_dir.join(top));
    }
    collect(&source_dir.join("services"), &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    // Release binaries keep the fingerprints they had before profiles.
    if profile != Profile::Release {
        h.update(profile.dir().as_bytes());
        h.update([0]);
    }
    for f in &files {
        let rel = f.strip_prefix(source_dir).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        let bytes =
            std::fs::read(f).map_err(|e| anyhow::anyhow!("reading {}: {e}", f.display()))?;
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(crate::util::hex(&h.finalize()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {} ({e}); is build.source_dir the eshop repository?",
            dir.display()
        )
    })?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// What a successful build records: the sources' fingerprint and where
/// cargo put each service's binary (phase 2 packs those files).
#[derive(Serialize, Deserialize)]
struct Recorded {
    fingerprint: String,
    binaries: BTreeMap<String, PathBuf>,
}

impl Recalled for Recorded {
    fn check(&self, cfg: &Config) -> Result<(), String> {
        if !crate::util::is_sha256_hex(&self.fingerprint) {
            return Err("fingerprint is not a sha256".into());
        }
        for (name, path) in &self.binaries {
            if crate::shop::find(cfg.shop, name).is_none() {
                return Err(format!(
                    "binary for {name:?}, which is not a service of the shop"
                ));
            }
            // cargo's output is <target>/<profile>/<service>: anything
            // else would put a file of someone's choosing into an image.
            let dir = cfg.profile.dir();
            let ok = path.is_absolute()
                && path.file_name().is_some_and(|f| f == name.as_str())
                && path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d == dir);
            if !ok {
                return Err(format!("{}: not a {dir} binary of {name}", path.display()));
            }
        }
        Ok(())
    }
}

/// The binaries a previous build recorded, if they still exist.
pub fn built_binaries(ctx: &Ctx) -> Option<BTreeMap<String, PathBuf>> {
    let bins = ctx.recall::<Recorded>(NAME)?.binaries;
    (ctx.config
        .shop
        .iter()
        .all(|s| bins.get(s.name).is_some_and(|p| p.exists())))
    .then_some(bins)
}

impl Build {
    fn plan_now(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        self.plan_for(
            ctx,
            &fingerprint(&ctx.config.source_dir, ctx.config.profile)?,
        )
    }

    fn plan_for(&self, ctx: &Ctx, fp: &str) -> anyhow::Result<Vec<Change>> {
        let recorded = ctx.recall::<Recorded>(NAME).map(|r| r.fingerprint);
        let (action, reason) = match (recorded, built_binaries(ctx)) {
            (Some(r), Some(_)) if r == *fp => (
                Action::NoOp,
                "sources unchanged since the last build".to_owned(),
            ),
            (Some(_), Some(_)) => (Action::Update, "sources changed".to_owned()),
            (Some(_), None) => (Action::Create, "binaries missing".to_owned()),
            (None, _) => (Action::Create, "never built by eshop".to_owned()),
        };
        Ok(ctx
            .config
            .shop
            .iter()
            .map(|s| Change::new(format!("binary {}", s.name), action, reason.clone()))
            .collect())
    }

    fn run_cargo(
        &self,
        ctx: &Ctx,
        args: &[&str],
        what: &str,
    ) -> anyhow::Result<BTreeMap<String, PathBuf>> {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&ctx.config.source_dir)
            .args(args)
            .args(profile_args(ctx.config.profile))
            .args(["--locked", "--message-format=json-render-diagnostics"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for s in ctx.config.shop {
            cmd.args(["-p", s.name]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot run cargo ({e}); is Rust installed?"))?;
        let progress = ctx.ui.spinner(NAME, what);
        // cargo prints its own human messages on stderr; keep the tail for errors.
        let stderr = child.stderr.take().expect("piped");
        let err_tail = std::thread::spawn(move || {
            let mut tail: Vec<String> = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                tail.push(line);
                if tail.len() > 60 {
                    tail.remove(0);
                }
            }
            tail
        });
        let mut bins = BTreeMap::new();
        let mut units = 0usize;
        let stdout = child.stdout.take().expect("piped");
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match msg["reason"].as_str() {
                Some("compiler-artifact") => {
                    units += 1;
                    let name = msg["target"]["name"].as_str().unwrap_or("?");
                    progress.set_message(format!("{what}: {units} units, last {name}"));
                    if let Some(exe) = msg["executable"].as_str() {
                        if crate::shop::find(ctx.config.shop, name).is_some() {
                            bins.insert(name.to_owned(), PathBuf::from(exe));
                        }
                    }
                }
                Some("compiler-message") if msg["message"]["level"] == "error" => {
                    if let Some(r) = msg["message"]["rendered"].as_str() {
                        eprint!("{r}");
                    }
                }
                _ => {}
            }
        }
        let status = child.wait()?;
        let tail = err_tail.join().unwrap_or_default();
        if !status.success() {
            drop(progress);
            anyhow::bail!("cargo {} failed:\n{}", args.join(" "), tail.join("\n"));
        }
        progress.finish(&format!("{what}: done ({units} units)"));
        Ok(bins)
    }
}

fn profile_args(p: Profile) -> &'static [&'static str] {
    match p {
        Profile::Release => &["--release"],
        Profile::Dev => &[],
    }
}

/// What `eshop phases` says this phase does.
const ABOUT: &str =
    "compile (and optionally test) the bundled services (release, or build.profile)";

impl Phase for Build {
    const INFO: Info = Info::new(1, NAME, ABOUT, EVERYWHERE);

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        self.plan_now(ctx)
    }

    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        // Fingerprint before compiling: an edit during the build then
        // shows up as a change on the next run instead of being lost.
        let fp = fingerprint(&ctx.config.source_dir, ctx.config.profile)?;
        let plan = self.plan_for(ctx, &fp)?;
        if plan.iter().all(|c| c.action == Action::NoOp) {
            ctx.ui.info(NAME, "up to date");
            return Ok(Outcome::default());
        }
        let bins = tokio::task::block_in_place(|| {
            if ctx.config.build_test {
                self.run_cargo(ctx, &["test", "--no-run"], "compiling tests")?;
                let mut cmd =
                    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                cmd.current_dir(&ctx.config.source_dir)
                    .arg("test")
                    .args(profile_args(ctx.config.profile))
                    .arg("--locked");
                for s in ctx.config.shop {
                    cmd.args(["-p", s.name]);
                }
                // The tests' report goes to stderr: stdout carries
                // eshop's own events (one JSON object a line with
                // --output json).
                let status = cmd.stdout(std::io::stderr()).status()?;
                anyhow::ensure!(status.success(), "service tests failed");
            }
            self.run_cargo(ctx, &["build"], "compiling services")
        })?;
        for s in ctx.config.shop {
            anyhow::ensure!(
                bins.contains_key(s.name),
                "cargo produced no binary for {}",
                s.name
            );
        }
        let record = Recorded {
            fingerprint: fp.clone(),
            binaries: bins,
        };
        ctx.set_phase_state(NAME, serde_json::to_value(&record)?)?;
        Ok(Outcome {
            changed: ctx.config.shop.len(),
        })
    }

    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        // Build output belongs to cargo's target directory, not to eshop:
        // only eshop's record of it goes.

        ctx.clear_phase_state(NAME)?;
        Ok(Outcome::default())
    }

    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let plan = self.plan_now(ctx)?;
        Ok(plan
            .into_iter()
            .map(|c| Status {
                resource: c.resource,
                healthy: c.action == Action::NoOp,
                state: if c.action == Action::NoOp {
                    "built, up to date".into()
                } else {
                    c.reason
                },
            })
            .collect())
    }
}
