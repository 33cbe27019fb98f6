mod common;

// The ssh test-host harness itself (tests/common/ssh_hosts.rs): real sshd
// per network + mount namespace, reached with the real ssh client, and the
// recording stand-ins (tests/ssh/standins) driven by eshop's own kubeadm
// node scripts (templates/kubeadm). Needs root and scripts/test-setup.sh.

use std::path::Path;
use std::process::{Command, Output};

use common::ssh_hosts::{kubeadm_script, kubeadm_templates_dir, render, standins_dir, Hosts};

const K8S_MINOR: &str = "v1.34";
const K8S_PACKAGE: &str = "1.34.2-1.1";
/// pkgs.k8s.io's signing key, as eshop pins it by default.
const K8S_KEY: &str = "DE15B14486CD377B9E876E1A234654DA9A296436";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout of a successful command; panics with both streams otherwise.
#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// stderr of a command that failed; panics if it succeeded.
#[track_caller]
fn ok_err(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded:\n{}", text(&out.stdout));
    text(&out.stderr)
}

fn changed(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("changed: "))
        .collect()
}

fn prepare_node() -> String {
    kubeadm_script(
        "prepare-node.sh",
        &[
            ("k8s_minor", K8S_MINOR),
            ("k8s_package", K8S_PACKAGE),
            ("apt_key_fingerprint", K8S_KEY),
        ],
    )
}

/// Existence and content of a path on the real machine.
fn real(path: &str) -> Option<Vec<u8>> {
    std::fs::read(path)
        .ok()
        .or_else(|| Path::new(path).exists().then(Vec::new))
}

