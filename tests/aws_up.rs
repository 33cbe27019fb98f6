//! `eshop up` on target aws, phase 3 to the end, in order: the real moto
//! server for phases 3 and 4 (AWS); for phases 5 and 9 the nodes are the
//! real sshd hosts of tests/common/ssh_hosts.rs as `[[kubernetes.nodes]]`
//! (moto's instances cannot be reached over SSH), with their RECORDING
//! STAND-INS for kubeadm, kubectl, apt, systemctl and the like; phases 5
//! to 7 talk to the MOCK API server (tests/common/kube_mock.rs); phase 9
//! runs the real, pinned ansible-playbook. Phases 1 and 2 are covered by
//! tests/local_target.rs: here the images are pinned in the config.

mod common;

use common::cli::Project;
use common::cluster::{self, ansible_events, pki, playbook_tool};
use common::kube_mock::KubeMock;
use common::ssh_hosts::Hosts;
use common::Moto;
use serde_json::Value;

/// Every phase `up` runs on aws from phase 3 on, in eshop's order.
fn phases_from_infra() -> Vec<&'static str> {
    eshop::phases::registry()
        .iter()
        .map(|p| p.info())
        .filter(|i| i.number >= 3 && i.targets.contains(&eshop::config::Target::Aws))
        .map(|i| i.name)
        .collect()
}

/// The names of the phases `up` went through, in order, and those it
/// said it skipped.
fn phases_of(events: &[Value]) -> (Vec<String>, Vec<String>) {
    let name = |e: &Value| e["phase"].as_str().unwrap_or_default().to_owned();
    let ran = events
        .iter()
        .filter(|e| e["event"] == "phase")
        .map(name)
        .collect();
    let skipped = events
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("skipped:"))
        })
        .map(name)
        .collect();
    (ran, skipped)
}

#[test]
fn up_on_aws_runs_infra_to_config_in_order_and_again_changes_nothing() {
    let moto = Moto::start();
    let hosts = Hosts::start(&["cp", "w1", "w2"]);
    let mock = KubeMock::start();
    hosts.set_api_server(&mock.url());
    pki(&hosts.cluster_dir());
    let p = Project::new()
        .envs(moto.env())
        .env_remove("AWS_ENDPOINT_URL") // eshop must use [aws] endpoint
        .env_remove("AWS_PROFILE")
        .env("ESHOP_ANSIBLE_PLAYBOOK", playbook_tool());
    let key = p.dir.path().join("id.pub");
    std::fs::write(&key, format!("{}\n", common::TEST_PUBKEY)).unwrap();
    p.write_config(&format!(
        "project = \"shop\"\ntarget = \"aws\"\n\
         [aws]\nendpoint = \"{endpoint}\"\nregion = \"eu-west-1\"\n\
         admin_cidr = \"203.0.113.0/24\"\nssh_public_key = \"{key}\"\n\
         ami_name = \"ubuntu/images/hvm-ssd/ubuntu-*-amd64-server-*\"\n\
         [kubernetes]\nmode = \"bootstrap\"\napi_server = \"{api}\"\n\
         rollout_timeout_secs = 20\n{apt_key}{nodes}{images}\
         [ssh]\nuser = \"root\"\nconfig_file = \"{ssh}\"\nconnect_timeout_secs = 5\n",
        endpoint = moto.url(),
        key = key.display(),
        api = mock.url(),
        apt_key = cluster::apt_key_url(p.dir.path()),
        nodes = cluster::add_ons_and_nodes(&hosts, p.dir.path()),
        images = cluster::images_table(),
        ssh = hosts.ssh_config().display(),
    ));

    let events = p.json_lines(&["--yes", "--output", "json", "up", "--from", "infra"]);
    let (ran, skipped) = phases_of(&events);
    let phases = phases_from_infra();
    // Phase 9 is among them, after phase 5.
    let at = |n: &str| {
        phases
            .iter()
            .position(|p| *p == n)
            .unwrap_or_else(|| panic!("{n} not in {phases:?}"))
    };
    assert!(at("kubernetes") < at("config"), "{phases:?}");
    assert_eq!(ran, phases, "{events:#?}");
    // Nothing asks for a pipeline or an APM agent here; everything else ran.
    assert_eq!(skipped, ["pipeline", "apm"], "{events:#?}");

    // Phase 9 came after phase 5 on the nodes: its etcd snapshot timer
    // (which phase 5's scripts do not install) was written after the
    // workers joined.
    let joined = ["w1", "w2"]
        .iter()
        .map(|h| {
            hosts
                .calls(h)
                .iter()
                .find(|c| c.is("kubeadm", &["join"]))
                .unwrap_or_else(|| panic!("{h} never joined"))
                .t
        })
        .fold(0.0, f64::max);
    let timer = hosts
        .calls("cp")
        .iter()
        .find(|c| c.is("systemctl", &["enable"]) && c.line().contains("eshop-etcd-backup.timer"))
        .unwrap_or_else(|| panic!("no snapshot timer enabled on cp"))
        .t;
    assert!(joined < timer, "joined {joined}, timer {timer}");
    assert!(hosts
        .file("cp", "/etc/systemd/system/eshop-etcd-backup.timer")
        .is_some());
    // Phase 9's Ansible reported every node, from its own stats.
    let stats = ansible_events(p.dir.path())
        .into_iter()
        .rfind(|v| v["event"] == "stats")
        .expect("ansible's stats");
    let mut nodes: Vec<_> = stats["hosts"].as_object().unwrap().keys().collect();
    nodes.sort();
    assert_eq!(nodes, ["cp", "w1", "w2"], "{stats}");

    // The whole run again: every phase converged, nothing to do.
    let events = p.json_lines(&["--yes", "--output", "json", "up", "--from", "infra"]);
    assert_eq!(phases_of(&events).0, phases);
    let summary = events
        .iter()
        .rfind(|e| e["event"] == "summary")
        .expect("a summary");
    let changed: Vec<_> = ansible_events(p.dir.path())
        .into_iter()
        .filter(|v| v["event"] == "task" && v["status"] == "changed")
        .collect();
    assert_eq!(
        summary["changed"], 0,
        "Ansible's changed tasks: {changed:#?}\n{events:#?}"
    );
}
