//! The state file, one per project and target (`<project>-<target>.json`,
//! so two configs in one folder keep apart): a cache of what eshop last
//! did and a log, never the truth (ownership is by labels, so destroy
//! works without it). What phases read back from it is re-validated
//! (see `Ctx::recall`): a hand-edited file is not a way in.
//!
//! Writes are atomic (temp file, fsync, rename) so a crash leaves either the
//! old or the new state, and an exclusive lock on a sibling file keeps two
//! runs against the same target from interleaving.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub version: u32,
    pub project: String,
    pub target: String,
    /// Per phase, whatever that phase wants to remember.
    #[serde(default)]
    pub phases: BTreeMap<String, serde_json::Value>,
    /// The last few runs: when, what, how it ended.
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub at_unix: u64,
    pub command: String,
    pub outcome: String,
}

const LOG_KEEP: usize = 50;

/// An open, locked state file. Dropping it releases the lock.
pub struct Store {
    path: PathBuf,
    _lock: File,
    pub state: State,
}

impl Store {
    pub fn open(dir: &Path, project: &str, target: &str) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create state directory {}: {e}", dir.display()))?;
        let stem = format!("{project}-{target}");
        let lock_path = dir.join(format!("{stem}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another eshop run holds {} (target {target}); wait for it to finish",
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                anyhow::bail!("cannot lock {}: {e}", lock_path.display())
            }
        }
        let path = dir.join(format!("{stem}.json"));
        adopt_legacy(dir, project, target, &path);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                // The state is only a cache: a corrupt file is set aside, not fatal.
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(&path, &aside);
                eprintln!(
                    "warning: state file {} was unreadable ({e}); moved to {} and starting fresh",
                    path.display(),
                    aside.display()
                );
                State::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        if !state.project.is_empty() && state.project != project {
            anyhow::bail!(
                "state file {} belongs to project {:?}, not {project:?}: was it copied or renamed? Move it aside to start fresh",
                path.display(),
                state.project
            );
        }
        let state = State {
            version: 1,
            project: project.to_owned(),
            target: target.to_owned(),
            ..state
        };
        Ok(Store {
            path,
            _lock: lock,
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn phase(&self, name: &str) -> Option<&serde_json::Value> {
        self.state.phases.get(name)
    }

    pub fn set_phase(&mut self, name: &str, value: serde_json::Value) -> anyhow::Result<()> {
        self.state.phases.insert(name.to_owned(), value);
        self.save()
    }

    pub fn clear_phase(&mut self, name: &str) -> anyhow::Result<()> {
        self.state.phases.remove(name);
        self.save()
    }

    pub fn log(&mut self, command: &str, outcome: &str) -> anyhow::Result<()> {
        let at_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.state.log.push(LogEntry {
            at_unix,
            command: command.to_owned(),
            outcome: outcome.to_owned(),
        });
        let excess = self.state.log.len().saturating_sub(LOG_KEEP);
        self.state.log.drain(..excess);
        self.save()
    }

    /// Temp file in the same directory, fsync, rename: readers and crashes
    /// see the old file or the new one, never half of one.
    pub fn save(&self) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.state)?;
        crate::util::write_atomic(&self.path, &bytes, 0o600)
    }
}

/// Before 0.1 state files were named `<target>.json`, shared by every
/// project in the folder. The old file becomes this project's only if it
/// says it is; another project's is left where it is.
fn adopt_legacy(dir: &Path, project: &str, target: &str, path: &Path) {
    let old = dir.join(format!("{target}.json"));
    if path.exists() || !old.exists() {
        return;
    }
    let theirs = std::fs::read(&old)
        .ok()
        .and_then(|b| serde_json::from_slice::<State>(&b).ok());
    if theirs.is_some_and(|s| s.project == project && s.target == target) {
        let _ = std::fs::rename(&old, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_cannot_take_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), "p", "local").unwrap();
        let err = Store::open(dir.path(), "p", "local")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("another eshop run"), "{err}");
        // Other targets are independent.
        Store::open(dir.path(), "p", "aws").unwrap();
        drop(first);
        Store::open(dir.path(), "p", "local").unwrap();
    }

    #[test]
    fn state_survives_a_reopen_and_corruption_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path(), "p", "local").unwrap();
            s.set_phase("build", serde_json::json!({"fingerprint": "abc"}))
                .unwrap();
        }
        {
            let s = Store::open(dir.path(), "p", "local").unwrap();
            assert_eq!(s.phase("build").unwrap()["fingerprint"], "abc");
        }
        std::fs::write(dir.path().join("p-local.json"), b"{not json").unwrap();
        let s = Store::open(dir.path(), "p", "local").unwrap();
        assert!(s.phase("build").is_none());
        assert!(dir.path().join("p-local.json.corrupt").exists());
    }

    #[test]
    fn two_projects_in_one_folder_keep_their_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Store::open(dir.path(), "kind-demo", "local").unwrap();
        a.set_phase("build", serde_json::json!({"fingerprint": "a"}))
            .unwrap();
        // Another project on the same target: its own file and lock.
        let mut b = Store::open(dir.path(), "shop", "local").unwrap();
        assert!(b.phase("build").is_none());
        b.set_phase("build", serde_json::json!({"fingerprint": "b"}))
            .unwrap();
        drop((a, b));
        let a = Store::open(dir.path(), "kind-demo", "local").unwrap();
        assert_eq!(a.phase("build").unwrap()["fingerprint"], "a");
        assert_eq!(a.state.project, "kind-demo");
    }

    #[test]
    fn a_state_file_of_another_project_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "other", "local").unwrap().save());
        std::fs::rename(
            dir.path().join("other-local.json"),
            dir.path().join("p-local.json"),
        )
        .unwrap();
        let err = Store::open(dir.path(), "p", "local")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("belongs to project \"other\""), "{err}");
        let kept = std::fs::read_to_string(dir.path().join("p-local.json")).unwrap();
        assert!(kept.contains("\"other\""));
    }

    #[test]
    fn a_legacy_state_file_is_adopted_only_by_its_own_project() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = serde_json::json!({"version": 1, "project": "p", "target": "local",
            "phases": {"build": {"fingerprint": "old"}}});
        std::fs::write(dir.path().join("local.json"), legacy.to_string()).unwrap();
        let other = Store::open(dir.path(), "q", "local").unwrap();
        assert!(other.phase("build").is_none());
        assert!(dir.path().join("local.json").exists(), "not q's to take");
        let mine = Store::open(dir.path(), "p", "local").unwrap();
        assert_eq!(mine.phase("build").unwrap()["fingerprint"], "old");
        assert!(!dir.path().join("local.json").exists());
    }
}
