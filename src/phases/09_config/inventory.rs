//! What ansible-playbook reads besides the playbooks: the inventory (the
//! nodes phase 5 bootstraps, in the groups and with the host variables of
//! templates/ansible/README.md) and the extra-vars file, both built as
//! data and written under the phase's state folder.

use crate::config::kube::{Node, Role};
use crate::config::Config;
use crate::phases::kubernetes::bootstrap;
use crate::pins::Fetched;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A value for `ansible_ssh_common_args`, which Ansible splits like a
/// shell (shlex): a word with anything but plain characters is
/// single-quoted, so a path with spaces or quotes stays one word.
fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=./:@,+".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The ssh options every connection gets: the same host key policy as
/// phase 5 (an unknown key refused unless ssh.trust_on_first_use; a
/// changed one always), the same ssh config file and timeout.
fn ssh_args(cfg: &Config) -> String {
    let s = &cfg.ssh;
    let mut args = vec![
        "-o".to_owned(),
        format!(
            "StrictHostKeyChecking={}",
            if s.trust_on_first_use {
                "accept-new"
            } else {
                "yes"
            }
        ),
        "-o".to_owned(),
        format!("ConnectTimeout={}", s.connect_timeout.as_secs().max(1)),
    ];
    if s.identity_file.is_some() {
        args.extend(["-o".to_owned(), "IdentitiesOnly=yes".to_owned()]);
    }
    if let Some(f) = &s.config_file {
        args.extend(["-F".to_owned(), f.display().to_string()]);
    }
    args.iter().map(|a| word(a)).collect::<Vec<_>>().join(" ")
}

/// The inventory: `control_plane` (one host) and `workers`, host vars per
/// node, connection vars on `all`.
pub(super) fn inventory(cfg: &Config, nodes: &[Node]) -> anyhow::Result<Value> {
    let cps = nodes
        .iter()
        .filter(|n| n.role == Role::ControlPlane)
        .count();
    if cps != 1 {
        anyhow::bail!("the nodes must have exactly one control plane, not {cps}");
    }
    let group = |role: Role| -> Value {
        let hosts: serde_json::Map<String, Value> = nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| {
                (
                    n.name.clone(),
                    json!({
                        "ansible_host": n.address,
                        "eshop_node_name": n.name,
                        "eshop_private_ip": n.private_address,
                    }),
                )
            })
            .collect();
        json!({ "hosts": hosts })
    };
    let s = &cfg.ssh;
    let mut vars = json!({
        "ansible_ssh_common_args": ssh_args(cfg),
        "ansible_python_interpreter": "/usr/bin/python3",
    });
    if let Some(u) = &s.user {
        vars["ansible_user"] = json!(u);
    }
    if let Some(p) = s.port {
        vars["ansible_port"] = json!(p);
    }
    if let Some(k) = &s.identity_file {
        vars["ansible_ssh_private_key_file"] = json!(k.display().to_string());
    }
    Ok(json!({
        "all": {
            "vars": vars,
            "children": {
                "control_plane": group(Role::ControlPlane),
                "workers": group(Role::Worker),
            },
        }
    }))
}

/// The add-on manifests phase 5 fetched and checked, written for the
/// control plane role to copy (its `src`), with their sha256.
pub(super) fn add_ons(
    dir: &Path,
    fetched: &[(crate::config::Pinned, Fetched)],
) -> anyhow::Result<Vec<Value>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (p, f) in fetched {
        let path = dir.join(format!("{}.yaml", p.name));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(f.text.as_str()) {
            crate::util::write_atomic(&path, f.text.as_bytes(), 0o644)?;
        }
        out.push(json!({
            "name": p.name,
            "version": p.version,
            "src": path.display().to_string(),
            "sha256": f.sha256,
        }));
    }
    Ok(out)
}

