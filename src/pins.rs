//! Downloads pinned by sha256, like Cargo.lock or Terraform's provider
//! lock: what eshop applies from the network with cluster-admin (Calico,
//! metrics-server, local-path-provisioner, the Dynatrace Operator) must
//! have the sha256 the configuration (`…_sha256`) or `eshop.lock` pins.
//! The first download of a source with no pin records its sha256 in
//! eshop.lock (beside eshop.toml: commit it); from then on a download that
//! differs stops eshop before anything is applied.
//!
//! Verified content is kept under `.eshop/downloads/<sha256>`, so a re-run
//! does not download again.

use crate::config::{Config, Pinned};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

pub const LOCK_FILE: &str = "eshop.lock";

const HEADER: &str = "\
# eshop.lock: the sha256 of every manifest eshop applies from the network,
# recorded by eshop the first time it downloaded each. Commit this file: a
# later download that differs stops eshop before anything is applied. To
# accept a new version, change the version in eshop.toml (a new source gets
# its own entry) or, after reviewing the new content, delete the entry.
";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    #[serde(default)]
    manifest: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    version: String,
    source: String,
    sha256: String,
}

/// Where a pin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedBy {
    /// The `…_sha256` key.
    Config(String),
    Lock,
    /// Nothing yet: this download's sha256 becomes the pin.
    FirstUse,
}

#[derive(Debug)]
pub struct Fetched {
    pub text: String,
    pub sha256: String,
    pub by: PinnedBy,
}

/// Beside the config file (the state folder's parent).
fn lock_path(cfg: &Config) -> std::path::PathBuf {
    cfg.state_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join(LOCK_FILE)
}

fn read_lock(path: &Path) -> anyhow::Result<LockFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let lock: LockFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    for e in &lock.manifest {
        if !crate::util::is_sha256_hex(&e.sha256) {
            anyhow::bail!(
                "{}: the entry for {} holds no sha256 (64 hex digits)",
                path.display(),
                e.source
            );
        }
    }
    Ok(lock)
}

/// The pin for `p` and where it comes from; a configured pin that
/// contradicts eshop.lock is an error (one of them is wrong).
pub fn pin(cfg: &Config, p: &Pinned) -> anyhow::Result<(Option<String>, PinnedBy)> {
    let path = lock_path(cfg);
    let locked = read_lock(&path)?
        .manifest
        .into_iter()
        .find(|e| e.source == p.source)
        .map(|e| e.sha256.to_ascii_lowercase());
    match (&p.sha256, locked) {
        (Some(want), Some(l)) if *want != l => anyhow::bail!(
            "{} pins {} {} at sha256 {want}, but {} records {l} for {}: correct one of them",
            p.sha256_key,
            p.name,
            p.version,
            path.display(),
            p.source
        ),
        (Some(want), _) => Ok((Some(want.clone()), PinnedBy::Config(p.sha256_key.clone()))),
        (None, Some(l)) => Ok((Some(l), PinnedBy::Lock)),
        (None, None) => Ok((None, PinnedBy::FirstUse)),
    }
}

/// A plan line's words for `p`.
pub fn describe(cfg: &Config, p: &Pinned) -> anyhow::Result<String> {
    Ok(match pin(cfg, p)? {
        (Some(h), PinnedBy::Config(k)) => format!("sha256 {} (pinned by {k})", &h[..16]),
        (Some(h), _) => format!("sha256 {} (pinned by {LOCK_FILE})", &h[..16]),
        (None, _) => format!(
            "not pinned yet: apply records its sha256 in {LOCK_FILE}, from {}",
            p.source
        ),
    })
}

async fn download(p: &Pinned) -> anyhow::Result<Vec<u8>> {
    let what = || format!("{} {} ({})", p.name, p.version, p.source);
    if !p.source.starts_with("https://") {
        return std::fs::read(&p.source).map_err(|e| anyhow::anyhow!("{}: {e}", what()));
    }
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?
        .get(&p.source)
        .send()
        .await
        .map_err(|e| anyhow::Error::new(e).context(what()))?;
    if !r.status().is_success() {
        anyhow::bail!("{}: HTTP {}", what(), r.status());
    }
    Ok(r.bytes().await?.to_vec())
}

