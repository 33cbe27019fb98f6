//! `eshop phase kubernetes snapshot` and `restore` against a REAL etcd
//! (Debian's etcd-server 3.4, client TLS with kubeadm's certificate
//! layout) on a real sshd host in its own network and mount namespaces
//! (tests/common/ssh_hosts.rs), over eshop's own SSH. The one STAND-IN
//! is the kubelet's static pod handling: a thread of this test starts
//! etcd, with the flags of /etc/kubernetes/manifests/etcd.yaml, while
//! that manifest is there, and stops it when it goes, as the kubelet
//! does with a static pod.

mod common;

use common::cli::Project;
use common::ssh_hosts::Hosts;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PKI: &str = r#"set -e
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -subj /CN=etcd-ca -days 2 2>/dev/null; }
leaf() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
}
ca
leaf server cp "basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
leaf healthcheck-client kube-etcd-healthcheck-client "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"
"#;

/// kubeadm's etcd static pod, reduced to what the restore reads and what
/// etcd needs: the flags, one `- --flag=value` a line.
const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --name=cp\n    - --data-dir=/var/lib/etcd\n    - --listen-client-urls=https://127.0.0.1:2379\n    - --advertise-client-urls=https://127.0.0.1:2379\n    - --listen-peer-urls=http://127.0.0.1:2380\n    - --initial-advertise-peer-urls=http://127.0.0.1:2380\n    - --initial-cluster=cp=http://127.0.0.1:2380\n    - --cert-file=/etc/kubernetes/pki/etcd/server.crt\n    - --key-file=/etc/kubernetes/pki/etcd/server.key\n    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt\n    - --client-cert-auth=true\n    image: registry.k8s.io/etcd:3.5.21-0\n";

/// The STAND-IN kubelet's one pass: etcd runs exactly while its manifest
/// is there.
const KUBELET_PASS: &str = r#"m=/etc/kubernetes/manifests/etcd.yaml pidf=/var/lib/standin-etcd.pid
running=no
if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then running=yes; fi
if [ -f "$m" ] && [ "$running" = no ]; then
  mapfile -t args < <(sed -n 's/^ *- \(--.*\)$/\1/p' "$m")
  setsid etcd "${args[@]}" >>/var/lib/standin-etcd.log 2>&1 </dev/null &
  echo $! >"$pidf"
fi
if [ ! -f "$m" ] && [ "$running" = yes ]; then
  kill "$(cat "$pidf")"
  while kill -0 "$(cat "$pidf")" 2>/dev/null; do sleep 0.1; done
  rm -f "$pidf"
fi
"#;

const CTL: &str = "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key";

