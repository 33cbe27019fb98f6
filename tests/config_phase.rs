//! Phase 9 config: the real `ansible-playbook` (the pinned ansible-core of
//! scripts/install-ansible.sh) run by eshop against real sshd hosts, each in
//! its own network and mount namespace (tests/common/ssh_hosts.rs). On those
//! hosts the commands that would change this machine or need the internet
//! are RECORDING STAND-INS (tests/ssh/standins: apt-get, apt-mark, dpkg,
//! dpkg-query, systemctl, kubeadm, kubectl, containerd, modprobe, sysctl,
//! swapon/swapoff, gpg, curl), and Ansible's apt module reads a STAND-IN
//! python3-apt (tests/ssh/python) over the apt-get stand-in's packages.
//! The pkgs.k8s.io key comes from a file:// URL (kubernetes.apt_key_url):
//! a stand-in key that the gpg stand-in reads the fingerprint of.
//! Also ansible-lint and `ansible-playbook --syntax-check` on the playbooks.

mod common;

use common::cli::Project;
use common::cluster::{self, ansible_tool, playbook_tool};
use common::ssh_hosts::{Call, Hosts};
use std::path::Path;
use std::process::Command;

/// In the order eshop runs them.
const PLAYBOOKS: [&str; 4] = [
    "provision.yml",
    "cluster.yml",
    "deploy.yml",
    "etcd-backup.yml",
];

struct Nodes {
    hosts: Hosts,
    cli: Project,
}

common::cli::wraps_project!(Nodes);

impl Nodes {
    fn start() -> Nodes {
        let hosts = Hosts::start(&["cp", "w1", "w2"]);
        let cli = Project::new().env("ESHOP_ANSIBLE_PLAYBOOK", playbook_tool());
        let n = Nodes { hosts, cli };
        // The ssh config under a folder named like Jinja: Ansible templates
        // the strings of its inventory, so unless eshop writes them as
        // data (`!unsafe`) ssh is given ".../42/ssh_config" and reaches
        // no host.
        let odd = n.dir.path().join("{{ 6 * 7 }}");
        std::fs::create_dir(&odd).unwrap();
        std::fs::copy(n.hosts.ssh_config(), odd.join("ssh_config")).unwrap();
        n.configure(&odd.join("ssh_config"), "");
        n
    }

    fn configure(&self, ssh_config: &Path, extra_ssh: &str) {
        self.write_config(&format!(
            "project = \"shop\"\n[kubernetes]\nmode = \"bootstrap\"\n{key}\
             etcd_backup_dir = \"/var/backups/shop-etcd\"\netcd_backup_keep = 3\n\
             etcd_backup_schedule = \"Mon..Fri 03:30\"\n{nodes}{images}\
             [ssh]\nconfig_file = \"{cfg}\"\nconnect_timeout_secs = 5\n{extra_ssh}\n",
            key = cluster::apt_key_url(self.dir.path()),
            nodes = cluster::add_ons_and_nodes(&self.hosts, self.dir.path()),
            images = cluster::images_table(),
            cfg = ssh_config.display(),
        ));
    }

    /// The events callback's lines of the last run.
    fn events(&self) -> Vec<serde_json::Value> {
        cluster::ansible_events(self.dir.path())
    }

    /// The last run's events: (playbook, host, status) of every task
    /// result, and Ansible's own final stats (host -> counts).
    fn last_run(&self) -> (Vec<(String, String, String)>, serde_json::Value) {
        let events = self.events();
        let tasks = events
            .iter()
            .filter(|v| v["event"] == "task")
            .map(|v| {
                let s = |k: &str| v[k].as_str().unwrap().to_owned();
                (s("playbook"), s("host"), s("status"))
            })
            .collect();
        let stats = events
            .iter()
            .rfind(|v| v["event"] == "stats")
            .unwrap_or_else(|| panic!("no stats line in {events:?}"));
        (tasks, stats["hosts"].clone())
    }

    /// Ansible's own stats of the last run say changed=0 on every node.
    fn assert_nothing_changed(&self) {
        let (_, hosts) = self.last_run();
        let obj = hosts.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{hosts}");
        for (h, s) in obj {
            assert_eq!(s["changed"], 0, "{h} changed on a converged run: {s}");
        }
    }

    fn call_counts(&self) -> Vec<usize> {
        ["cp", "w1", "w2"]
            .iter()
            .map(|h| self.hosts.calls(h).len())
            .collect()
    }
}

