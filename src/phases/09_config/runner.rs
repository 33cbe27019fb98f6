//! Runs ansible-playbook and reads what happened from the `eshop_events`
//! callback's JSON lines (templates/ansible/callback_plugins), never from
//! Ansible's text output, which goes to a log file beside them.

use super::files::FILES;
use crate::ui::Ui;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One line of the events file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub(super) enum Event {
    Task {
        host: String,
        /// The playbook's file name: one run holds several.
        #[serde(default)]
        playbook: String,
        play: String,
        task: String,
        status: String,
        #[serde(default)]
        msg: Option<String>,
        #[serde(default)]
        ignored: bool,
    },
    Stats {
        hosts: BTreeMap<String, HostStats>,
    },
}

/// Ansible's own numbers for one host, from its final stats.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct HostStats {
    pub ok: usize,
    pub changed: usize,
    pub failures: usize,
    pub unreachable: usize,
    pub skipped: usize,
}

/// What one ansible-playbook run reported.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub tasks: Vec<Event>,
    pub stats: BTreeMap<String, HostStats>,
}

impl Run {
    /// (host, task, play) of every task that changed (would change, in
    /// check mode), once each.
    pub fn changed(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<(String, String, String)> = Vec::new();
        for e in &self.tasks {
            if let Event::Task {
                host,
                task,
                play,
                status,
                ..
            } = e
            {
                let item = (host.clone(), task.clone(), play.clone());
                if status == "changed" && !out.contains(&item) {
                    out.push(item);
                }
            }
        }
        out
    }

    pub fn changed_count(&self) -> usize {
        self.stats.values().map(|s| s.changed).sum()
    }
}

/// Where the pinned Ansible is: `ESHOP_ANSIBLE_PLAYBOOK`, else the one
/// scripts/install-ansible.sh installs, else `ansible-playbook` on PATH.
pub(super) fn playbook_command() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ESHOP_ANSIBLE_PLAYBOOK").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            anyhow::bail!(
                "ESHOP_ANSIBLE_PLAYBOOK names {}, which does not exist",
                p.display()
            );
        }
        return Ok(p);
    }
    let tools = std::env::var_os("ESHOP_TOOLS_DIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/eshop-tools")));
    if let Some(p) = tools.map(|t| t.join("ansible/bin/ansible-playbook")) {
        if p.is_file() {
            return Ok(p);
        }
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("ansible-playbook"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "ansible-playbook not found (phase 9 and kubernetes.provisioner = \"ansible\" run it): \
             install the pinned Ansible with scripts/install-ansible.sh, or set ESHOP_ANSIBLE_PLAYBOOK"
        )
    })
}

/// Mitogen's strategy plugins in the venv `program` belongs to
/// (`<venv>/bin/ansible-playbook`, `<venv>/lib/python3.*/site-packages`),
/// where scripts/install-ansible.sh puts them.
fn mitogen_strategies(program: &Path) -> Option<PathBuf> {
    let lib = program.parent()?.parent()?.join("lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| {
            e.path()
                .join("site-packages/ansible_mitogen/plugins/strategy")
        })
        .find(|d| d.join("mitogen_linear.py").is_file())
}

/// Writes the embedded templates/ansible into `dir` (files whose content
/// differs only), removing nothing else; returns its ansible.cfg.
pub(super) fn write_templates(dir: &Path) -> anyhow::Result<PathBuf> {
    for (rel, text) in FILES {
        let p = dir.join(rel);
        if std::fs::read_to_string(&p).ok().as_deref() == Some(*text) {
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::util::write_atomic(&p, text.as_bytes(), 0o644)?;
    }
    Ok(dir.join("ansible.cfg"))
}

/// Everything one ansible-playbook run needs.
pub(super) struct Setup<'a> {
    pub program: &'a Path,
    pub config: &'a Path,
    pub facts: &'a Path,
    pub inventory: &'a Path,
    pub vars: &'a Path,
    pub playbooks: &'a Path,
    /// The events folder (`<playbook>.jsonl`, emptied first) and the text
    /// log (appended).
    pub events: &'a Path,
    pub log: &'a Path,
}

fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}: not an eshop_events line ({e})", path.display()))
        })
        .collect()
}

/// The last lines of the log, for an error Ansible reported only there
/// (a bad inventory, a syntax error).
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n  ")
}

