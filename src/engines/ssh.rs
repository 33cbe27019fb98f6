//! SSH to the nodes through the OpenSSH client (the `openssh` crate runs
//! `ssh` with a control master), so ~/.ssh/config, the agent and
//! known_hosts apply exactly as they do for the user's own `ssh`.
//!
//! Host keys are always verified: unknown keys are refused unless the
//! configuration says `ssh.trust_on_first_use = true` (ssh's accept-new),
//! and a changed key is refused either way.
//!
//! Scripts go to the node on standard input, never on the command line,
//! so what they carry (a join token) shows up in no process list or log.

use crate::config::kube::Node;
use crate::config::ssh::Ssh;
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Run as root: directly when the login is root, through sudo otherwise
/// (`-n`: fail rather than wait for a password nobody will type).
/// The remote command: the script on stdin as root, bounded by coreutils'
/// `timeout` on the node itself (a hung apt lock or a stuck download is
/// killed there, not left running when eshop gives up). `secs` is a number.
fn remote(secs: u64) -> String {
    let run = format!("timeout -k 10 {secs} bash -s");
    format!(r#"sh -c '[ "$(id -u)" = 0 ] && exec {run} || exec sudo -n {run}'"#)
}

/// A path eshop chose, checked before it goes into a remote command:
/// absolute, and only characters that need no quoting.
fn plain_path(p: &str) -> anyhow::Result<&str> {
    let ok = p.starts_with('/')
        && !p.contains("..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    anyhow::ensure!(ok, "{p:?} is not a plain absolute path");
    Ok(p)
}

/// Prepended to every script (see its header).
const LIB: &str = include_str!("../../templates/kubeadm/lib.sh");

pub struct Conn {
    pub node: Node,
    session: Session,
    script_timeout: std::time::Duration,
}

/// What a script printed on its way.
#[derive(Debug, Default)]
pub struct Ran {
    /// Its `changed: …` lines.
    pub changes: Vec<String>,
    /// Everything else it printed to stdout (e.g. probe results).
    pub stdout: String,
}

/// The whole script a node receives: the shared helpers, then `body`.
pub fn script(body: &str) -> String {
    format!("{LIB}\n{body}")
}

pub async fn connect(node: &Node, cfg: &Ssh, control_dir: &Path) -> anyhow::Result<Conn> {
    let mut b = SessionBuilder::default();
    b.known_hosts_check(if cfg.trust_on_first_use {
        KnownHosts::Add
    } else {
        KnownHosts::Strict
    })
    .connect_timeout(cfg.connect_timeout)
    .server_alive_interval(std::time::Duration::from_secs(15))
    .control_directory(control_dir);
    if let Some(u) = &cfg.user {
        b.user(u.clone());
    }
    if let Some(p) = cfg.port {
        b.port(p);
    }
    if let Some(k) = &cfg.identity_file {
        b.keyfile(k);
    }
    if let Some(f) = &cfg.config_file {
        b.config_file(f);
    }
    let session = b.connect(&node.address).await.map_err(|e| {
        // The source chain carries ssh's own words (e.g. "Host key
        // verification failed").
        let why = format!("{:#}", anyhow::Error::new(e));
        let hint = if why.contains("Host key verification failed") {
            if cfg.trust_on_first_use {
                " (the host key CHANGED since it was recorded: check the machine, then remove the old key with ssh-keygen -R)"
            } else {
                " (unknown host key: add it to known_hosts, e.g. ssh-keyscan, after checking its fingerprint, or set ssh.trust_on_first_use = true)"
            }
        } else {
            ""
        };
        anyhow::anyhow!("node {} ({}): ssh: {why}{hint}", node.name, node.address)
    })?;
    Ok(Conn {
        node: node.clone(),
        session,
        script_timeout: cfg.script_timeout,
    })
}

impl Conn {
    /// Runs `body` (after the shared helpers) as root; `progress` sees each
    /// `==> step`. A failure names the node, the script and its last lines.
    pub async fn run(
        &self,
        name: &str,
        body: &str,
        progress: impl Fn(&str),
    ) -> anyhow::Result<Ran> {
        let n = &self.node;
        let fail =
            |what: String| anyhow::anyhow!("node {} ({}): {name}: {what}", n.name, n.address);
        let limit = self.script_timeout;
        let mut child = self
            .session
            .raw_command(remote(limit.as_secs()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| fail(format!("ssh: {e}")))?;
        let mut stdin = child.stdin().take().expect("piped");
        let stdout = child.stdout().take().expect("piped");
        let mut stderr = child.stderr().take().expect("piped");
        let text = script(body);
        let write = async move {
            // A node that fails early closes its end; its exit status and
            // stderr say why, so a broken pipe here is not the error.
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        };
        // The step a timeout interrupted, for the error.
        let last_step = std::sync::Mutex::new(String::new());
        let read_out = async {
            let mut ran = Ran::default();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(step) = line.strip_prefix("==> ") {
                    step.clone_into(&mut last_step.lock().unwrap_or_else(|e| e.into_inner()));
                    progress(step);
                } else if let Some(c) = line.strip_prefix("changed: ") {
                    ran.changes.push(c.to_owned());
                } else {
                    ran.stdout.push_str(&line);
                    ran.stdout.push('\n');
                }
            }
            ran
        };
        let read_err = async {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s).await;
            s
        };
        let timed_out = || {
            let step = last_step.lock().unwrap_or_else(|e| e.into_inner()).clone();
            fail(format!(
                "timed out after {} s in step {step:?} (ssh.script_timeout_secs)",
                limit.as_secs()
            ))
        };
        // The node's own `timeout` ends the script; this bound (a little
        // later) covers a node or network that stopped answering at all.
        let (ran, err) = tokio::time::timeout(limit + std::time::Duration::from_secs(20), async {
            let ((), ran, err) = tokio::join!(write, read_out, read_err);
            (ran, err)
        })
        .await
        .map_err(|_| timed_out())?;
        let status = child.wait().await.map_err(|e| fail(format!("ssh: {e}")))?;
        // 124: coreutils' timeout ended it (137 after the -k kill).
        if matches!(status.code(), Some(124 | 137)) {
            return Err(timed_out());
        }
        if !status.success() {
            let tail: Vec<&str> = err.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(format!(
                "exited with {}:\n{}",
                status
                    .code()
                    .map_or("a signal".to_owned(), |c| format!("status {c}")),
                tail.join("\n")
            )));
        }
        Ok(ran)
    }

    /// A file's content as root (the admin kubeconfig): returned, never
    /// printed.
    pub async fn read_file(&self, path: &str) -> anyhow::Result<String> {
        let body = format!("cat '{}'", path.replace('\'', ""));
        Ok(self
            .run(&format!("read {path}"), &body, |_| {})
            .await?
            .stdout)
    }

    /// Copies the root-only file `path` on the node to `to` (created
    /// 0600), byte for byte; returns its size.
    pub async fn download(&self, path: &str, to: &Path) -> anyhow::Result<u64> {
        let path = plain_path(path)?;
        let mut child = self.spawn_raw().await?;
        let mut stdin = child.stdin().take().expect("piped");
        let mut stdout = child.stdout().take().expect("piped");
        stdin
            .write_all(format!("exec cat -- '{path}'\n").as_bytes())
            .await?;
        stdin.shutdown().await?;
        drop(stdin);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(to)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", to.display()))?;
        let copy = tokio::io::copy(&mut stdout, &mut file);
        let n = tokio::time::timeout(self.script_timeout, copy)
            .await
            .map_err(|_| self.fail(&format!("copy {path}"), "timed out".into()))??;
        file.sync_all().await?;
        self.finish(child, &format!("copy {path}")).await?;
        Ok(n)
    }

    /// Copies the local file `from` to `path` on the node (0600, as root).
    pub async fn upload(&self, from: &Path, path: &str) -> anyhow::Result<()> {
        let path = plain_path(path)?;
        let mut child = self.spawn_raw().await?;
        let mut stdin = child.stdin().take().expect("piped");
        // bash reads a script from a pipe a byte at a time, so `cat`
        // gets exactly the bytes after this line.
        let head =
            format!("umask 077; mkdir -p -- \"$(dirname -- '{path}')\"; exec cat > '{path}'\n");
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", from.display()))?;
        let send = async {
            stdin.write_all(head.as_bytes()).await?;
            tokio::io::copy(&mut file, &mut stdin).await?;
            stdin.shutdown().await
        };
        tokio::time::timeout(self.script_timeout, send)
            .await
            .map_err(|_| self.fail(&format!("copy to {path}"), "timed out".into()))??;
        drop(stdin);
        self.finish(child, &format!("copy to {path}")).await
    }

    async fn spawn_raw(&self) -> anyhow::Result<openssh::Child<&Session>> {
        self.session
            .raw_command(remote(self.script_timeout.as_secs()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .map_err(|e| self.fail("ssh", e.to_string()))
    }

    async fn finish(&self, mut child: openssh::Child<&Session>, what: &str) -> anyhow::Result<()> {
        let mut err = String::new();
        if let Some(mut e) = child.stderr().take() {
            let _ = e.read_to_string(&mut err).await;
        }
        let status = child
            .wait()
            .await
            .map_err(|e| self.fail(what, e.to_string()))?;
        if !status.success() {
            return Err(self.fail(what, format!("failed ({status}): {}", err.trim())));
        }
        Ok(())
    }

    fn fail(&self, what: &str, why: String) -> anyhow::Error {
        let n = &self.node;
        anyhow::anyhow!("node {} ({}): {what}: {why}", n.name, n.address)
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}