/// The content of `p`, checked against its pin. `record`: on first use,
/// write the pin to eshop.lock (apply does; plan only looks).
pub async fn fetch(
    cfg: &Config,
    ui: &crate::ui::Ui,
    phase: &str,
    p: &Pinned,
    record: bool,
) -> anyhow::Result<Fetched> {
    let (want, by) = pin(cfg, p)?;
    let cache = |h: &str| cfg.state_dir.join("downloads").join(h);
    let cached = want
        .as_deref()
        .and_then(|h| std::fs::read(cache(h)).ok())
        .filter(|b| Some(crate::util::hex(&Sha256::digest(b))) == want);
    let bytes = match cached {
        Some(b) => b,
        None => download(p).await?,
    };
    let got = crate::util::hex(&Sha256::digest(&bytes));
    if let Some(w) = &want {
        if *w != got {
            let (from, fix) = match &by {
                PinnedBy::Config(k) => (k.clone(), format!("update {k}")),
                _ => (
                    LOCK_FILE.to_owned(),
                    format!("delete its entry from {LOCK_FILE}"),
                ),
            };
            anyhow::bail!(
                "{} {} from {}: the download's sha256 is {got}, but {from} pins {w}. \
                 It changed upstream, on the mirror or in transit; nothing was applied. \
                 If the new content is expected (review it first), {fix} and run again.",
                p.name,
                p.version,
                p.source
            );
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} {} ({}): not UTF-8 text", p.name, p.version, p.source))?;
    crate::util::write_atomic(&cache(&got), text.as_bytes(), 0o644)?;
    if want.is_none() && record {
        record_pin(cfg, ui, phase, p, &got)?;
    }
    Ok(Fetched {
        text,
        sha256: got,
        by,
    })
}

fn record_pin(
    cfg: &Config,
    ui: &crate::ui::Ui,
    phase: &str,
    p: &Pinned,
    sha256: &str,
) -> anyhow::Result<()> {
    let path = lock_path(cfg);
    let mut lock = read_lock(&path)?;
    lock.manifest.retain(|e| e.source != p.source);
    lock.manifest.push(Entry {
        name: p.name.to_owned(),
        version: p.version.clone(),
        source: p.source.clone(),
        sha256: sha256.to_owned(),
    });
    lock.manifest
        .sort_by(|a, b| (&a.name, &a.source).cmp(&(&b.name, &b.source)));
    let text = format!("{HEADER}\n{}", toml::to_string(&lock)?);
    crate::util::write_atomic(&path, text.as_bytes(), 0o644)?;
    ui.info(
        phase,
        &format!(
            "{} {}: sha256 {sha256} recorded in {}",
            p.name,
            p.version,
            path.display()
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use std::collections::BTreeMap;

    fn config(dir: &Path, extra: &str) -> Config {
        Config::parse(
            &format!(
                "project = \"shop\"\n[kubernetes]\ncalico_manifest = \"calico.yaml\"\n{extra}"
            ),
            &dir.join("eshop.toml"),
            dir,
            &BTreeMap::new(),
            &Overrides::default(),
        )
        .unwrap()
    }

    fn sha(b: &[u8]) -> String {
        crate::util::hex(&Sha256::digest(b))
    }

    #[tokio::test]
    async fn first_use_records_later_downloads_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("calico.yaml"), "kind: List\n").unwrap();
        let cfg = config(d, "");
        let ui = crate::ui::Ui::new(crate::ui::Output::Json, -1);
        let p = &cfg.kube.calico;
        assert_eq!(pin(&cfg, p).unwrap(), (None, PinnedBy::FirstUse));
        // Plan looks without recording.
        fetch(&cfg, &ui, "t", p, false).await.unwrap();
        assert!(!d.join(LOCK_FILE).exists());
        let f = fetch(&cfg, &ui, "t", p, true).await.unwrap();
        assert_eq!(f.sha256, sha(b"kind: List\n"));
        assert_eq!(
            pin(&cfg, p).unwrap(),
            (Some(f.sha256.clone()), PinnedBy::Lock)
        );
        // The lock is a file people read and commit.
        let lock = std::fs::read_to_string(d.join(LOCK_FILE)).unwrap();
        assert!(lock.starts_with("# eshop.lock"), "{lock}");
        assert!(lock.contains("name = \"calico\""), "{lock}");

        // Changed at the source: refused, naming both hashes.
        std::fs::write(d.join("calico.yaml"), "kind: List\n# more\n").unwrap();
        std::fs::remove_dir_all(cfg.state_dir.join("downloads")).unwrap();
        let e = fetch(&cfg, &ui, "t", p, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&f.sha256) && e.contains(&sha(b"kind: List\n# more\n")),
            "{e}"
        );
        // A cached copy that no longer matches its name is not trusted: it
        // is downloaded again (and here refused).
        std::fs::create_dir_all(cfg.state_dir.join("downloads")).unwrap();
        std::fs::write(
            cfg.state_dir.join("downloads").join(&f.sha256),
            "tampered\n",
        )
        .unwrap();
        assert!(fetch(&cfg, &ui, "t", p, true).await.is_err());
    }

    #[tokio::test]
    async fn a_configured_pin_wins_and_must_agree_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("calico.yaml"), "kind: List\n").unwrap();
        let good = sha(b"kind: List\n");
        let ui = crate::ui::Ui::new(crate::ui::Output::Json, -1);

        let wrong = "0".repeat(64);
        let cfg = config(d, &format!("calico_sha256 = \"{wrong}\"\n"));
        let e = fetch(&cfg, &ui, "t", &cfg.kube.calico, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("kubernetes.calico_sha256 pins"), "{e}");
        assert!(
            !d.join(LOCK_FILE).exists(),
            "a failed download recorded a pin"
        );

        let cfg = config(d, &format!("calico_sha256 = \"{}\"\n", good.to_uppercase()));
        let f = fetch(&cfg, &ui, "t", &cfg.kube.calico, true).await.unwrap();
        assert_eq!(f.by, PinnedBy::Config("kubernetes.calico_sha256".into()));
        assert!(
            !d.join(LOCK_FILE).exists(),
            "a configured pin needs no lock entry"
        );

        // Lock and configuration disagree: one of them is wrong.
        let plain = config(d, "");
        fetch(&plain, &ui, "t", &plain.kube.calico, true)
            .await
            .unwrap();
        let cfg = config(d, &format!("calico_sha256 = \"{wrong}\"\n"));
        let e = pin(&cfg, &cfg.kube.calico).unwrap_err().to_string();
        assert!(e.contains("correct one of them"), "{e}");
    }
}
