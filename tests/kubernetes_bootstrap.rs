//! Phase 5's bootstrap mode against real sshd hosts (each in its own
//! network and mount namespace, tests/common/ssh_hosts.rs), running the
//! real node scripts of templates/kubeadm. On those hosts kubeadm,
//! kubectl, the package manager and the commands that would change this
//! machine (systemctl, swapoff, modprobe, sysctl) are RECORDING STAND-INS
//! (tests/ssh/standins): they log every call and emulate just enough
//! state. The deploy step that follows talks to the MOCK API server
//! (tests/common/kube_mock.rs), whose address the stand-in kubeadm puts
//! in the admin kubeconfig.

mod common;

use common::cli::Project;
use common::cluster::{self, pki, ADD_ONS};
use common::kube_mock::KubeMock;
use common::ssh_hosts::{Call, Hosts};
use std::path::{Path, PathBuf};

/// The hosts, the mock API server and a project pointing at both; runs
/// eshop as [`Project`] does.
struct Cluster {
    hosts: Hosts,
    mock: KubeMock,
    cli: Project,
}

common::cli::wraps_project!(Cluster);

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cluster {
    fn start(extra_ssh: &str) -> Cluster {
        let hosts = Hosts::start(&["cp", "w1", "w2"]);
        let mock = KubeMock::start();
        hosts.set_api_server(&mock.url());
        pki(&hosts.cluster_dir());
        let c = Cluster {
            hosts,
            mock,
            cli: Project::new(),
        };
        c.configure(&c.hosts.ssh_config(), extra_ssh);
        c
    }

    fn configure(&self, ssh_config: &Path, extra_ssh: &str) {
        self.write_config(&format!(
            "project = \"shop\"\n[kubernetes]\nmode = \"bootstrap\"\napi_server = \"{api}\"\n\
             rollout_timeout_secs = 20\n{nodes}{images}\
             [ssh]\nconfig_file = \"{cfg}\"\nconnect_timeout_secs = 5\n{extra_ssh}\n",
            api = self.mock.url(),
            nodes = cluster::add_ons_and_nodes(&self.hosts, self.dir.path()),
            images = cluster::images_table(),
            cfg = ssh_config.display(),
        ));
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join(".eshop/shop-admin.kubeconfig")
    }
}

fn find<'a>(calls: &'a [Call], cmd: &str, args: &[&str]) -> Option<&'a Call> {
    calls.iter().find(|c| c.is(cmd, args))
}

fn t(calls: &[Call], cmd: &str, args: &[&str]) -> f64 {
    find(calls, cmd, args)
        .unwrap_or_else(|| {
            panic!(
                "no call {cmd} {args:?} in\n{}",
                calls.iter().map(Call::line).collect::<Vec<_>>().join("\n")
            )
        })
        .t
}

fn arg_after(c: &Call, flag: &str) -> String {
    let i = c
        .args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in {c}"));
    c.args[i + 1].clone()
}

/// Calls that change a node; a converged run makes none of them.
fn mutating(c: &Call) -> bool {
    c.is("apt-get", &["install"])
        || c.is("kubeadm", &["init"])
        || c.is("kubeadm", &["join"])
        || c.is("kubeadm", &["token"])
        || c.is("kubectl", &["apply"])
        || c.is("kubectl", &["certificate"])
        || c.is("systemctl", &["restart"])
        || c.is("systemctl", &["enable"])
        || c.is("swapoff", &[])
        || c.is("gpg", &["--batch", "--dearmor"])
}

