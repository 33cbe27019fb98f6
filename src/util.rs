//! Mechanisms every phase shares, written once: content hashes, the
//! deterministic tar a build context is made of, atomic file writes,
//! XML text and waiting for a condition with a deadline.

use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// Text for XML (JUnit reports, Jenkins job configurations): the five
/// entities escaped, and no character XML 1.0 forbids.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 in hex (64 digits), as [`hex`] writes one; what registries
/// put after `sha256:`.
pub fn is_sha256_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `sha256:` and a SHA-256 in hex: a registry digest, a CA's hash.
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(is_sha256_hex)
}

/// The first 16 hex digits of the SHA-256 of `bytes`: content tags.
pub fn content_tag(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))[..16].to_owned()
}

/// 16 hex digits naming a list of parts (each ended by a NUL, so
/// `["ab", "c"]` and `["a", "bc"]` differ): spec hashes on labels/tags.
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize()[..8])
}

/// A tar with fixed mtimes and owners, so equal inputs give equal bytes
/// and therefore equal content tags.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn file(&mut self, path: &str, mode: u32, bytes: &[u8]) -> anyhow::Result<()> {
        self.file_owned(path, mode, 0, bytes)
    }

    /// [`Tar::file`] owned by `uid` (group 0).
    pub fn file_owned(
        &mut self,
        path: &str,
        mode: u32,
        uid: u64,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.b.append_data(&mut h, path, bytes)?;
        Ok(())
    }

    pub fn dir(&mut self, path: &str) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Directory);
        self.b.append_data(&mut h, path, std::io::empty())?;
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.b.into_inner()?)
    }
}

/// Writes `bytes` to `path` so that readers and crashes see the old file
/// or the new one, never half of one: a temp file in the same folder,
/// fsync, rename. `mode` applies to a new file (0o600 for credentials).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", path.display()))?;
    Ok(())
}

/// 32 letters and digits, ~190 bits: generated credentials (database,
/// Grafana), safe inside a URL such as DATABASE_URL.
pub fn random_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// How [`poll_until`] spaces its checks.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// The same pause every time (a local daemon: cheap to ask).
    Every(Duration),
    /// Doubling from the first pause up to the second (a remote API).
    Backoff(Duration, Duration),
}

/// The deadline of [`poll_until`] passed: callers that know more about
/// what they waited for (the last state seen) can say so.
#[derive(Debug, thiserror::Error)]
#[error("{what}: gave up after {after:.0?}")]
pub struct TimedOut {
    pub what: String,
    pub after: Duration,
}

/// Asks `check` until it returns `Some(value)`, or fails once `deadline`
/// has passed, saying what it waited for. `check` is a pure condition: it
/// reads the world and answers; an error from it stops the wait at once
/// (a stopped container will not become healthy by waiting).
pub async fn poll_until<T, F, Fut>(
    deadline: Duration,
    pace: Pace,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut pause = match pace {
        Pace::Every(d) | Pace::Backoff(d, _) => d,
    };
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if start.elapsed() >= deadline {
            return Err(TimedOut {
                what: what.to_owned(),
                after: deadline,
            }
            .into());
        }
        tokio::time::sleep(pause.min(deadline.saturating_sub(start.elapsed()))).await;
        if let Pace::Backoff(_, max) = pace {
            pause = (pause * 2).min(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_url_safe() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(short_hash(&["ab", "c"]), short_hash(&["a", "bc"]));
        assert_eq!(short_hash(&["x"]).len(), 16);
        assert_eq!(content_tag(b"").len(), 16);
        // SHA-256 of the empty string.
        assert_eq!(content_tag(b""), "e3b0c44298fc1c14");
    }

    #[test]
    fn tars_of_equal_inputs_are_equal_and_readable() {
        let make = || {
            let mut t = Tar::new();
            t.dir("d").unwrap();
            t.file("d/f", 0o644, b"hello").unwrap();
            t.finish().unwrap()
        };
        let (a, b) = (make(), make());
        assert_eq!(a, b);
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["d", "d/f"]);
    }

    #[test]
    fn atomic_writes_replace_whole_files_with_the_mode_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/secret");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn polling_returns_the_value_errors_stop_it_and_the_deadline_names_the_wait() {
        let mut n = 0;
        let v = poll_until(
            Duration::from_secs(5),
            Pace::Every(Duration::from_millis(1)),
            "n",
            || {
                n += 1;
                let now = n;
                async move { Ok((now >= 3).then_some(now)) }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
        let e = poll_until::<(), _, _>(
            Duration::from_secs(5),
            Pace::Every(Duration::from_millis(1)),
            "x",
            || async { anyhow::bail!("stopped") },
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "stopped");
        let e = poll_until::<(), _, _>(
            Duration::from_millis(30),
            Pace::Backoff(Duration::from_millis(1), Duration::from_millis(8)),
            "container x healthy",
            || async { Ok(None) },
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("container x healthy: gave up after"),
            "{e}"
        );
    }
}
