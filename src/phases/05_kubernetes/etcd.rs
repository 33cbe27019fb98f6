//! etcd snapshots of a bootstrapped cluster (seed 004): `eshop phase
//! kubernetes snapshot` takes one on the control plane over SSH
//! (`etcdctl snapshot save` with kubeadm's etcd client certificate),
//! copies it back (0600), checks it (`etcdctl snapshot status`, and the
//! sha256 of both copies) and records what it holds beside it; the last
//! `kubernetes.snapshot_keep` stay. `restore` checks a snapshot against
//! its recorded sha256 and on the node before anything stops, shows what
//! it replaces, asks, then swaps it in (templates/kubeadm/etcd-restore.sh).

use super::bootstrap::{control_dir, nodes};
use crate::config::kube::{Mode, Role};
use crate::engines::ssh::{self, Conn};
use crate::phases::Ctx;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LIB: &str = include_str!("../../../templates/kubeadm/etcd-lib.sh");
const SNAPSHOT: &str = include_str!("../../../templates/kubeadm/etcd-snapshot.sh");
const RESTORE: &str = include_str!("../../../templates/kubeadm/etcd-restore.sh");
const LIVE: &str = include_str!("../../../templates/kubeadm/etcd-live.sh");
const CHECK: &str = include_str!("../../../templates/kubeadm/etcd-check.sh");
const REMOVE: &str = "rm -f -- '{{file}}'\n";
/// Where a snapshot to restore waits on the node.
const UPLOAD_DIR: &str = "/var/lib/eshop/etcd-restore";

/// What `etcdctl snapshot status -w json` says of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_key: i64,
    pub total_size: i64,
}

/// What eshop records beside a snapshot (`<file>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub taken: String,
    /// The control plane it came from.
    pub node: String,
    pub sha256: String,
    #[serde(flatten)]
    pub status: SnapStatus,
}

/// The live member, before a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    pub revision: i64,
    pub keys: i64,
    pub db_size: i64,
}

/// Where `snapshot` keeps them without `--out`.
pub fn dir(ctx: &Ctx) -> PathBuf {
    let c = &ctx.config;
    c.state_dir.join(format!("{}-etcd-snapshots", c.project))
}

async fn control_plane(ctx: &Ctx) -> anyhow::Result<(Conn, tempfile::TempDir)> {
    let cfg = &ctx.config;
    anyhow::ensure!(
        cfg.kube.mode == Mode::Bootstrap,
        "etcd snapshots need a cluster eshop bootstraps (kubernetes.mode = \"bootstrap\"): with an existing cluster, its own etcd tools apply"
    );
    let cp = nodes(ctx)
        .await?
        .into_iter()
        .find(|n| n.role == Role::ControlPlane)
        .ok_or_else(|| {
            anyhow::anyhow!("no control plane: phase 3 (aws) or [[kubernetes.nodes]] names it")
        })?;
    let dir = control_dir()?;
    let conn = ssh::connect(&cp, &cfg.ssh, dir.path()).await?;
    Ok((conn, dir))
}

/// `key=value` lines of a script's output.
fn fields(out: &str) -> BTreeMap<&str, &str> {
    out.lines().filter_map(|l| l.split_once('=')).collect()
}

fn field<'a>(f: &BTreeMap<&str, &'a str>, key: &str) -> anyhow::Result<&'a str> {
    f.get(key)
        .copied()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("the node's script printed no {key}"))
}

pub fn parse_status(json: &str) -> anyhow::Result<SnapStatus> {
    serde_json::from_str(json)
        .map_err(|e| anyhow::anyhow!("etcdctl snapshot status said {json:?}: {e}"))
}

/// `etcdctl endpoint status -w json` and `get --keys-only --limit=1 -w json` (its count is of the whole range).
pub fn parse_live(status: &str, count: &str) -> anyhow::Result<Live> {
    let s: serde_json::Value = serde_json::from_str(status)
        .map_err(|e| anyhow::anyhow!("etcdctl endpoint status said {status:?}: {e}"))?;
    let c: serde_json::Value = serde_json::from_str(count)
        .map_err(|e| anyhow::anyhow!("etcdctl get --keys-only --limit=1 said {count:?}: {e}"))?;
    let st = &s[0]["Status"];
    let num = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
    Ok(Live {
        revision: num(&st["header"]["revision"]),
        keys: num(&c["count"]),
        db_size: num(&st["dbSize"]),
    })
}

pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(crate::util::hex(&h.finalize()))
}

fn script(template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    let body = crate::render::render_pairs(template, vars, &[])?;
    Ok(format!("{LIB}\n{body}"))
}

fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// Takes a snapshot; returns where it is and what it holds.
pub async fn snapshot(ctx: &Ctx, out: Option<&Path>) -> anyhow::Result<(PathBuf, Recorded)> {
    const PHASE: &str = super::PHASE;
    let cfg = &ctx.config;
    let name = format!("{}-etcd-{}.db", cfg.project, stamp());
    let dest = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let d = dir(ctx);
            std::fs::create_dir_all(&d)?;
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            d.join(&name)
        }
    };
    let (conn, _dir) = control_plane(ctx).await?;
    let node = conn.node.name.clone();
    let ran = conn
        .run(
            "etcd snapshot",
            &script(SNAPSHOT, &[("name", name.clone())])?,
            |s| ctx.ui.info(PHASE, &format!("{node}: {s}")),
        )
        .await?;
    let f = fields(&ran.stdout);
    let status = parse_status(field(&f, "status")?)?;
    let remote_sum = field(&f, "sha256")?.to_owned();
    let remote = field(&f, "path")?.to_owned();
    conn.download(&remote, &dest).await?;
    conn.run(
        "remove the node's copy",
        &script(REMOVE, &[("file", remote.clone())])?,
        |_| {},
    )
    .await?;
    conn.close().await;
    let sum = sha256_file(&dest)?;
    if sum != remote_sum {
        let _ = std::fs::remove_file(&dest);
        anyhow::bail!("the copy of {remote} from {node} is damaged (sha256 {sum}, the node's {remote_sum}): removed, nothing kept");
    }
    let rec = Recorded {
        taken: jiff::Timestamp::now().to_string(),
        node,
        sha256: sum,
        status,
    };
    crate::util::write_atomic(
        &record_path(&dest),
        &serde_json::to_vec_pretty(&rec)?,
        0o600,
    )?;
    if out.is_none() {
        prune(&dir(ctx), &cfg.project, cfg.kube.snapshot_keep)?;
    }
    Ok((dest, rec))
}

fn record_path(snapshot: &Path) -> PathBuf {
    let mut p = snapshot.as_os_str().to_owned();
    p.push(".json");
    PathBuf::from(p)
}

/// Keeps the newest `keep` of eshop's own snapshots in `dir` (their names
/// sort by time); nothing else there is touched.
pub fn prune(dir: &Path, project: &str, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("{project}-etcd-");
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".db"))
        })
        .collect();
    ours.sort();
    let drop = ours.len().saturating_sub(keep);
    let gone: Vec<PathBuf> = ours.into_iter().take(drop).collect();
    for p in &gone {
        std::fs::remove_file(p)?;
        let _ = std::fs::remove_file(record_path(p));
    }
    Ok(gone)
}

/// The sha256 recorded beside `file`: eshop's `<file>.json`, or the
/// `<file>.sha256` the node's scheduled backups write.
fn recorded_sum(file: &Path) -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string(record_path(file)) {
        let r: Recorded = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", record_path(file).display()))?;
        return Ok(r.sha256);
    }
    let mut side = file.as_os_str().to_owned();
    side.push(".sha256");
    let side = PathBuf::from(side);
    let text = std::fs::read_to_string(&side).map_err(|_| {
        anyhow::anyhow!(
            "{}: no checksum recorded beside it ({} or {}): eshop restores only a snapshot it can check",
            file.display(),
            record_path(file).display(),
            side.display()
        )
    })?;
    let sum = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        crate::util::is_sha256_hex(&sum),
        "{}: not a sha256",
        side.display()
    );
    Ok(sum)
}

/// What a restore replaces, in words; the warning when the revision goes
/// back.
pub fn preview(
    node: &str,
    live: &Live,
    file: &Path,
    snap: &SnapStatus,
) -> (String, Option<String>) {
    let text = format!(
        "etcd on {node}: revision {}, {} keys, {} bytes will be REPLACED by {}: revision {}, {} keys. etcd and the API server stop meanwhile; the current data stays on the node (<data-dir>.before-<time>).",
        live.revision,
        live.keys,
        live.db_size,
        file.display(),
        snap.revision,
        snap.total_key
    );
    let warn = (snap.revision < live.revision).then(|| {
        format!(
            "the restored revision ({}) is lower than the live one ({}): the API server's and controllers' watch caches still hold newer revisions. After the restore, restart kube-controller-manager and kube-scheduler on the control plane (move their manifests out of /etc/kubernetes/manifests and back) and the kubelet on every node (systemctl restart kubelet), so every watch starts again from the restored data.",
            snap.revision, live.revision
        )
    });
    (text, warn)
}