#[test]
fn bootstrap_runs_in_order_hands_the_join_token_over_and_a_second_run_does_nothing_on_real_sshd_hosts(
) {
    let c = Cluster::start("");
    let plan = c.ok(&["phase", "kubernetes", "plan"]);
    assert!(
        plan.contains("+ node cp (cp) (install kubeadm 1.34.2-1.1, then kubeadm init)"),
        "{plan}"
    );
    assert!(
        plan.contains("+ node w2 (w2) (install kubeadm 1.34.2-1.1, then kubeadm join)"),
        "{plan}"
    );

    assert!(
        plan.contains(
            "+ add-on calico v3.30.3 (not pinned yet: apply records its sha256 in eshop.lock"
        ),
        "{plan}"
    );

    let out = c.ok(&["phase", "kubernetes", "apply"]);
    // First use: each add-on's sha256 recorded in eshop.lock beside the
    // config, and the manifests written on the control plane as checked.
    let lock = std::fs::read_to_string(c.dir.path().join("eshop.lock")).unwrap();
    for key in ADD_ONS {
        let file = c.dir.path().join(format!("{key}.yaml"));
        assert!(
            lock.contains(&format!("sha256 = \"{}\"", sha256_of(&file))),
            "{lock}"
        );
        let name = key.replace('_', "-");
        assert_eq!(
            c.hosts
                .file("cp", &format!("/etc/eshop/addons/{name}.yaml")),
            std::fs::read_to_string(&file).ok(),
        );
    }
    let (cp, w1, w2) = (
        c.hosts.calls("cp"),
        c.hosts.calls("w1"),
        c.hosts.calls("w2"),
    );

    // Every node prepared with the pinned packages, held.
    for calls in [&cp, &w1, &w2] {
        let install = calls
            .iter()
            .find(|x| {
                x.is("apt-get", &["install"]) && x.args.iter().any(|a| a.starts_with("kubeadm="))
            })
            .expect("kubeadm installed");
        for p in [
            "kubelet=1.34.2-1.1",
            "kubeadm=1.34.2-1.1",
            "kubectl=1.34.2-1.1",
        ] {
            assert!(install.args.iter().any(|a| a == p), "{install}");
        }
        assert!(find(calls, "apt-mark", &["hold"]).is_some());
        assert!(find(calls, "swapoff", &["-a"]).is_some());
    }
    // Order: every node prepared → init → network → token → joins.
    let prepared = [&cp, &w1, &w2]
        .iter()
        .map(|calls| t(calls, "systemctl", &["enable", "--now", "kubelet"]))
        .fold(0.0, f64::max);
    let init = t(&cp, "kubeadm", &["init"]);
    let calico = cp
        .iter()
        .find(|x| x.is("kubectl", &["apply"]) && x.args.iter().any(|a| a.contains("calico")))
        .expect("calico applied")
        .t;
    let token = t(&cp, "kubeadm", &["token", "create"]);
    let joins = [t(&w1, "kubeadm", &["join"]), t(&w2, "kubeadm", &["join"])];
    assert!(t(&cp, "systemctl", &["enable", "--now", "kubelet"]) < init);
    assert!(
        init < calico && calico < token,
        "init {init}, calico {calico}, token {token}"
    );
    assert!(
        joins.iter().all(|j| *j > token),
        "joins {joins:?} before the token {token}"
    );
    let _ = prepared;
    assert!(find(&w1, "kubeadm", &["init"]).is_none() && find(&cp, "kubeadm", &["join"]).is_none());

    // The token the control plane made is the one the workers used, with
    // its CA hash and their own names; and it was never printed.
    let tokens = std::fs::read_to_string(c.hosts.cluster_dir().join("tokens")).unwrap();
    // kubeadm init makes one of its own; eshop's `token create` is the
    // last, and both workers share it.
    let made: Vec<&str> = tokens.lines().rev().collect();
    assert_eq!(
        made.len(),
        2,
        "init's token and one for both workers: {made:?}"
    );
    for (calls, name) in [(&w1, "w1"), (&w2, "w2")] {
        let join = find(calls, "kubeadm", &["join"]).unwrap();
        assert_eq!(arg_after(join, "--token"), made[0]);
        assert_eq!(arg_after(join, "--node-name"), name);
        assert_eq!(
            join.args[1],
            format!("{}:6443", c.hosts.host("cp").addr),
            "{join}"
        );
        assert!(arg_after(join, "--discovery-token-ca-cert-hash").starts_with("sha256:"));
    }
    assert!(!out.contains(made[0]), "the join token was printed:\n{out}");
    // Serving certificates of the cluster's own nodes approved.
    assert!(find(&cp, "kubectl", &["certificate", "approve"]).is_some());

    // The admin kubeconfig: private, named for the shop, pointing where
    // configured; then the shop was deployed through it.
    use std::os::unix::fs::PermissionsExt;
    let kc = c.kubeconfig();
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains("current-context: eshop-shop"), "{text}");
    assert!(
        text.contains(&format!("server: {}", c.mock.url())),
        "{text}"
    );
    assert!(
        !out.contains("PRIVATE KEY") && !out.contains("client-key-data"),
        "{out}"
    );
    assert!(c
        .mock
        .get("apps/v1", "deployments", "shop", "pricing")
        .is_some());

    // A second run: no node changes anything, nothing changes in the API.
    let counts: Vec<usize> = ["cp", "w1", "w2"]
        .iter()
        .map(|h| c.hosts.calls(h).len())
        .collect();
    let again = c.ok(&["phase", "kubernetes", "apply"]);
    assert!(again.contains("0 change(s)"), "{again}");
    for (h, n) in ["cp", "w1", "w2"].iter().zip(counts) {
        let calls = c.hosts.calls(h);
        let changed: Vec<String> = calls[n..]
            .iter()
            .filter(|x| mutating(x))
            .map(Call::line)
            .collect();
        assert!(
            changed.is_empty(),
            "{h} changed on a converged run:\n{}",
            changed.join("\n")
        );
    }
    let plan = c.ok(&["plan", "--from", "kubernetes", "--to", "kubernetes"]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete"),
        "{plan}"
    );
    let plan = c.ok(&["phase", "kubernetes", "plan", "-v"]);
    assert!(
        plan.contains(&format!(
            "= add-on calico v3.30.3 (sha256 {} (pinned by eshop.lock))",
            &sha256_of(&c.dir.path().join("calico.yaml"))[..16]
        )),
        "{plan}"
    );

    // The manifest changes at its source (upstream, a mirror, in transit)
    // and a machine without eshop's verified copy (a fresh checkout, CI)
    // downloads it: apply stops before any node is touched, naming both
    // hashes.
    let calico = c.dir.path().join("calico.yaml");
    let pinned = sha256_of(&calico);
    std::fs::write(
        &calico,
        "# stand-in calico manifest, altered\nkind: List\nitems: []\n",
    )
    .unwrap();
    std::fs::remove_dir_all(c.dir.path().join(".eshop/downloads")).unwrap();
    let counts: Vec<usize> = ["cp", "w1", "w2"]
        .iter()
        .map(|h| c.hosts.calls(h).len())
        .collect();
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("calico v3.30.3")
            && err.contains(&format!("eshop.lock pins {pinned}"))
            && err.contains(&sha256_of(&calico))
            && err.contains("nothing was applied"),
        "{err}"
    );
    for (h, n) in ["cp", "w1", "w2"].iter().zip(&counts) {
        assert_eq!(c.hosts.calls(h).len(), *n, "{h} was reached");
    }
    // A pin in eshop.toml that contradicts eshop.lock is refused too.
    let text = std::fs::read_to_string(c.config()).unwrap().replace(
        "[kubernetes]\n",
        &format!("[kubernetes]\ncalico_sha256 = \"{}\"\n", sha256_of(&calico)),
    );
    std::fs::write(c.config(), text).unwrap();
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("kubernetes.calico_sha256 pins calico"),
        "{err}"
    );
    // Back to the reviewed content and no extra pin: converged again.
    std::fs::write(
        &calico,
        "# stand-in calico manifest\nkind: List\nitems: []\n",
    )
    .unwrap();
    c.configure(&c.hosts.ssh_config(), "");
    c.ok(&["phase", "kubernetes", "apply"]);

    // Destroy: kubeadm reset on every node, the kubeconfig removed.
    c.ok(&["phase", "kubernetes", "destroy"]);
    for h in ["cp", "w1", "w2"] {
        assert!(
            find(&c.hosts.calls(h), "kubeadm", &["reset", "-f"]).is_some(),
            "{h} not reset"
        );
        assert!(
            c.hosts.file(h, "/etc/kubernetes/kubelet.conf").is_none(),
            "{h}"
        );
    }
    assert!(!kc.exists());
    c.ok(&["phase", "kubernetes", "destroy"]);
}