struct Node {
    hosts: Hosts,
    stop: Arc<AtomicBool>,
    kubelet: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let hosts = Hosts::start(&["cp"]);
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        let out = Command::new("bash")
            .args(["-c", PKI])
            .current_dir(&pki)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("etcd.yaml"), MANIFEST).unwrap();
        let setup = format!(
            "set -e; install -d -m 0700 /etc/kubernetes/pki/etcd /etc/kubernetes/manifests\n\
             for f in ca.crt server.crt server.key healthcheck-client.crt healthcheck-client.key; do install -m 0600 '{pki}'/$f /etc/kubernetes/pki/etcd/$f; done\n\
             install -m 0600 '{manifest}' /etc/kubernetes/manifests/etcd.yaml\n",
            pki = pki.display(),
            manifest = dir.join("etcd.yaml").display()
        );
        let out = hosts.exec("cp", &setup);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Node {
            hosts,
            stop: Arc::new(AtomicBool::new(false)),
            kubelet: None,
        }
    }

    fn ctl(&self, args: &str) -> String {
        let out = self.hosts.exec("cp", &format!("{CTL} {args}"));
        assert!(
            out.status.success(),
            "etcdctl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn healthy(&self) -> bool {
        self.hosts
            .exec("cp", &format!("{CTL} --command-timeout=2s endpoint health"))
            .status
            .success()
    }

    fn wait_healthy(&self) {
        let t = Instant::now();
        while !self.healthy() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "etcd did not come up: {}",
                self.hosts
                    .file("cp", "/var/lib/standin-etcd.log")
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pid(&self) -> String {
        self.hosts
            .file("cp", "/var/lib/standin-etcd.pid")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    fn keys(&self) -> Vec<String> {
        self.ctl("get '' --prefix --keys-only")
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn revision(&self) -> i64 {
        let v: Value = serde_json::from_str(&self.ctl("endpoint status -w json")).unwrap();
        v[0]["Status"]["header"]["revision"].as_i64().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(k) = self.kubelet.take() {
            let _ = k.join();
        }
        let _ = self.hosts.exec(
            "cp",
            "f=/var/lib/standin-etcd.pid; [ -f $f ] && kill $(cat $f) 2>/dev/null; true",
        );
    }
}

/// The STAND-IN kubelet, on its own thread.
fn kubelet(hosts: &Hosts, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let holder = hosts.exec_command("cp");
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let _ = holder.run(KUBELET_PASS);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

fn config(p: &Project, hosts: &Hosts, keep: usize) {
    p.write_config(&format!(
        "project = \"shop\"\n[kubernetes]\nmode = \"bootstrap\"\nsnapshot_keep = {keep}\n\
         [[kubernetes.nodes]]\nname = \"cp\"\naddress = \"cp\"\nprivate_address = \"{addr}\"\nrole = \"control-plane\"\n\
         [ssh]\nconfig_file = \"{cfg}\"\nconnect_timeout_secs = 5\n",
        addr = hosts.host("cp").addr,
        cfg = hosts.ssh_config().display(),
    ));
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    v.sort();
    v
}

#[test]
fn snapshots_under_load_restore_exactly_and_refuse_a_damaged_file() {
    let p = Project::new();
    let mut node = Node::start(p.dir.path());
    node.kubelet = Some(kubelet(&node.hosts, node.stop.clone()));
    node.wait_healthy();
    config(&p, &node.hosts, 2);

    // A snapshot under a write load: what eshop records is what etcdctl
    // reads from the copy here.
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = load_stop.clone();
        let exec = node.hosts.exec_command("cp");
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) && n < 2000 {
                let _ = exec.run(&format!("{CTL} put load/{n} value-{n} >/dev/null"));
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let out = p.ok(&["phase", "kubernetes", "snapshot"]);
    load_stop.store(true, Ordering::SeqCst);
    let written = load.join().unwrap();
    assert!(written > 0, "the load wrote nothing");
    let dir = p.dir.path().join(".eshop/shop-etcd-snapshots");
    let first = snapshots(&dir);
    assert_eq!(first.len(), 1, "{out}");
    let db = &first[0];
    assert!(out.contains(&db.display().to_string()), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let rec: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", db.display())).unwrap()).unwrap();
    let local = Command::new("etcdctl")
        .args(["snapshot", "status", db.to_str().unwrap(), "-w", "json"])
        .output()
        .unwrap();
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let st: Value = serde_json::from_slice(&local.stdout).unwrap();
    for k in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(
            rec[k], st[k],
            "{k}: eshop recorded {rec}, etcdctl reads {st}"
        );
    }
    assert!(rec["revision"].as_i64().unwrap() > 1);
    assert!(out.contains(rec["sha256"].as_str().unwrap()), "{out}");
    // The node keeps no copy.
    assert!(node
        .hosts
        .exec("cp", "ls /var/lib/eshop/etcd-snapshots/*.db")
        .stdout
        .is_empty());

    // A quiet snapshot of known keys, then changes after it.
    for k in ["fixed/a", "fixed/b", "fixed/c"] {
        node.ctl(&format!("put {k} v"));
    }
    std::thread::sleep(Duration::from_millis(1100)); // distinct file names (seconds)
    p.ok(&["phase", "kubernetes", "snapshot"]);
    let at_snapshot = node.keys();
    let snap = snapshots(&dir).pop().unwrap();
    node.ctl("put after/1 v");
    node.ctl("del fixed/a");
    let live_rev = node.revision();
    assert_ne!(node.keys(), at_snapshot);

    // A third snapshot: the oldest goes (snapshot_keep = 2).
    std::thread::sleep(Duration::from_millis(1100));
    p.ok(&["phase", "kubernetes", "snapshot"]);
    let kept = snapshots(&dir);
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(!kept.contains(db) && kept.contains(&snap));
    assert!(!Path::new(&format!("{}.json", db.display())).exists());

    // A damaged copy is refused before anything is touched on the node.
    let bad = p.dir.path().join("damaged.db");
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, bytes).unwrap();
    std::fs::copy(
        format!("{}.json", snap.display()),
        format!("{}.json", bad.display()),
    )
    .unwrap();
    let pid = node.pid();
    let err = p.fails(
        &[
            "--yes",
            "phase",
            "kubernetes",
            "restore",
            bad.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("damaged") && err.contains("nothing was stopped"),
        "{err}"
    );
    assert_eq!(node.pid(), pid, "etcd was restarted");
    assert!(node
        .hosts
        .file("cp", "/etc/kubernetes/manifests/etcd.yaml")
        .is_some());
    assert!(node
        .hosts
        .exec("cp", "ls /var/lib/eshop/etcd-restore/")
        .stdout
        .is_empty());

    // Without --yes nobody can confirm: shown, refused, nothing stopped.
    let err = p.fails(
        &["phase", "kubernetes", "restore", snap.to_str().unwrap()],
        2,
    );
    assert!(
        err.contains("REPLACED") && err.contains("needs --yes"),
        "{err}"
    );
    assert_eq!(node.pid(), pid);

    // The restore: exactly the snapshot's keys, and the revision that went
    // back is reported with what to do.
    let out = p.ok(&[
        "--yes",
        "phase",
        "kubernetes",
        "restore",
        snap.to_str().unwrap(),
    ]);
    assert!(out.contains("etcd restored"), "{out}");
    assert!(
        out.contains(&format!("than the live one ({live_rev})")),
        "{out}"
    );
    assert!(out.contains("restart kube-controller-manager"), "{out}");
    node.wait_healthy();
    assert_eq!(node.keys(), at_snapshot);
    assert_ne!(node.pid(), pid, "etcd was not restarted");
    // The previous data stays on the node; the manifest is back.
    let kept = node.hosts.exec("cp", "ls -d /var/lib/etcd.before-*");
    assert!(kept.status.success(), "no previous data dir kept");
    assert!(node
        .hosts
        .file("cp", "/etc/kubernetes/manifests/etcd.yaml")
        .is_some());
    assert!(node
        .hosts
        .exec("cp", "ls /etc/kubernetes/ | grep eshop-restore")
        .stdout
        .is_empty());
}
