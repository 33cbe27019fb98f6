//! The machines: the imported key pair, the control plane (one instance
//! with an Elastic IP) and the workers' launch template. Both kinds boot
//! from the same AMI with the same hardening: IMDSv2 only and an
//! encrypted gp3 root volume (`hardened!`).

use super::discover::{Address, Found, Specced};
use super::{ec2_tags, ec2_tags_with_spec, filter, owner_filters, tag_of, Scope, Step, PHASE};
use crate::config::aws::Aws as AwsCfg;
use crate::config::ConfigError;
use crate::engines::aws::{self as aws, Call, Clients};
use crate::labels;
use crate::util::short_hash;
use aws_sdk_ec2::types as et;
use std::path::{Path, PathBuf};

const USER_DATA: &str = include_str!("../../../templates/infra/node-user-data.sh");
const ROLES: [&str; 2] = ["control-plane", "worker"];

/// The hardening every node gets, as RunInstances (`instance`) and
/// launch templates (`template`) both spell it: IMDSv2 only, and an
/// encrypted gp3 root volume of `aws.root_volume_gib`. Two families of
/// SDK types with the same builder methods; one set of settings.
macro_rules! hardened {
    (instance: $b:expr, $gib:expr) => {
        hardened!(
            $b,
            $gib,
            et::InstanceMetadataOptionsRequest,
            et::HttpTokensState,
            et::InstanceMetadataEndpointState,
            et::BlockDeviceMapping,
            et::EbsBlockDevice
        )
    };
    (template: $b:expr, $gib:expr) => {
        hardened!(
            $b,
            $gib,
            et::LaunchTemplateInstanceMetadataOptionsRequest,
            et::LaunchTemplateHttpTokensState,
            et::LaunchTemplateInstanceMetadataEndpointState,
            et::LaunchTemplateBlockDeviceMappingRequest,
            et::LaunchTemplateEbsBlockDeviceRequest
        )
    };
    ($b:expr, $gib:expr, $meta:ty, $tokens:ty, $endpoint:ty, $mapping:ty, $ebs:ty) => {
        $b.metadata_options(
            <$meta>::builder()
                .http_tokens(<$tokens>::Required)
                .http_endpoint(<$endpoint>::Enabled)
                .build(),
        )
        .block_device_mappings(
            <$mapping>::builder()
                .device_name("/dev/sda1")
                .ebs(
                    <$ebs>::builder()
                        .volume_size($gib)
                        .volume_type(et::VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
    };
}

/// Reads the user's public key before any API call, so a missing file is a
/// configuration error, not a half-built VPC.
pub(super) fn public_key(cfg: &AwsCfg) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&cfg.ssh_public_key).map_err(|e| {
        ConfigError(format!(
            "aws.ssh_public_key: cannot read {}: {e} (create one with ssh-keygen -t ed25519, or set the path)",
            cfg.ssh_public_key.display()
        ))
    })?;
    let key = text.trim().to_owned();
    let ok = ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-"]
        .iter()
        .any(|p| key.starts_with(p));
    if !ok || key.contains('\n') {
        return Err(ConfigError(format!(
            "aws.ssh_public_key: {} is not one OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa)",
            cfg.ssh_public_key.display()
        ))
        .into());
    }
    Ok(key)
}

/// The first-boot script of a node in `role`, as the node runs it.
fn user_data_script(project: &str, role: &str) -> anyhow::Result<String> {
    crate::render::render_pairs(
        USER_DATA,
        &[("project", project.to_owned()), ("role", role.to_owned())],
        &[],
    )
}

/// [`user_data_script`] base64-encoded, as EC2 takes it.
fn user_data(project: &str, role: &str) -> anyhow::Result<String> {
    use base64::Engine as _;
    let s = user_data_script(project, role)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(s))
}