fn netns_list() -> String {
    text(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
}

#[test]
fn each_host_has_its_own_view_of_etc_var_lib_and_root() {
    let hosts = Hosts::start(&["node-1", "node-2"]);
    let tag = format!("eshop-ssh-harness-{}", std::process::id());
    let etc = format!("/etc/{tag}");
    let var_lib = format!("/var/lib/{tag}");
    let home = format!("/root/{tag}");

    let out = ok(&hosts.ssh(
        "node-1",
        &format!(
            "echo on-node-1 > {etc} && mkdir {var_lib} && touch {home} && hostname && cat {etc}"
        ),
        "",
    ));
    assert_eq!(out, "node-1\non-node-1\n");
    let node2 = hosts.ssh(
        "node-2",
        &format!("test -e {etc} || test -e {var_lib} || test -e {home}"),
        "",
    );
    assert_eq!(node2.status.code(), Some(1), "node-2 sees node-1's files");
    assert_eq!(ok(&hosts.ssh("node-2", "hostname", "")), "node-2\n");
    for p in [&etc, &var_lib, &home] {
        assert!(!Path::new(p).exists(), "{p} leaked to the real filesystem");
    }
    assert_eq!(hosts.file("node-1", &etc).as_deref(), Some("on-node-1\n"));
    assert_eq!(hosts.file("node-2", &etc), None);

    // Each host is on its own address, and its PATH finds the stand-ins first.
    let n1 = hosts.host("node-1");
    let ip = ok(&hosts.ssh("node-1", "ip -o -4 addr show dev eth0", ""));
    assert!(ip.contains(&format!("{}/30", n1.addr)), "{ip}");
    assert_ne!(n1.addr, hosts.host("node-2").addr);
    let found = ok(&hosts.ssh(
        "node-1",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; command -v kubeadm apt-get systemctl",
        "",
    ));
    assert_eq!(
        found,
        "/usr/local/sbin/kubeadm\n/usr/local/sbin/apt-get\n/usr/local/sbin/systemctl\n"
    );
    assert!(!Path::new("/usr/local/sbin/kubeadm").exists());
}

#[test]
fn prepare_node_changes_once_and_pins_the_packages() {
    let hosts = Hosts::start(&["node-1", "node-2"]);
    let watched = [
        "/etc/apt/sources.list.d/kubernetes.list",
        "/etc/apt/keyrings/kubernetes-apt-keyring.gpg",
        "/etc/containerd/config.toml",
        "/etc/modules-load.d/eshop-k8s.conf",
        "/etc/sysctl.d/90-eshop-k8s.conf",
    ];
    let before: Vec<_> = watched.iter().map(|p| real(p)).collect();
    let script = prepare_node();

    let first = ok(&hosts.run_script("node-1", &script));
    let first_changes = changed(&first);
    for want in [
        "changed: swap off",
        "changed: /etc/modules-load.d/eshop-k8s.conf",
        "changed: /etc/sysctl.d/90-eshop-k8s.conf",
        "changed: installed containerd openssl",
        "changed: /etc/containerd/config.toml",
        "changed: /etc/apt/keyrings/kubernetes-apt-keyring.gpg (key DE15B14486CD377B9E876E1A234654DA9A296436)",
        "changed: /etc/apt/sources.list.d/kubernetes.list",
        "changed: installed kubelet=1.34.2-1.1 kubeadm=1.34.2-1.1 kubectl=1.34.2-1.1",
        "changed: kubelet enabled",
    ] {
        assert!(first_changes.contains(&want), "no {want:?} in:\n{first}");
    }
    assert!(first.contains("==> swap off"), "{first}");
    let calls_after_first = hosts.calls("node-1").len();

    let second = ok(&hosts.run_script("node-1", &script));
    assert!(changed(&second).is_empty(), "second run changed:\n{second}");

    let calls = hosts.calls("node-1");
    let install = calls
        .iter()
        .find(|c| c.is("apt-get", &["install"]) && c.args.iter().any(|a| a.starts_with("kubeadm=")))
        .unwrap_or_else(|| panic!("no apt-get install of kubeadm in {calls:#?}"));
    for p in ["kubelet", "kubeadm", "kubectl"] {
        let pinned = format!("{p}={K8S_PACKAGE}");
        assert!(
            install.args.contains(&pinned),
            "{pinned} not in {}",
            install.line()
        );
    }
    assert!(install
        .args
        .contains(&"--allow-change-held-packages".to_owned()));
    let hold = calls
        .iter()
        .position(|c| c.is("apt-mark", &["hold"]))
        .expect("apt-mark hold");
    assert!(
        calls.iter().position(|c| c == install).unwrap() < hold,
        "hold before install"
    );
    assert!(calls.iter().any(|c| c.is("swapoff", &["-a"])));
    assert!(calls
        .iter()
        .any(|c| c.is("systemctl", &["enable", "--now", "kubelet"])));
    // Log order is the order the calls ended; `t` is when each began (the
    // stand-ins of one pipeline run at once).
    assert!(calls.iter().all(|c| c.t > 1.7e9 && c.host == "node-1"));
    // The second run only looked (gpg --show-keys reads the keyring).
    for c in &calls[calls_after_first..] {
        let looked = c.cmd == "gpg" && c.args.contains(&"--show-keys".to_owned());
        let acted = ["apt-get", "apt-mark", "swapoff", "curl", "gpg"].contains(&c.cmd.as_str())
            || c.is("systemctl", &["enable"])
            || c.is("systemctl", &["restart"]);
        assert!(looked || !acted, "second run acted: {c}");
    }

    // What the host sees, and what the stand-ins tell the scripts.
    let config = hosts
        .file("node-1", "/etc/containerd/config.toml")
        .expect("config.toml");
    assert!(
        config.contains("            SystemdCgroup = true"),
        "{config}"
    );
    let versions = ok(&hosts.ssh(
        "node-1",
        "dpkg-query -W -f='${db:Status-Status} ${Version}' kubeadm; echo; kubeadm version -o short; swapon --show --noheadings",
        "",
    ));
    assert_eq!(versions, "installed 1.34.2-1.1\nv1.34.2\n");
    let list = hosts
        .file("node-1", "/etc/apt/sources.list.d/kubernetes.list")
        .expect("kubernetes.list");
    assert!(
        list.contains("https://pkgs.k8s.io/core:/stable:/v1.34/deb/"),
        "{list}"
    );

    // Nothing reached node-2 or the machine itself.
    assert!(hosts.calls("node-2").is_empty());
    // node-2 sees the machine's own file (if any), not node-1's.
    assert_eq!(
        hosts.file("node-2", "/etc/containerd/config.toml"),
        std::fs::read_to_string("/etc/containerd/config.toml").ok()
    );
    let after: Vec<_> = watched.iter().map(|p| real(p)).collect();
    assert_eq!(before, after, "the real /etc changed");
}

/// The Kubernetes apt key must be the pinned one and only it: a forged key,
/// or the real one with another key beside it (apt would trust both), stops
/// the node before any repository or package is set up.
#[test]
fn prepare_node_refuses_an_apt_key_that_is_not_the_pinned_one() {
    let hosts = Hosts::start(&["node-1"]);
    let state = hosts.host("node-1").state_dir();
    let forged = "0123456789ABCDEF0123456789ABCDEF01234567";
    for served in [forged.to_owned(), format!("{K8S_KEY}\n{forged}")] {
        std::fs::write(state.join("apt-key-fingerprint"), &served).unwrap();
        let out = hosts.run_script("node-1", &prepare_node());
        assert!(!out.status.success(), "{}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("not {K8S_KEY} (kubernetes.apt_key_fingerprint)"))
                && err.contains(forged),
            "{err}"
        );
        assert!(hosts
            .file("node-1", "/etc/apt/keyrings/kubernetes-apt-keyring.gpg")
            .is_none());
        assert!(hosts
            .file("node-1", "/etc/apt/sources.list.d/kubernetes.list")
            .is_none());
        assert!(!hosts
            .calls("node-1")
            .iter()
            .any(|c| c.is("apt-get", &["install"])
                && c.args.iter().any(|a| a.starts_with("kubeadm"))));
    }
    // The real key alone is accepted.
    std::fs::remove_file(state.join("apt-key-fingerprint")).unwrap();
    ok(&hosts.run_script("node-1", &prepare_node()));
}

#[test]
fn unknown_host_key_is_refused() {
    let hosts = Hosts::start(&["node-1"]);
    let empty = hosts.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let strict = hosts.ssh_config_with_known_hosts(&empty, "yes");
    let out = hosts.ssh_with_config(&strict, "node-1", "true", "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Host key verification failed"),
        "{}",
        text(&out.stderr)
    );

    // A key that does not match (here: the client's) is refused as well.
    let wrong = hosts.dir.path().join("wrong_known_hosts");
    let client_pub = std::fs::read_to_string(hosts.client_key().with_extension("pub")).unwrap();
    std::fs::write(
        &wrong,
        format!("{} {client_pub}", hosts.host("node-1").addr),
    )
    .unwrap();
    let cfg = hosts.ssh_config_with_known_hosts(&wrong, "accept-new");
    let out = hosts.ssh_with_config(&cfg, "node-1", "true", "");
    assert!(
        text(&out.stderr).contains("Host key verification failed"),
        "{}",
        text(&out.stderr)
    );

    // accept-new learns the host's real key; the harness's file has it already.
    let learned = hosts.dir.path().join("learned_known_hosts");
    let cfg = hosts.ssh_config_with_known_hosts(&learned, "accept-new");
    ok(&hosts.ssh_with_config(&cfg, "node-1", "true", ""));
    let key = &hosts.host("node-1").host_key;
    assert!(std::fs::read_to_string(&learned)
        .unwrap()
        .contains(key.as_str()));
    assert!(std::fs::read_to_string(hosts.known_hosts())
        .unwrap()
        .contains(key.as_str()));
    ok(&hosts.ssh("node-1", "true", ""));
}