/// Calls that change a node.
fn mutating(c: &Call) -> bool {
    c.is("apt-get", &["install"])
        || c.is("apt-get", &["-y"])
        || c.is("apt-mark", &["hold"])
        || c.is("dpkg", &["--set-selections"])
        || c.is("kubeadm", &["init"])
        || c.is("kubeadm", &["join"])
        || c.is("kubeadm", &["token"])
        || (c.is("kubectl", &["apply"]) && !c.args.iter().any(|a| a.starts_with("--dry-run")))
        || c.is("kubectl", &["certificate"])
        || c.is("kubectl", &["annotate"])
        || ["start", "restart", "reload", "enable"]
            .iter()
            .any(|v| c.is("systemctl", &[v]))
        || c.is("swapoff", &[])
        || c.is("sysctl", &["--system"])
        // --first-time fails, changing nothing, when the module is loaded
        // (and -n never loads): Ansible's stats count the real loads.
        || (c.is("modprobe", &[])
            && !c.args.iter().any(|a| a == "-n" || a == "--first-time"))
        || c.is("gpg", &["--batch", "--dearmor"])
}

fn changes_since(n: &Nodes, counts: &[usize]) -> Vec<String> {
    ["cp", "w1", "w2"]
        .iter()
        .zip(counts)
        .flat_map(|(h, k)| {
            n.hosts.calls(h)[*k..]
                .iter()
                .filter(|c| mutating(c))
                .map(|c| format!("{h}: {}", c.line()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn first(calls: &[Call], cmd: &str, args: &[&str]) -> f64 {
    calls
        .iter()
        .find(|c| c.is(cmd, args))
        .unwrap_or_else(|| panic!("no call {cmd} {args:?}"))
        .t
}

#[test]
fn ansible_provisions_clusters_and_deploys_in_order_and_a_second_run_changes_nothing() {
    let n = Nodes::start();
    let probe_files = [
        "/etc/containerd/config.toml",
        "/etc/kubernetes/admin.conf",
        "/etc/apt/sources.list.d/kubernetes.list",
    ];

    // Check mode on fresh nodes: a plan, and nothing changed anywhere (the
    // hosts' /etc starts as this machine's, so files are compared).
    let files_of = |n: &Nodes| -> Vec<Option<String>> {
        ["cp", "w1", "w2"]
            .iter()
            .flat_map(|h| probe_files.iter().map(move |f| n.hosts.file(h, f)))
            .collect()
    };
    let before = files_of(&n);
    let plan = n.ok(&["phase", "config", "plan"]);
    assert!(
        plan.contains("~ node cp: eshop : Plan to install kubelet, kubeadm and kubectl"),
        "{plan}"
    );
    assert!(
        plan.contains("~ node w2: eshop_join : Join the cluster (kubeadm join)"),
        "{plan}"
    );
    let changed = changes_since(&n, &[0, 0, 0]);
    assert!(
        changed.is_empty(),
        "check mode changed nodes:\n{}",
        changed.join("\n")
    );
    assert_eq!(files_of(&n), before, "check mode wrote files");
    for h in ["cp", "w1", "w2"] {
        assert!(
            std::fs::read_dir(n.hosts.host(h).state_dir().join("packages"))
                .map_or(true, |mut d| d.next().is_none()),
            "{h}: a package installed in check mode"
        );
    }

    let out = n.ok(&["phase", "config", "apply"]);
    let (cp, w1, w2) = (
        n.hosts.calls("cp"),
        n.hosts.calls("w1"),
        n.hosts.calls("w2"),
    );
    // Every node provisioned (pinned packages, held), then init, then joins.
    for calls in [&cp, &w1, &w2] {
        let install = calls
            .iter()
            .find(|c| c.is("apt-get", &["-y"]) && c.args.iter().any(|a| a.starts_with("kubeadm=")))
            .expect("kubeadm installed by Ansible's apt module");
        assert!(
            install.args.iter().any(|a| a == "kubelet=1.34.2-1.1"),
            "{install}"
        );
        assert!(calls.iter().any(|c| c.is("dpkg", &["--set-selections"])));
        assert!(calls.iter().any(|c| c.is("swapoff", &["-a"])));
    }
    let provisioned = [&cp, &w1, &w2]
        .iter()
        .map(|c| first(c, "systemctl", &["enable", "kubelet"]))
        .fold(0.0, f64::max);
    let init = first(&cp, "kubeadm", &["init"]);
    let token = first(&cp, "kubeadm", &["token", "create"]);
    assert!(
        provisioned < init && init < token,
        "{provisioned} {init} {token}"
    );
    for w in [&w1, &w2] {
        assert!(first(w, "kubeadm", &["join"]) > token);
    }
    // deploy.yml after the cluster, etcd-backup.yml last.
    let deploy = first(
        &cp,
        "kubectl",
        &["apply", "--server-side", "--force-conflicts"],
    );
    assert!(deploy > first(&cp, "kubectl", &["certificate", "approve"]));
    // The snapshot timer as eshop.toml says.
    let timer = n
        .hosts
        .file("cp", "/etc/systemd/system/eshop-etcd-backup.timer")
        .unwrap();
    assert!(timer.contains("\nOnCalendar=Mon..Fri 03:30\n"), "{timer}");
    let service = n
        .hosts
        .file("cp", "/etc/systemd/system/eshop-etcd-backup.service")
        .unwrap();
    assert!(
        service.contains("ESHOP_ETCD_BACKUP_DIR=/var/backups/shop-etcd\n")
            && service.contains("ESHOP_ETCD_BACKUP_KEEP=3\n"),
        "{service}"
    );
    assert!(n
        .hosts
        .file("cp", "/etc/eshop/manifests/30-pricing.yaml")
        .is_some());
    assert_eq!(
        n.hosts.file("cp", "/etc/eshop/manifests/15-secret.yaml"),
        None
    );
    // The join token was never printed (it is no_log in Ansible too).
    let tokens = std::fs::read_to_string(n.hosts.cluster_dir().join("tokens")).unwrap();
    let log = std::fs::read_to_string(n.dir.path().join(".eshop/shop-config/ansible.log")).unwrap();
    for t in tokens.lines() {
        assert!(!out.contains(t) && !log.contains(t), "token {t} printed");
    }
    // One ansible-playbook ran the four playbooks, each changing the
    // fresh control plane.
    let (tasks, _) = n.last_run();
    for pb in PLAYBOOKS {
        assert!(
            tasks
                .iter()
                .any(|(p, h, s)| p == pb && h == "cp" && s == "changed"),
            "{pb}: {tasks:?}"
        );
    }

    // A second run: Ansible's own stats say changed=0 on every host, and
    // no stand-in saw a change.
    let counts = n.call_counts();
    let again = n.ok(&["phase", "config", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    n.assert_nothing_changed();
    let changed = changes_since(&n, &counts);
    assert!(
        changed.is_empty(),
        "converged run changed:\n{}",
        changed.join("\n")
    );
    // And check mode on converged nodes: nothing to do, nothing touched.
    let counts = n.call_counts();
    let plan = n.ok(&["plan", "--from", "config", "--to", "config"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete"),
        "{plan}"
    );
    assert!(changes_since(&n, &counts).is_empty());
    let status = n.ok(&["phase", "config", "status"]);
    assert!(
        status.contains("node w1") && status.contains("configured"),
        "{status}"
    );

    // One node down: a clear error naming it, nothing claimed done.
    n.hosts.stop("w2");
    let err = n.fails(&["phase", "config", "apply"], 1);
    assert!(
        err.contains("node w2") && err.contains("unreachable"),
        "{err}"
    );
    assert!(!err.contains("node w1:"), "{err}");

    // Destroy removes what the phase keeps here.
    n.ok(&["phase", "config", "destroy"]);
    assert!(!n.dir.path().join(".eshop/shop-config").exists());
}

#[test]
fn an_unknown_host_key_is_refused_before_any_task_runs() {
    let n = Nodes::start();
    let empty = n.dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    // The user's ssh config says to trust anything; eshop's check wins.
    n.configure(&n.hosts.ssh_config_with_known_hosts(&empty, "no"), "");
    let err = n.fails(&["phase", "config", "apply"], 1);
    assert!(
        err.contains("node cp")
            && err.contains("unreachable")
            // OpenSSH's words, or Mitogen's for the same refusal.
            && (err.contains("Host key verification failed")
                || err.contains("unrecognized or mismatching host key")),
        "{err}"
    );
    for h in ["cp", "w1", "w2"] {
        assert!(
            n.hosts.calls(h).is_empty(),
            "{h}: a task ran on an unverified host"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "a key was recorded"
    );
}

/// Phase 5 with `kubernetes.provisioner = "ansible"` and with its scripts
/// leave what probe.sh reads the same.
#[test]
fn both_provisioners_leave_the_same_node_state_as_probe_sh_reads_it() {
    let probe = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubeadm/probe.sh"),
    )
    .unwrap();
    let lib = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/kubeadm/lib.sh"),
    )
    .unwrap();
    let script = format!("{lib}\n{probe}");
    let mut seen = Vec::new();
    for provisioner in ["scripts", "ansible"] {
        let n = Nodes::start();
        // Phase 5 bootstraps, then deploys the shop through the API, which
        // there is not here: the bootstrap part is what is compared.
        let out = n.eshop_with(
            &["phase", "kubernetes", "apply"],
            &[("ESHOP_KUBERNETES_PROVISIONER", provisioner)],
        );
        let text = common::cli::text(&out);
        let probes: Vec<String> = ["cp", "w1", "w2"]
            .iter()
            .map(|h| {
                let o = n.hosts.run_script(h, &script);
                assert!(o.status.success(), "{provisioner} {h}: {text}");
                String::from_utf8_lossy(&o.stdout).into_owned()
            })
            .collect();
        assert!(
            probes[0].contains("role=control-plane"),
            "{provisioner}: {probes:?}\n{text}"
        );
        assert!(
            probes[1].contains("role=worker") && probes[1].contains("kubelet_active=yes"),
            "{provisioner}: {probes:?}\n{text}"
        );
        let files: Vec<Option<String>> = [
            "/etc/modules-load.d/eshop-k8s.conf",
            "/etc/sysctl.d/90-eshop-k8s.conf",
            "/etc/containerd/config.toml",
            "/etc/apt/keyrings/kubernetes-apt-keyring.gpg",
            "/etc/apt/sources.list.d/kubernetes.list",
            "/etc/eshop/cluster",
        ]
        .iter()
        .map(|f| n.hosts.file("w1", f))
        // The one file only the control plane has, the same text from
        // either provisioner (a difference would make them rewrite it in
        // turn: tests/aws_up.rs runs both).
        .chain([n
            .hosts
            .file("cp", "/etc/eshop/kubeadm-config.yaml")
            .map(|f| f.replace(&n.hosts.host("cp").addr.to_string(), "CP-ADDRESS"))])
        .collect();
        assert!(
            files.iter().all(Option::is_some),
            "{provisioner}: {files:?}"
        );
        seen.push((probes, files));
    }
    assert_eq!(seen[0], seen[1], "scripts vs ansible");
}

#[test]
fn the_playbooks_pass_ansible_lint_and_syntax_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/ansible");
    let lint = ansible_tool("ESHOP_TEST_ANSIBLE_LINT", "ansible-lint");
    let out = Command::new(&lint)
        .current_dir(&dir)
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ansible-lint:\n{}",
        common::cli::text(&out)
    );
    let scratch = tempfile::tempdir().unwrap();
    let inv = scratch.path().join("inventory.yml");
    std::fs::copy(dir.join("inventory.example.yml"), &inv).unwrap();
    for pb in PLAYBOOKS {
        let out = Command::new(playbook_tool())
            .args(["--syntax-check", "-i"])
            .arg(&inv)
            .arg(dir.join(pb))
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(out.status.success(), "{pb}:\n{}", common::cli::text(&out));
    }
    // The inputs are checked on this machine before any node is reached
    // (the example inventory's hosts do not exist), every bad one named.
    let out = Command::new(playbook_tool())
        .args(["--tags", "only-the-checks", "-i"])
        .arg(&inv)
        .arg(dir.join("etcd-backup.yml"))
        .args([
            "-e",
            r#"{"eshop_kubeadm_config": "kind: ClusterConfiguration\n"}"#,
            "-e",
            "eshop_cluster_name=Bad_Name",
            "-e",
            "eshop_etcd_backup_keep=0",
        ])
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let text = common::cli::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "eshop_cluster_name must be a DNS label; eshop_etcd_backup_keep must be at least 1"
        ),
        "{text}"
    );
}

/// Seconds `eshop` took to run `args`.
fn timed(n: &Nodes, args: &[&str]) -> f64 {
    let t = std::time::Instant::now();
    n.ok(args);
    t.elapsed().as_secs_f64()
}

/// The median of `runs` no-op applies, after checking they changed nothing.
fn no_op_median(n: &Nodes, runs: usize) -> f64 {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| timed(n, &["phase", "config", "apply"]))
        .collect();
    n.assert_nothing_changed();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

/// The `top` slowest tasks of the last run (seconds on the slowest host,
/// from the events callback), and how many tasks ran in all.
fn slowest_tasks(n: &Nodes, top: usize) -> String {
    let mut secs: std::collections::BTreeMap<String, f64> = Default::default();
    let mut count = 0;
    for v in n.events() {
        if v["event"] == "task" {
            count += 1;
            let name = format!(
                "{}: {}",
                v["playbook"].as_str().unwrap(),
                v["task"].as_str().unwrap()
            );
            let t = secs.entry(name).or_default();
            *t = t.max(v["secs"].as_f64().unwrap());
        }
    }
    let total: f64 = secs.values().sum();
    let mut v: Vec<_> = secs.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = format!(
        "  {count} task results, {} tasks, {total:.1} s summed\n",
        v.len()
    );
    for (task, s) in v.into_iter().take(top) {
        out.push_str(&format!("  {s:6.2} s  {task}\n"));
    }
    out
}

/// A BENCHMARK, not a check: bench/config.sh runs it and prints its
/// figures (README, "Phase 9"). Three namespace hosts, `eshop phase config
/// apply` first run and no-op re-run, then the same with the tuning taken
/// out of ansible.cfg (plain ansible-playbook defaults) on fresh hosts.
#[test]
#[ignore = "a benchmark: bench/config.sh runs it"]
fn benchmark_config_apply() {
    let runs: usize = std::env::var("RUNS").map_or(3, |r| r.parse().unwrap());
    let top: usize = std::env::var("TOP").map_or(12, |r| r.parse().unwrap());
    let n = Nodes::start();
    let first = timed(&n, &["phase", "config", "apply"]);
    let no_op = no_op_median(&n, runs);
    let profile = slowest_tasks(&n, top);
    drop(n);
    println!("three hosts (cp, w1, w2), {runs} no-op runs each (median)");
    println!(
        "eshop phase config apply, first run: {first:.1} s (goal 60 s: {:.2} of it)",
        first / 60.0
    );
    println!(
        "eshop phase config apply, no-op:     {no_op:.1} s (goal 10 s: {:.2} of it)",
        no_op / 10.0
    );
    println!("the last no-op run's slowest tasks (the slowest host's seconds):\n{profile}");
    if std::env::var("BASELINE").is_ok_and(|b| b == "0") {
        return;
    }

    // Plain defaults: the same staged playbooks, inventory and vars (a
    // check-mode plan writes them), run by ansible-playbook itself with a
    // configuration holding only what they need to run.
    let n = Nodes::start();
    n.ok(&["phase", "config", "plan"]);
    let dir = n.dir.path().join(".eshop/shop-config");
    let plain = dir.join("plain.cfg");
    std::fs::write(
        &plain,
        format!(
            "[defaults]\nroles_path = {a}/roles\ncallback_plugins = {a}/callback_plugins\ncallbacks_enabled = eshop_events\n",
            a = dir.join("ansible").display()
        ),
    )
    .unwrap();
    let playbooks = || {
        let t = std::time::Instant::now();
        for pb in PLAYBOOKS {
            let out = Command::new(playbook_tool())
                .arg("-i")
                .arg(dir.join("inventory.yml"))
                .arg("-e")
                .arg(format!("@{}", dir.join("vars.yml").display()))
                .arg(dir.join("ansible").join(pb))
                .env("ANSIBLE_CONFIG", &plain)
                .env("ESHOP_ANSIBLE_EVENTS", dir.join("events/plain.jsonl"))
                .env("LC_ALL", "C.UTF-8")
                .output()
                .unwrap();
            assert!(out.status.success(), "{pb}:\n{}", common::cli::text(&out));
        }
        t.elapsed().as_secs_f64()
    };
    let plain_first = playbooks();
    let mut again: Vec<f64> = (0..runs).map(|_| playbooks()).collect();
    again.sort_by(f64::total_cmp);
    let plain_no_op = again[runs / 2];
    println!(
        "plain ansible-playbook, first run:   {plain_first:.1} s (eshop {:.2}x faster)",
        plain_first / first
    );
    println!(
        "plain ansible-playbook, no-op:       {plain_no_op:.1} s (eshop {:.2}x faster)",
        plain_no_op / no_op
    );
}