/// `eshop render infra`: the first-boot script of each kind of node.
pub(super) fn render(project: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for role in ROLES {
        let p = out.join(format!("node-user-data-{role}.sh"));
        std::fs::write(&p, user_data_script(project, role)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

/// `aws.ami`, or the newest image matching `aws.ami_owner`/`aws.ami_name`.
pub(super) async fn ami(s: &Scope<'_>) -> anyhow::Result<String> {
    let c = s.c;
    let cfg = s.cfg;
    if let Some(a) = &cfg.ami {
        return Ok(a.clone());
    }
    let r = c
        .ec2
        .describe_images()
        .owners(&cfg.ami_owner)
        .filters(filter("name", &[&cfg.ami_name]))
        .filters(filter("architecture", &["x86_64"]))
        .filters(filter("state", &["available"]))
        .send()
        .await
        .call("ami", "DescribeImages")?;
    // ISO 8601 dates sort as strings; the name breaks ties.
    r.images()
        .iter()
        .max_by_key(|i| (i.creation_date().unwrap_or(""), i.name().unwrap_or("")))
        .and_then(|i| i.image_id().map(str::to_owned))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "ami: no available x86_64 image owned by {} matches {:?} in {}: pin aws.ami or change aws.ami_name",
                cfg.ami_owner,
                cfg.ami_name,
                cfg.region
            )
        })
}

/// The hash a key pair carries of its public key.
pub(super) fn key_spec(material: &str) -> String {
    short_hash(&[material])
}

/// Imports the key pair, replacing it when the public key changed.
pub(super) async fn key_pair(
    s: &Scope<'_>,
    material: &str,
    have: Option<&Specced>,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let spec = key_spec(material);
    match have {
        Some(k) if k.spec == spec => return Ok(Step::kept(())),
        Some(k) => {
            let d = c.ec2.delete_key_pair().key_name(&k.id).send().await;
            d.call(&format!("key pair {}", k.id), "DeleteKeyPair")?;
        }
        None => {}
    }
    let key = &s.n.key;
    c.ec2
        .import_key_pair()
        .key_name(key)
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(material.as_bytes()))
        .tag_specifications(ec2_tags_with_spec(
            s.project,
            "key",
            et::ResourceType::KeyPair,
            &spec,
        ))
        .send()
        .await
        .call(&format!("key pair {key}"), "ImportKeyPair")?;
    Ok(Step::done((), format!("imported key pair {key}")))
}

/// What every node boots from and with.
pub(super) struct Boot<'a> {
    pub ami: &'a str,
    pub key: &'a str,
    pub group: &'a str,
}

/// What the launch template's content hashes to, so a config change
/// becomes a new template version.
fn lt_spec(cfg: &AwsCfg, boot: &Boot, ud: &str) -> String {
    short_hash(&[
        boot.ami,
        &cfg.worker_type,
        boot.group,
        boot.key,
        ud,
        &cfg.root_volume_gib.to_string(),
    ])
}

fn lt_data(cfg: &AwsCfg, boot: &Boot, ud: &str) -> et::RequestLaunchTemplateData {
    // Volumes get the ownership tags too (the project's come with the
    // group's propagated tags).
    let volume_tags = aws::tags("", PHASE, "worker")
        .into_iter()
        .filter(|(k, _)| k != labels::PROJECT && k != "Name")
        .map(|(k, v)| et::Tag::builder().key(k).value(v).build());
    let b = et::RequestLaunchTemplateData::builder()
        .image_id(boot.ami)
        .instance_type(et::InstanceType::from(cfg.worker_type.as_str()))
        .key_name(boot.key)
        .security_group_ids(boot.group)
        .user_data(ud);
    hardened!(template: b, cfg.root_volume_gib)
        .tag_specifications(
            et::LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(et::ResourceType::Volume)
                .set_tags(Some(volume_tags.collect()))
                .build(),
        )
        .build()
}