#[test]
fn a_stopped_host_refuses_connections_and_the_others_work() {
    let hosts = Hosts::start(&["node-1", "node-2"]);
    hosts.stop("node-2");
    let out = hosts.ssh("node-2", "true", "");
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(
        err.contains("Connection refused") || err.contains("timed out"),
        "{err}"
    );
    assert_eq!(ok(&hosts.ssh("node-1", "hostname", "")), "node-1\n");
    // The stopped host keeps its view of the files.
    assert!(hosts.file("node-2", "/etc/hostname").is_some());

    hosts.restart("node-2");
    assert_eq!(ok(&hosts.ssh("node-2", "hostname", "")), "node-2\n");
}

#[test]
fn drop_removes_namespaces_links_and_files() {
    let hosts = Hosts::start(&["a-1", "a-2"]);
    let netns: Vec<String> = hosts.hosts.iter().map(|h| h.netns.clone()).collect();
    let veths: Vec<String> = hosts.hosts.iter().map(|h| h.veth.clone()).collect();
    let dir = hosts.dir.path().to_owned();
    let listed = netns_list();
    assert!(
        netns.iter().all(|n| listed.contains(n.as_str())),
        "{listed}"
    );
    // A session left running must not keep anything alive.
    let _ = hosts.ssh("a-1", "nohup sleep 600 >/dev/null 2>&1 &", "");
    drop(hosts);

    let listed = netns_list();
    for n in &netns {
        assert!(!listed.contains(n.as_str()), "{n} left in: {listed}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let links = text(
            &Command::new("ip")
                .args(["-o", "link", "show"])
                .output()
                .unwrap()
                .stdout,
        );
        let left: Vec<_> = veths
            .iter()
            .filter(|v| links.contains(&format!(" {v}@")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "veths left: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!dir.exists(), "{} left", dir.display());
}

#[test]
fn a_panicking_test_leaves_no_namespaces() {
    let netns = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let hosts = Hosts::start(&["p-1"]);
        netns
            .lock()
            .unwrap()
            .extend(hosts.hosts.iter().map(|h| h.netns.clone()));
        panic!("deliberate panic with hosts running");
    }));
    assert!(result.is_err());
    let netns = netns.into_inner().unwrap();
    assert_eq!(netns.len(), 1);
    let listed = netns_list();
    assert!(!listed.contains(netns[0].as_str()), "{listed}");
}

