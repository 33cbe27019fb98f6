//! The three-node cluster several tests configure: sshd hosts cp, w1 and
//! w2 (ssh_hosts.rs) as `[[kubernetes.nodes]]`, stand-in add-on manifests
//! beside the config, the shop's images pinned by digest, and the PKI the
//! stand-in kubeadm puts into admin.conf.

use super::ssh_hosts::Hosts;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn digest(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A CA and an admin client certificate that eshop's Kubernetes client
/// can parse (the stand-in kubeadm puts them into admin.conf).
pub fn pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "client-key.pem",
        "-out",
        "client.csr",
        "-subj",
        "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
    ]);
    run(&a);
    // v3 with extensions: rustls refuses version 1 certificates.
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "2",
        "-extfile",
        "client.ext",
    ]);
}

/// Phase 9's events callback lines of the last run in the project at
/// `dir` (project "shop"): one per task and host, the last Ansible's stats.
pub fn ansible_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(".eshop/shop-config/events/run.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The add-ons' config key prefixes (`…_manifest`, `…_sha256`).
pub const ADD_ONS: [&str; 3] = ["calico", "metrics_server", "local_path"];

/// Lines for the `[kubernetes]` table: the add-ons' manifests (stand-ins
/// written once into `dir`, beside the config: no network here), then
/// cp as the control plane and w1, w2 as workers, reached through the
/// hosts' ssh config by name.
pub fn add_ons_and_nodes(hosts: &Hosts, dir: &Path) -> String {
    let mut toml = String::new();
    for key in ADD_ONS {
        let file = dir.join(format!("{key}.yaml"));
        if !file.exists() {
            std::fs::write(
                &file,
                format!("# stand-in {key} manifest\nkind: List\nitems: []\n"),
            )
            .unwrap();
        }
        toml.push_str(&format!("{key}_manifest = \"{}\"\n", file.display()));
    }
    for (name, role) in [("cp", "control-plane"), ("w1", "worker"), ("w2", "worker")] {
        toml.push_str(&format!(
            "[[kubernetes.nodes]]\nname = \"{name}\"\naddress = \"{name}\"\nprivate_address = \"{}\"\nrole = \"{role}\"\n",
            hosts.host(name).addr
        ));
    }
    toml
}

/// The `[kubernetes.images]` table: every service of the shop, pinned.
pub fn images_table() -> String {
    let mut toml = "[kubernetes.images]\n".to_owned();
    for s in eshop::shop::SHOP {
        toml.push_str(&format!(
            "{n} = \"localhost:5000/shop-{n}:1a2b@sha256:{d}\"\n",
            n = s.name,
            d = digest('b')
        ));
    }
    toml
}

/// The pinned Ansible tools: ESHOP_TEST_ANSIBLE_PLAYBOOK / _LINT
/// (scripts/test-setup.sh), else where scripts/install-ansible.sh puts them.
pub fn ansible_tool(var: &str, name: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").unwrap())
            .join(".cache/eshop-tools/ansible/bin")
            .join(name)
    });
    assert!(
        p.is_file(),
        "{} missing: run scripts/test-setup.sh (scripts/install-ansible.sh --lint)",
        p.display()
    );
    p
}

pub fn playbook_tool() -> PathBuf {
    ansible_tool("ESHOP_TEST_ANSIBLE_PLAYBOOK", "ansible-playbook")
}

/// The stand-in key the curl stand-in serves (its Comment names the
/// fingerprint the gpg stand-in reports: pkgs.k8s.io's).
pub const KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----
Comment: stand-in fingerprint DE15B14486CD377B9E876E1A234654DA9A296436

mQENBGMHoXcBCADukGOEQyleViOgtkMVa7hKifP6POCTh+98xNW4TfHK/nBJN2sm
dGVzdCBzdGFuZC1pbiBrZXkgZm9yICRTVEFORElOX0hPU1QsIG5vdCByZWFsCg==
=Ab1C
-----END PGP PUBLIC KEY BLOCK-----
";

/// The `apt_key_url` line for `[kubernetes]`: the stand-in key, written
/// into `dir` (phase 9 downloads it with get_url, from a file:// URL).
pub fn apt_key_url(dir: &Path) -> String {
    let key = dir.join("Release.key");
    std::fs::write(&key, KEY).unwrap();
    format!("apt_key_url = \"file://{}\"\n", key.display())
}