/// The extra vars (`-e @vars.yml`): the contract's variables from
/// eshop's configuration. kubeadm's configuration is phase 5's own
/// rendering for the control plane among `nodes`.
pub(super) fn vars(
    cfg: &Config,
    nodes: &[Node],
    add_ons: Vec<Value>,
    manifests: &Path,
) -> anyhow::Result<Value> {
    let k = &cfg.kube;
    let cp = nodes
        .iter()
        .find(|n| n.role == Role::ControlPlane)
        .ok_or_else(|| {
            anyhow::anyhow!("no control-plane node to render kubeadm's configuration for")
        })?;
    Ok(json!({
        "eshop_project": cfg.project,
        "eshop_cluster_name": bootstrap::cluster_name(cfg),
        "eshop_kubernetes_version": k.version,
        "eshop_kubernetes_package_revision": k.package_revision,
        "eshop_kubernetes_apt_key_fingerprint": k.apt_key_fingerprint,
        "eshop_kubernetes_apt_key_url": k.apt_key_url.clone().unwrap_or_default(),
        "eshop_container_runtime": "containerd",
        "eshop_kubeadm_config": bootstrap::kubeadm_config(cfg, cp)?,
        "eshop_addons": add_ons,
        "eshop_manifests_dir": manifests.display().to_string(),
        "eshop_etcd_backup_dir": k.etcd_backup.dir,
        "eshop_etcd_backup_keep": k.etcd_backup.keep,
        "eshop_etcd_backup_schedule": k.etcd_backup.schedule,
    }))
}

/// The files of one run, under the phase's state folder.
pub(super) struct Written {
    pub inventory: PathBuf,
    pub vars: PathBuf,
    /// The folder of the callback's events (one file per playbook, emptied
    /// when it runs again), and Ansible's text log.
    pub events: PathBuf,
    pub log: PathBuf,
}

/// `v` as YAML with every string tagged `!unsafe`. Ansible templates the
/// strings of inventory and extra-vars files (they are trusted), so a value
/// from eshop.toml holding `{{` would run as Jinja on this machine: tagged,
/// it stays the text it is.
fn unsafe_yaml(v: &Value) -> serde_yaml::Value {
    use serde_yaml::value::{Tag, TaggedValue};
    use serde_yaml::Value as Y;
    match v {
        Value::String(s) => Y::Tagged(Box::new(TaggedValue {
            tag: Tag::new("unsafe"),
            value: Y::String(s.clone()),
        })),
        Value::Array(a) => Y::Sequence(a.iter().map(unsafe_yaml).collect()),
        Value::Object(m) => Y::Mapping(
            m.iter()
                .map(|(k, v)| (Y::String(k.clone()), unsafe_yaml(v)))
                .collect(),
        ),
        Value::Bool(b) => Y::Bool(*b),
        Value::Null => Y::Null,
        Value::Number(n) => serde_yaml::to_value(n).unwrap_or(Y::Null),
    }
}

/// Writes the inventory and the vars file (0600: they name keys and
/// hosts), each only when its content changed; every string in them is
/// data (`!unsafe`), never a template.
pub(super) fn write(dir: &Path, inventory: &Value, vars: &Value) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let w = Written {
        inventory: dir.join("inventory.yml"),
        vars: dir.join("vars.yml"),
        events: dir.join("events"),
        log: dir.join("ansible.log"),
    };
    let inv = format!(
        "# Written by eshop phase 9 (eshop phase config): the nodes phase 5 bootstraps.\n{}",
        serde_yaml::to_string(&unsafe_yaml(inventory))?
    );
    let vars = format!(
        "# Written by eshop phase 9 (eshop phase config): the roles' variables from eshop.toml.\n{}",
        serde_yaml::to_string(&unsafe_yaml(vars))?
    );
    for (path, text) in [(&w.inventory, inv), (&w.vars, vars)] {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            crate::util::write_atomic(path, text.as_bytes(), 0o600)?;
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_is_written_as_data_never_a_template() {
        let d = tempfile::tempdir().unwrap();
        let vars = json!({"eshop_cluster_name": "{{ lookup('pipe', 'id') }}",
                          "eshop_etcd_backup_keep": 7, "eshop_addons": [{"name": "calico"}]});
        let w = write(
            d.path(),
            &json!({"all": {"vars": {"ansible_user": "x"}}}),
            &vars,
        )
        .unwrap();
        let text = std::fs::read_to_string(&w.vars).unwrap();
        assert!(
            text.contains("eshop_cluster_name: !unsafe '{{ lookup(''pipe'', ''id'') }}'"),
            "{text}"
        );
        assert!(text.contains("eshop_etcd_backup_keep: 7"), "{text}");
        assert!(text.contains("- name: !unsafe calico"), "{text}");
        let inv = std::fs::read_to_string(&w.inventory).unwrap();
        assert!(inv.contains("ansible_user: !unsafe x"), "{inv}");
    }

    #[test]
    fn ssh_arguments_stay_one_word_each_whatever_the_path() {
        assert_eq!(word("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(
            word("StrictHostKeyChecking=yes"),
            "StrictHostKeyChecking=yes"
        );
    }
}