#[test]
fn stand_ins_record_calls_and_are_not_installed_before_apt() {
    let hosts = Hosts::start(&["node-1"]);
    let out = hosts.ssh(
        "node-1",
        r"kubeadm token create --description 'two words' '' 'back\slash'",
        "",
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("kubeadm: command not found"),
        "{}",
        text(&out.stderr)
    );
    let out = hosts.ssh("node-1", "containerd config default", "");
    assert_eq!(out.status.code(), Some(127));
    let out = hosts.ssh("node-1", "systemctl is-enabled --quiet containerd", "");
    assert_eq!(out.status.code(), Some(1));
    let out = hosts.ssh("node-1", "dpkg-query -W -f='${Version}' containerd", "");
    assert_eq!((out.status.code(), out.stdout.len()), (Some(1), 0));
    let out = hosts.ssh("node-1", "kubectl get nodes", "");
    assert_eq!(out.status.code(), Some(127));
    // Not emulated is a loud failure, not a silent success.
    let out = hosts.ssh("node-1", "apt-get dist-upgrade -y", "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not emulated"),
        "{}",
        text(&out.stderr)
    );

    let calls = hosts.calls("node-1");
    let lines: Vec<String> = calls.iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            "kubeadm token create --description two words  back\\slash",
            "containerd config default",
            "systemctl is-enabled --quiet containerd",
            "dpkg-query -W -f=${Version} containerd",
            "kubectl get nodes",
            "apt-get dist-upgrade -y",
        ]
    );
    assert_eq!(
        calls[0].args,
        [
            "token",
            "create",
            "--description",
            "two words",
            "",
            "back\\slash"
        ]
    );
    assert!(calls.iter().all(|c| c.host == "node-1" && c.t > 1.7e9));

    // Once apt installed them, they work.
    ok(&hosts.ssh(
        "node-1",
        "apt-get install -y -qq containerd && containerd config default | grep -c 'SystemdCgroup = false' \
         && systemctl is-active --quiet containerd",
        "",
    ));
    // Kubernetes packages need their repository and an apt-get update first.
    let out = hosts.ssh("node-1", "apt-get install -y kubeadm=1.34.2-1.1", "");
    assert_eq!(out.status.code(), Some(100));
    assert!(text(&out.stderr).contains("Unable to locate package kubeadm"));
}