/// The workers' launch template; a changed spec becomes a new default
/// version (instances launched from then on get it; running ones stay).
pub(super) async fn launch_template(
    s: &Scope<'_>,
    boot: &Boot<'_>,
    have: Option<&Specced>,
) -> anyhow::Result<Step<String>> {
    let (c, cfg, name) = (s.c, s.cfg, &s.n.lt);
    let ud = user_data(s.project, "worker")?;
    let spec = lt_spec(cfg, boot, &ud);
    let Some(lt) = have else {
        let r = c
            .ec2
            .create_launch_template()
            .launch_template_name(name)
            .client_token(format!("eshop-{}", short_hash(&[s.project, &spec])))
            .launch_template_data(lt_data(cfg, boot, &ud))
            .tag_specifications(ec2_tags_with_spec(
                s.project,
                "workers",
                et::ResourceType::LaunchTemplate,
                &spec,
            ))
            .send()
            .await
            .call(&format!("launch template {name}"), "CreateLaunchTemplate")?;
        let id = r.launch_template().and_then(|l| l.launch_template_id());
        let id = id.unwrap_or_default().to_owned();
        let what = format!("launch template {name} ({id})");
        return Ok(Step::done(id, what));
    };
    if lt.spec == spec {
        return Ok(Step::kept(lt.id.clone()));
    }
    let what = format!("launch template {}", lt.id);
    let v = c
        .ec2
        .create_launch_template_version()
        .launch_template_id(&lt.id);
    let v = v.launch_template_data(lt_data(cfg, boot, &ud)).send().await;
    let v = v.call(&what, "CreateLaunchTemplateVersion")?;
    let num = v
        .launch_template_version()
        .and_then(|v| v.version_number())
        .unwrap_or(1);
    let m = c.ec2.modify_launch_template().launch_template_id(&lt.id);
    let m = m.default_version(num.to_string()).send().await;
    m.call(&what, "ModifyLaunchTemplate")?;
    // The spec last: a crash before it leaves a template the next run
    // versions again, never one that claims a spec it lacks.
    let tag = et::Tag::builder().key(labels::SPEC).value(&spec).build();
    let t = c.ec2.create_tags().resources(&lt.id).tags(tag).send().await;
    t.call(&what, "CreateTags")?;
    let done = format!("launch template {name} ({}): version {num}", lt.id);
    Ok(Step::done(lt.id.clone(), done))
}

/// The control plane: started once, in the first subnet.
pub(super) async fn control_plane(
    s: &Scope<'_>,
    f: &Found,
    boot: &Boot<'_>,
    subnet: &str,
) -> anyhow::Result<Step<String>> {
    let c = s.c;
    if let Some(cp) = &f.cp {
        return Ok(Step::kept(cp.id.clone()));
    }
    let (cfg, project) = (s.cfg, s.project);
    // Same inputs, same token: a re-sent RunInstances returns the
    // instance it already started. Terminated predecessors are part of
    // the token so a deliberately terminated control plane is replaced.
    let mut parts = vec![project, subnet, boot.ami, &cfg.control_plane_type];
    parts.extend(f.cp_terminated.iter().map(String::as_str));
    let token = format!("eshop-cp-{}", short_hash(&parts));
    let run = c
        .ec2
        .run_instances()
        .client_token(token)
        .image_id(boot.ami)
        .instance_type(et::InstanceType::from(cfg.control_plane_type.as_str()))
        .min_count(1)
        .max_count(1)
        .key_name(boot.key)
        .subnet_id(subnet)
        .security_group_ids(boot.group)
        .user_data(user_data(project, "control-plane")?);
    let r = hardened!(instance: run, cfg.root_volume_gib)
        .tag_specifications(ec2_tags(
            project,
            "control-plane",
            et::ResourceType::Instance,
        ))
        .tag_specifications(ec2_tags(project, "control-plane", et::ResourceType::Volume))
        .send()
        .await
        .call("instance control-plane", "RunInstances")?;
    let id = r.instances().first().and_then(|i| i.instance_id());
    let id = id.unwrap_or_default().to_owned();
    let what = format!("started control plane {id}");
    Ok(Step::done(id, what))
}

