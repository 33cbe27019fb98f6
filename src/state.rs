//! The per-target state file: a cache of what eshop last did and a log,
//! never the truth (ownership is by labels, so destroy works without it).
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
        let lock_path = dir.join(format!("{target}.lock"));
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
        let path = dir.join(format!("{target}.json"));
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
        std::fs::write(dir.path().join("local.json"), b"{not json").unwrap();
        let s = Store::open(dir.path(), "p", "local").unwrap();
        assert!(s.phase("build").is_none());
        assert!(dir.path().join("local.json.corrupt").exists());
    }
}