#[test]
fn admin_conf_points_at_the_init_hosts_address_by_default() {
    let hosts = Hosts::start(&["cp-1"]);
    ok(&hosts.run_script("cp-1", &prepare_node()));
    let addr = hosts.host("cp-1").addr;
    ok(&hosts.ssh(
        "cp-1",
        "mkdir -p /etc/eshop && printf 'kind: ClusterConfiguration\\nkubernetesVersion: v1.34.2\\n' > /etc/eshop/c.yaml \
         && kubeadm init --config /etc/eshop/c.yaml >/dev/null",
        "",
    ));
    let admin = hosts
        .file("cp-1", "/etc/kubernetes/admin.conf")
        .expect("admin.conf");
    assert!(
        admin.contains(&format!("    server: https://{addr}:6443\n")),
        "{admin}"
    );
    let join = ok(&hosts.ssh("cp-1", "kubeadm token create --print-join-command", ""));
    assert!(
        join.starts_with(&format!("kubeadm join {addr}:6443 --token ")),
        "{join}"
    );
    // kubeadm names the node after the host when the config does not.
    let nodes = ok(&hosts.ssh(
        "cp-1",
        "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o jsonpath='{.items[*].metadata.name}'",
        "",
    ));
    assert_eq!(nodes, "cp-1");
}