/// Runs the playbooks in order in one ansible-playbook (`check`: --check
/// --diff): one start-up and one connection per node for all of them, and
/// the first failure anywhere stops every node (ansible.cfg's
/// any_errors_fatal). Shows each task as it happens; fails naming every
/// host and task that failed or could not be reached, with Ansible's
/// message.
pub(super) async fn run(
    ui: &Ui,
    phase: &str,
    s: &Setup<'_>,
    playbooks: &[&str],
    check: bool,
) -> anyhow::Result<Run> {
    use std::process::Stdio;
    std::fs::create_dir_all(s.events)?;
    let events_file = s.events.join("run.jsonl");
    crate::util::write_atomic(&events_file, b"", 0o600)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.log)?;
    let mut cmd = tokio::process::Command::new(s.program);
    cmd.arg("-i")
        .arg(s.inventory)
        .arg("-e")
        .arg(format!("@{}", s.vars.display()));
    for pb in playbooks {
        cmd.arg(s.playbooks.join(pb));
    }
    if check {
        cmd.args(["--check", "--diff"]);
    }
    match mitogen_strategies(s.program) {
        Some(dir) => {
            cmd.env("ANSIBLE_STRATEGY_PLUGINS", dir)
                .env("ANSIBLE_STRATEGY", "mitogen_linear");
        }
        None => ui.info(
            phase,
            &format!(
                "{} has no Mitogen beside it: Ansible's own strategy, about 3 times slower (scripts/install-ansible.sh installs both)",
                s.program.display()
            ),
        ),
    }
    cmd.env("ANSIBLE_CONFIG", s.config)
        .env("ANSIBLE_CACHE_PLUGIN_CONNECTION", s.facts)
        .env("ESHOP_ANSIBLE_EVENTS", &events_file)
        .env("ANSIBLE_NOCOLOR", "1")
        // ansible-core refuses to start under a non-UTF-8 locale.
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let what = format!(
        "{}{}",
        playbooks.join(", "),
        if check { " (check)" } else { "" }
    );
    let p = ui.spinner(phase, &what);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", s.program.display()))?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(300));
    let status = loop {
        tokio::select! {
            st = child.wait() => break st?,
            _ = tick.tick() => {
                if let Some(Event::Task { host, playbook, task, .. }) = read_events(&events_file).ok().and_then(|e| e.last().cloned()) {
                    p.set_message(format!("{playbook}: {host}: {task}"));
                }
            }
        }
    };
    let events = read_events(&events_file)?;
    let mut run = Run::default();
    let mut errors = Vec::new();
    for e in events {
        match e {
            Event::Stats { hosts } => run.stats.extend(hosts),
            Event::Task {
                ref host,
                ref playbook,
                ref task,
                ref status,
                ref msg,
                ignored,
                ..
            } => {
                if (status == "failed" && !ignored) || status == "unreachable" {
                    errors.push(format!(
                        "node {host}: {playbook}: {task}: {}{}",
                        if status == "unreachable" {
                            "unreachable: "
                        } else {
                            ""
                        },
                        msg.as_deref().unwrap_or("failed")
                    ));
                }
                run.tasks.push(e);
            }
        }
    }
    // Ansible's own tally as well: a failure the callback did not see
    // (a handler, a play-level error) still stops eshop.
    for (h, st) in &run.stats {
        if errors.is_empty() && st.failures + st.unreachable > 0 {
            errors.push(format!(
                "node {h}: {} failed, {} unreachable (see the log)",
                st.failures, st.unreachable
            ));
        }
    }
    if !errors.is_empty() {
        drop(p);
        anyhow::bail!(
            "{what} failed (Ansible stopped every node there; Ansible's log: {}):\n  {}",
            s.log.display(),
            errors.join("\n  ")
        );
    }
    if !status.success() {
        drop(p);
        anyhow::bail!(
            "{what}: ansible-playbook exited with {status}:\n  {}\n(the whole log: {})",
            log_tail(s.log, 12),
            s.log.display()
        );
    }
    let summary: Vec<String> = run
        .stats
        .iter()
        .map(|(h, st)| {
            format!(
                "{h} {} changed ({} ok, {} skipped)",
                st.changed, st.ok, st.skipped
            )
        })
        .collect();
    p.finish(&format!("{what}: {}", summary.join(", ")));
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is templates/ansible: every file Ansible reads,
    /// and only those (a role file added without an entry here would be
    /// missing from an installed binary).
    #[test]
    fn every_ansible_template_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/ansible");
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    if p.file_name().is_some_and(|n| n != "__pycache__") {
                        walk(root, &p, out);
                    }
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.retain(|p| {
            !["README.md", "inventory.example.yml", ".ansible-lint"].contains(&p.as_str())
        });
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for (rel, text) in FILES {
            assert_eq!(
                std::fs::read_to_string(root.join(rel)).unwrap(),
                *text,
                "{rel}"
            );
        }
    }

    #[test]
    fn events_are_read_as_the_callback_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.jsonl");
        std::fs::write(
            &p,
            "{\"event\": \"task\", \"host\": \"cp\", \"play\": \"P\", \"task\": \"T\", \"status\": \"changed\"}\n\
             {\"event\": \"stats\", \"hosts\": {\"cp\": {\"changed\": 1, \"failures\": 0, \"ok\": 2, \"skipped\": 0, \"unreachable\": 0}}}\n",
        )
        .unwrap();
        let e = read_events(&p).unwrap();
        assert!(
            matches!(&e[0], Event::Task { host, status, .. } if host == "cp" && status == "changed")
        );
        assert!(matches!(&e[1], Event::Stats { hosts } if hosts["cp"].changed == 1));
    }
}