#[test]
fn unknown_host_keys_are_refused_unless_trust_on_first_use_is_configured() {
    let c = Cluster::start("");
    let empty = c.dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    // The user's ssh config says to trust anything; eshop's own check wins.
    c.configure(&c.hosts.ssh_config_with_known_hosts(&empty, "no"), "");
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("node cp (cp)") && err.contains("unknown host key"),
        "{err}"
    );
    assert!(
        c.hosts.calls("cp").is_empty(),
        "a script ran on an unverified host"
    );
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "a key was recorded"
    );

    // Trust on first use, said explicitly: accepted and remembered.
    c.configure(
        &c.hosts.ssh_config_with_known_hosts(&empty, "yes"),
        "trust_on_first_use = true",
    );
    c.ok(&["phase", "kubernetes", "apply"]);
    let known = std::fs::read_to_string(&empty).unwrap();
    for h in ["cp", "w1", "w2"] {
        assert!(
            known.contains(&c.hosts.host(h).addr.to_string()),
            "{h} not remembered:\n{known}"
        );
    }
    // A host key that changes is refused even then.
    let other = c.dir.path().join("known_hosts_other");
    let cp_addr = c.hosts.host("cp").addr.to_string();
    let forged = std::fs::read_to_string(c.hosts.known_hosts())
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&cp_addr))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + &format!("{cp_addr} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq6XQv0m2Cq3wJ7bVfKp0u3cE1nM8yD4kLzR2sT5uVw\n");
    std::fs::write(&other, forged).unwrap();
    c.configure(
        &c.hosts.ssh_config_with_known_hosts(&other, "yes"),
        "trust_on_first_use = true",
    );
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("node cp (cp)") && err.contains("CHANGED"),
        "{err}"
    );
}

#[test]
fn a_node_that_is_down_stops_the_bootstrap_with_an_error_naming_it() {
    let c = Cluster::start("");
    c.hosts.stop("w2");
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(err.contains("node w2 (w2): ssh:"), "{err}");
    assert!(
        !err.contains("node w1"),
        "only the failing node is named: {err}"
    );
    // Nothing started on the reachable nodes: the problem is found first.
    assert!(c.hosts.calls("cp").is_empty() && c.hosts.calls("w1").is_empty());
}

/// A node script that hangs (apt waiting for a lock another apt holds) is
/// ended by the node's own `timeout` after ssh.script_timeout_secs, and
/// the error names the node and the step, instead of `up` waiting forever.
#[test]
fn a_hung_node_script_times_out_naming_the_node_and_the_step() {
    let c = Cluster::start("script_timeout_secs = 10\n");
    std::fs::write(c.hosts.host("w1").state_dir().join("apt-lock-held"), "").unwrap();
    let started = std::time::Instant::now();
    let err = c.fails(&["phase", "kubernetes", "apply"], 1);
    assert!(
        err.contains("node w1 (w1)") && err.contains("timed out after 10 s in step \"containerd"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}