/// Every node script of templates/kubeadm, in eshop's order, on a control
/// plane and two workers.
#[test]
fn kubeadm_scripts_bootstrap_a_cluster_of_stand_ins() {
    let hosts = Hosts::start(&["cp-1", "worker-1", "worker-2"]);
    let public = "203.0.113.10";
    hosts.set_api_server(&format!("https://{public}:6443"));
    let endpoint = format!("{}:6443", hosts.host("cp-1").addr);

    // Prepare all three at once, as eshop does.
    let prepare = prepare_node();
    std::thread::scope(|s| {
        for name in hosts.names() {
            let (hosts, prepare) = (&hosts, &prepare);
            s.spawn(move || ok(&hosts.run_script(name, prepare)));
        }
    });

    let config = render(
        &std::fs::read_to_string(kubeadm_templates_dir().join("kubeadm-config.yaml")).unwrap(),
        &[
            ("node_name", "cp-1"),
            ("k8s_version", "1.34.2"),
            ("cluster_name", "eshop-harness"),
            ("endpoint", &endpoint),
            ("pod_cidr", "192.168.0.0/16"),
            ("service_cidr", "10.96.0.0/12"),
        ],
    );
    // As phase 5 sends it: base64, decoded on the node.
    let config = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, config);
    let init = kubeadm_script(
        "init-control-plane.sh",
        &[
            ("k8s_version", "1.34.2"),
            ("cluster_name", "eshop-harness"),
            ("kubeadm_config_base64", &config),
            ("calico_version", "v3.30.3"),
            ("metrics_server_version", "v0.8.0"),
            ("local_path_version", "v0.0.32"),
        ],
    );
    // The add-ons' manifests, as phase 5 writes them before init (stand-in
    // content: the kubectl stand-in only records what was applied).
    let add_on = |name: &str, version: &str, content: &str, sha: &str| {
        kubeadm_script(
            "add-on.sh",
            &[
                ("name", name),
                ("version", version),
                ("sha256", sha),
                (
                    "content_base64",
                    &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, content),
                ),
            ],
        )
    };
    let sha = |c: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(c.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    // A manifest that does not arrive as sent stops there.
    let bad = ok_err(&hosts.run_script(
        "cp-1",
        &add_on("calico", "v3.30.3", "kind: List\n", &sha("other\n")),
    ));
    assert!(bad.contains("FAILED") || bad.contains("WARNING"), "{bad}");
    for (name, version) in [
        ("calico", "v3.30.3"),
        ("metrics-server", "v0.8.0"),
        ("local-path", "v0.0.32"),
    ] {
        let content = format!("# stand-in {name} manifest\nkind: List\nitems: []\n");
        let out = ok(&hosts.run_script("cp-1", &add_on(name, version, &content, &sha(&content))));
        assert!(
            changed(&out).contains(&format!("changed: /etc/eshop/addons/{name}.yaml").as_str()),
            "{out}"
        );
        assert_eq!(
            hosts
                .file("cp-1", &format!("/etc/eshop/addons/{name}.yaml"))
                .as_deref(),
            Some(content.as_str())
        );
    }
    let out = ok(&hosts.run_script("cp-1", &init));
    let changes = changed(&out);
    for want in [
        "changed: /etc/eshop/kubeadm-config.yaml",
        "changed: control plane initialised",
        "changed: calico v3.30.3",
        "changed: metrics-server v0.8.0",
        "changed: local-path-provisioner v0.0.32",
    ] {
        assert!(changes.contains(&want), "no {want:?} in:\n{out}");
    }
    let again = ok(&hosts.run_script("cp-1", &init));
    assert!(
        changed(&again).is_empty(),
        "second init run changed:\n{again}"
    );
    let admin = hosts
        .file("cp-1", "/etc/kubernetes/admin.conf")
        .expect("admin.conf");
    for want in [
        format!("    server: https://{public}:6443\n"),
        "  name: kubernetes\n".into(),
        "current-context: kubernetes-admin@kubernetes\n".into(),
        "- name: kubernetes-admin\n".into(),
        "    certificate-authority-data: ".into(),
        "    client-key-data: ".into(),
    ] {
        assert!(admin.contains(&want), "no {want:?} in admin.conf:\n{admin}");
    }
    assert_eq!(hosts.file("worker-1", "/etc/kubernetes/admin.conf"), None);

    // The join line, as eshop reads it from stdout.
    let join_command = kubeadm_script("join-command.sh", &[("project", "harness")]);
    let line = ok(&hosts.run_script("cp-1", &join_command));
    assert_eq!(line.lines().count(), 1, "{line:?}");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 7, "{line:?}");
    assert_eq!(words[..3], ["kubeadm", "join", endpoint.as_str()]);
    assert_eq!(
        (words[3], words[5]),
        ("--token", "--discovery-token-ca-cert-hash")
    );
    let (token, hash) = (words[4], words[6]);
    let (id, secret) = token.split_once('.').expect("token");
    let lower_alnum = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    assert!(
        id.len() == 6 && secret.len() == 16 && lower_alnum(id) && lower_alnum(secret),
        "{token}"
    );
    let hex = hash.strip_prefix("sha256:").expect("sha256:");
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash}"
    );
    let again = ok(&hosts.run_script("cp-1", &join_command));
    assert_ne!(
        again.split_whitespace().nth(4),
        Some(token),
        "tokens are fresh"
    );
    assert_eq!(
        again.split_whitespace().nth(6),
        Some(hash),
        "the CA hash is fixed"
    );
    assert!(hosts.calls("cp-1").iter().any(|c| c.is(
        "kubeadm",
        &[
            "token",
            "create",
            "--ttl",
            "1h",
            "--description",
            "eshop harness: join workers"
        ]
    )));

    let join = |node: &str, token: &str| {
        kubeadm_script(
            "join-worker.sh",
            &[
                ("endpoint", &endpoint),
                ("token", token),
                ("ca_hash", hash),
                ("node_name", node),
                ("cluster_name", "eshop-harness"),
            ],
        )
    };
    // A token the control plane never made is refused.
    let bad = hosts.run_script("worker-2", &join("worker-2", "abcdef.0123456789abcdef"));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("could not find a JWS signature"),
        "{}",
        text(&bad.stderr)
    );
    for node in ["worker-1", "worker-2"] {
        let out = ok(&hosts.run_script(node, &join(node, token)));
        assert!(
            changed(&out).contains(&format!("changed: joined {endpoint} as {node}").as_str()),
            "{out}"
        );
        assert!(changed(&ok(&hosts.run_script(node, &join(node, token)))).is_empty());
        assert!(hosts.file(node, "/etc/kubernetes/kubelet.conf").is_some());
    }

    // A request for a serving certificate by a user who is not a node
    // (no system:node: prefix), wearing a node's name: never approved.
    std::fs::write(hosts.cluster_dir().join("csr/csr-forged"), "worker-1\n").unwrap();
    // And a node asking for a name that is not its own (the API server's).
    std::fs::write(
        hosts.cluster_dir().join("csr/csr-greedy"),
        "system:node:worker-1\n",
    )
    .unwrap();
    let csr = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/O=system:nodes/CN=system:node:worker-1",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:worker-1,DNS:kubernetes.default,IP:10.96.0.1",
        ])
        .output()
        .unwrap();
    assert!(csr.status.success());
    std::fs::write(
        hosts.cluster_dir().join("csr-request/csr-greedy"),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &csr.stdout),
    )
    .unwrap();
    let finish = kubeadm_script("finish-cluster.sh", &[]);
    let out = ok(&hosts.run_script("cp-1", &finish));
    for forged in ["csr-forged", "csr-greedy"] {
        assert!(
            !hosts
                .cluster_dir()
                .join("csr-approved")
                .join(forged)
                .exists(),
            "{forged} was approved:\n{out}"
        );
        std::fs::remove_file(hosts.cluster_dir().join("csr").join(forged)).unwrap();
    }
    let mut approved = changed(&out);
    approved.sort();
    assert_eq!(
        approved,
        [
            "changed: approved serving certificate of cp-1",
            "changed: approved serving certificate of worker-1",
            "changed: approved serving certificate of worker-2",
        ],
        "{out}"
    );
    assert!(changed(&ok(&hosts.run_script("cp-1", &finish))).is_empty());

    let probe = kubeadm_script("probe.sh", &[]);
    let roles: Vec<String> = hosts
        .names()
        .into_iter()
        .map(|n| ok(&hosts.run_script(n, &probe)))
        .collect();
    assert_eq!(
        roles[0],
        "containerd=1.7.24-0stand-in\nkubeadm=1.34.2-1.1\nkubelet=1.34.2-1.1\nrole=control-plane\nkubelet_active=yes\n"
    );
    assert!(roles[1].contains("role=worker\n") && roles[2].contains("role=worker\n"));

    // Another project's cluster (or one eshop did not build) is left alone.
    let foreign = kubeadm_script("reset-node.sh", &[("cluster_name", "eshop-other")]);
    let out = hosts.run_script("worker-1", &foreign);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("eshop did not build for eshop-other"));
    assert!(hosts
        .file("worker-1", "/etc/kubernetes/kubelet.conf")
        .is_some());
    let reset = kubeadm_script("reset-node.sh", &[("cluster_name", "eshop-harness")]);
    for node in ["worker-1", "cp-1"] {
        assert_eq!(
            changed(&ok(&hosts.run_script(node, &reset))),
            ["changed: kubeadm reset"]
        );
        assert!(changed(&ok(&hosts.run_script(node, &reset))).is_empty());
        assert!(ok(&hosts.run_script(node, &probe)).contains("role=none\n"));
    }
    assert_eq!(hosts.file("cp-1", "/etc/kubernetes/admin.conf"), None);
    assert_eq!(hosts.file("cp-1", "/etc/eshop/kubeadm-config.yaml"), None);
}

#[test]
fn stand_ins_pass_shellcheck() {
    let dir = standins_dir();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.len() >= 14, "{files:?}");
    let out = Command::new("shellcheck")
        .arg("-x")
        .args(&files)
        .current_dir(&dir)
        .output()
        .expect("shellcheck missing: run scripts/test-setup.sh");
    ok(&out);
    for f in &files {
        let script = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            script.lines().take(3).any(|l| l.contains("Test stand-in")),
            "{f:?} does not say it is a test stand-in"
        );
    }
}