/// The control plane's Elastic IP: allocated once, kept associated.
pub(super) async fn address(
    s: &Scope<'_>,
    have: Option<&Address>,
    cp: &str,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let (alloc, assoc) = match have {
        Some(a) => (a.allocation.clone(), a.instance.clone()),
        None => {
            let r = c
                .ec2
                .allocate_address()
                .domain(et::DomainType::Vpc)
                .tag_specifications(ec2_tags(
                    s.project,
                    "control-plane",
                    et::ResourceType::ElasticIp,
                ))
                .send()
                .await
                .call("elastic ip", "AllocateAddress")?;
            (r.allocation_id().unwrap_or_default().to_owned(), None)
        }
    };
    let associate = assoc.as_deref() != Some(cp);
    if associate {
        let a = c.ec2.associate_address().allocation_id(&alloc);
        let a = a.instance_id(cp).send().await;
        a.call(&format!("elastic ip {alloc}"), "AssociateAddress")?;
    }
    Ok(Step::when((), have.is_none() || associate, || {
        format!("elastic ip {alloc} associated with the control plane")
    }))
}

/// A running machine of this phase, as phase 5 needs it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    /// `control-plane` or `worker` (the `eshop/role` tag).
    pub role: String,
    pub public_ip: String,
    pub private_ip: String,
}

/// This phase's instances in `states`, found by tag.
async fn tagged(c: &Clients, project: &str, states: &[&str]) -> anyhow::Result<Vec<et::Instance>> {
    let mut filters = owner_filters(project);
    filters.push(filter("instance-state-name", states));
    let r = c
        .ec2
        .describe_instances()
        .set_filters(Some(filters))
        .send()
        .await
        .call("instances", "DescribeInstances")?;
    Ok(r.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect())
}

/// The project's running instances (control plane and group members),
/// found by tag, the control plane first.
pub async fn instances(c: &Clients, project: &str) -> anyhow::Result<Vec<Instance>> {
    let mut out: Vec<Instance> = tagged(c, project, &["running"])
        .await?
        .iter()
        .map(|i| Instance {
            id: i.instance_id().unwrap_or_default().to_owned(),
            role: tag_of(i.tags(), labels::ROLE)
                .unwrap_or("worker")
                .to_owned(),
            public_ip: i.public_ip_address().unwrap_or_default().to_owned(),
            private_ip: i.private_ip_address().unwrap_or_default().to_owned(),
        })
        .collect();
    out.sort_by(|a, b| (a.role != "control-plane", &a.id).cmp(&(b.role != "control-plane", &b.id)));
    Ok(out)
}

/// The ids of every instance of this phase that is not terminated yet.
pub(super) async fn not_terminated(c: &Clients, project: &str) -> anyhow::Result<Vec<String>> {
    let states = ["pending", "running", "stopping", "stopped", "shutting-down"];
    Ok(tagged(c, project, &states)
        .await?
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_the_node_script_with_project_and_role_filled_in() {
        use base64::Engine as _;
        let encoded = user_data("shop1", "worker").unwrap();
        let script = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let script = String::from_utf8(script).unwrap();
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(
            script.contains("echo \"eshop project=shop1 role=worker\" > /etc/eshop-node"),
            "{script}"
        );
        assert!(!script.contains("{{"), "{script}");
        // EC2 refuses user data over 16 KiB (before base64).
        assert!(script.len() < 16 * 1024);
    }

    #[test]
    fn render_writes_one_script_per_kind_of_node() {
        let dir = tempfile::tempdir().unwrap();
        let files = render("shop1", dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "node-user-data-control-plane.sh",
                "node-user-data-worker.sh"
            ]
        );
        let cp = std::fs::read_to_string(&files[0]).unwrap();
        assert!(cp.contains("role=control-plane"), "{cp}");
    }
}