/// Restores `file` after `confirm` accepted what it replaces; returns the
/// member's state afterwards and the warning, if any.
pub async fn restore(
    ctx: &Ctx,
    file: &Path,
    confirm: impl FnOnce(&str) -> anyhow::Result<()>,
) -> anyhow::Result<(Live, Option<String>)> {
    const PHASE: &str = super::PHASE;
    // Checked before any node is touched: a damaged copy goes nowhere.
    let want = recorded_sum(file)?;
    let have = sha256_file(file)?;
    if have != want {
        anyhow::bail!(
            "{}: sha256 {have}, but {want} was recorded when it was taken: the file is damaged or not that snapshot; refusing (nothing was stopped)",
            file.display()
        );
    }
    let (conn, _dir) = control_plane(ctx).await?;
    let node = conn.node.name.clone();
    let remote = format!("{UPLOAD_DIR}/{have}.db");
    conn.upload(file, &remote).await?;
    // etcdctl reads it on the node too before anything stops.
    let ran = conn
        .run(
            "etcd snapshot status",
            &script(CHECK, &[("file", remote.clone())])?,
            |_| {},
        )
        .await?;
    let snap = parse_status(field(&fields(&ran.stdout), "status")?)?;
    let ran = conn
        .run("etcd live status", &script(LIVE, &[])?, |_| {})
        .await?;
    let f = fields(&ran.stdout);
    let live = parse_live(field(&f, "live_status")?, field(&f, "live_count")?)?;
    let (text, warn) = preview(&node, &live, file, &snap);
    ctx.ui.info(PHASE, &text);
    if let Some(w) = &warn {
        ctx.ui.warn(PHASE, w);
    }
    if let Err(e) = confirm(&text) {
        let _ = conn
            .run(
                "remove the upload",
                &script(REMOVE, &[("file", remote)])?,
                |_| {},
            )
            .await;
        conn.close().await;
        return Err(e);
    }
    let ran = conn
        .run(
            "etcd restore",
            &script(RESTORE, &[("file", remote), ("stamp", stamp())])?,
            |s| ctx.ui.info(PHASE, &format!("{node}: {s}")),
        )
        .await?;
    conn.close().await;
    for c in &ran.changes {
        ctx.ui.info(PHASE, &format!("{node}: {c}"));
    }
    let f = fields(&ran.stdout);
    let after = parse_live(field(&f, "live_status")?, field(&f, "live_count")?)?;
    Ok((after, warn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_json_is_read() {
        let s = parse_status(r#"{"hash":3015553935,"revision":5,"totalKey":5,"totalSize":20480}"#)
            .unwrap();
        assert_eq!((s.revision, s.total_key, s.total_size), (5, 5, 20480));
        let live = parse_live(
            r#"[{"Endpoint":"https://127.0.0.1:2379","Status":{"header":{"cluster_id":1,"member_id":2,"revision":77,"raft_term":2},"version":"3.4.23","dbSize":24576,"leader":2,"raftIndex":80,"raftTerm":2}}]"#,
            r#"{"header":{"revision":77},"count":12}"#,
        )
        .unwrap();
        assert_eq!(
            live,
            Live {
                revision: 77,
                keys: 12,
                db_size: 24576
            }
        );
        assert!(parse_status("Error: snapshot file has wrong size").is_err());
    }

    #[test]
    fn a_lower_revision_is_warned_about_with_what_to_do() {
        let live = Live {
            revision: 90,
            keys: 10,
            db_size: 1,
        };
        let snap = |revision| SnapStatus {
            hash: 1,
            revision,
            total_key: 9,
            total_size: 1,
        };
        let (text, warn) = preview("cp", &live, Path::new("/s.db"), &snap(80));
        assert!(text.contains("revision 90, 10 keys") && text.contains("revision 80, 9 keys"));
        assert!(warn.unwrap().contains("restart kube-controller-manager"));
        assert!(preview("cp", &live, Path::new("/s.db"), &snap(95))
            .1
            .is_none());
    }

    #[test]
    fn pruning_keeps_the_newest_of_its_own() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "shop-etcd-20260101T000000Z.db",
            "shop-etcd-20260102T000000Z.db",
            "shop-etcd-20260103T000000Z.db",
            "other.db",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
            std::fs::write(d.path().join(format!("{n}.json")), "{}").unwrap();
        }
        let gone = prune(d.path(), "shop", 2).unwrap();
        assert_eq!(gone, [d.path().join("shop-etcd-20260101T000000Z.db")]);
        assert!(!d.path().join("shop-etcd-20260101T000000Z.db.json").exists());
        assert!(d.path().join("other.db").exists());
        assert!(d.path().join("shop-etcd-20260103T000000Z.db").exists());
    }
}
