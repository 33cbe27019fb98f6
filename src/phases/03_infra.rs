//! Phase 3 infra: the shop's AWS network and machines through the SDK.
//!
//! Every resource is created with its tags in the same call
//! (TagSpecifications), so a crash can never leave an untagged orphan:
//! the next run finds it by tag and carries on. RunInstances gets a
//! ClientToken, so even a retried call after a lost response starts one
//! control plane, not two. Load balancer, target group and Auto Scaling
//! group names are derived from the project and checked for eshop's tags
//! before eshop touches them.

use super::{Action, Change, Ctx, Info, Outcome, Phase, Status};
use crate::config::aws::Aws as AwsCfg;
use crate::config::Target;
use crate::engines::aws::{self as aws, gone, until_settled, Call, Clients};
use aws_sdk_autoscaling::types as at;
use aws_sdk_ec2::types as et;
use aws_sdk_elasticloadbalancingv2::types as lt;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

pub struct Infra;

pub const PHASE: &str = "infra";
const USER_DATA: &str = include_str!("../../templates/infra/node-user-data.sh");

/// A security group rule in a comparable form: (protocol, from, to, source),
/// the source being a CIDR or a group id.
type Rule = (String, i32, i32, String);

#[derive(Debug, Default)]
struct Found {
    vpc: Option<(String, String)>,
    igw: Option<(String, Vec<String>)>,
    /// (id, cidr, zone)
    subnets: Vec<(String, String, String)>,
    /// (id, has 0.0.0.0/0 → igw, associated subnet ids)
    rtb: Option<(String, bool, Vec<String>)>,
    sg_lb: Option<(String, BTreeSet<Rule>)>,
    sg_nodes: Option<(String, BTreeSet<Rule>)>,
    /// (name, spec hash tag)
    key: Option<(String, String)>,
    /// (id, state, public ip, private ip); terminated ones only feed the token.
    cp: Option<(String, String, String, String)>,
    cp_terminated: Vec<String>,
    /// (allocation id, associated instance, public ip)
    eip: Option<(String, Option<String>, String)>,
    /// (id, spec hash tag)
    lt: Option<(String, String)>,
    tg: Option<String>,
    /// (arn, dns name, state)
    alb: Option<(String, String, String)>,
    listener: Option<String>,
    /// (min, max, desired, in-service instance ids)
    asg: Option<(i32, i32, i32, Vec<String>)>,
    policy: Option<f64>,
}

struct Names {
    key: String,
    alb: String,
    tg: String,
    asg: String,
    policy: String,
    lt: String,
}

fn names(project: &str) -> Names {
    Names {
        key: format!("eshop-{project}"),
        alb: aws::elb_name(project, "alb"),
        tg: aws::elb_name(project, "nodes"),
        asg: format!("eshop-{project}-workers"),
        policy: format!("eshop-{project}-cpu-target"),
        lt: format!("eshop-{project}-workers"),
    }
}

fn ec2_tags(project: &str, role: &str, rt: et::ResourceType) -> et::TagSpecification {
    let tags = aws::tags(project, PHASE, role)
        .into_iter()
        .map(|(k, v)| et::Tag::builder().key(k).value(v).build());
    et::TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(tags.collect()))
        .build()
}

fn owner_filters(project: &str) -> Vec<et::Filter> {
    [
        (format!("tag:{}", aws::PROJECT_TAG), project),
        (format!("tag:{}", aws::TARGET_TAG), "aws"),
        (format!("tag:{}", aws::PHASE_TAG), PHASE),
    ]
    .into_iter()
    .map(|(k, v)| et::Filter::builder().name(k).values(v).build())
    .collect()
}

fn tag_of<'a>(tags: &'a [et::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn rules_of(perms: &[et::IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in perms {
        let proto = p.ip_protocol().unwrap_or("-1").to_owned();
        let (from, to) = if proto == "-1" {
            (-1, -1)
        } else {
            (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1))
        };
        for r in p.ip_ranges() {
            out.insert((
                proto.clone(),
                from,
                to,
                r.cidr_ip().unwrap_or("").to_owned(),
            ));
        }
        for g in p.user_id_group_pairs() {
            out.insert((
                proto.clone(),
                from,
                to,
                g.group_id().unwrap_or("").to_owned(),
            ));
        }
    }
    out
}

fn permission(r: &Rule) -> et::IpPermission {
    let mut b = et::IpPermission::builder().ip_protocol(&r.0);
    if r.0 != "-1" {
        b = b.from_port(r.1).to_port(r.2);
    }
    if r.3.starts_with("sg-") {
        b.user_id_group_pairs(et::UserIdGroupPair::builder().group_id(&r.3).build())
            .build()
    } else {
        b.ip_ranges(et::IpRange::builder().cidr_ip(&r.3).build())
            .build()
    }
}

fn lb_rules() -> BTreeSet<Rule> {
    [80, 443]
        .into_iter()
        .map(|p| ("tcp".to_owned(), p, p, "0.0.0.0/0".to_owned()))
        .collect()
}

/// Nodes: everything from each other, the NodePort from the load
/// balancer, SSH and the API server only from the admin network.
fn node_rules(cfg: &AwsCfg, self_id: &str, lb_id: &str) -> BTreeSet<Rule> {
    let mut r = BTreeSet::new();
    r.insert(("-1".to_owned(), -1, -1, self_id.to_owned()));
    r.insert(("tcp".into(), cfg.node_port, cfg.node_port, lb_id.to_owned()));
    if let Some(admin) = cfg.admin_cidr {
        for p in [22, 6443] {
            r.insert(("tcp".into(), p, p, admin.to_string()));
        }
    }
    r
}

/// Reads the user's public key before any API call, so a missing file is a
/// configuration error, not a half-built VPC.
fn public_key(cfg: &AwsCfg) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&cfg.ssh_public_key).map_err(|e| {
        crate::config::ConfigError(format!(
            "aws.ssh_public_key: cannot read {}: {e} (create one with ssh-keygen -t ed25519, or set the path)",
            cfg.ssh_public_key.display()
        ))
    })?;
    let key = text.trim().to_owned();
    let ok = ["ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-"]
        .iter()
        .any(|p| key.starts_with(p));
    if !ok || key.contains('\n') {
        return Err(crate::config::ConfigError(format!(
            "aws.ssh_public_key: {} is not one OpenSSH public key (ssh-ed25519, ssh-rsa or ecdsa)",
            cfg.ssh_public_key.display()
        ))
        .into());
    }
    Ok(key)
}

fn user_data(project: &str, role: &str) -> anyhow::Result<String> {
    let vars = [("project", project.to_owned()), ("role", role.to_owned())]
        .into_iter()
        .collect();
    let s = crate::render::render(USER_DATA, &vars, &[])?;
    Ok(base64(s.as_bytes()))
}

/// EC2 wants user data base64-encoded.
fn base64(d: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(d)
}

async fn discover(c: &Clients, project: &str) -> anyhow::Result<Found> {
    let n = names(project);
    let f = owner_filters(project);
    let with = |extra: Vec<et::Filter>| -> Option<Vec<et::Filter>> {
        Some(f.iter().cloned().chain(extra).collect())
    };
    let (vpcs, igws, subnets, rtbs, sgs, keys, insts, addrs, lts, tgs, albs, asgs) = tokio::join!(
        c.ec2.describe_vpcs().set_filters(with(vec![])).send(),
        c.ec2
            .describe_internet_gateways()
            .set_filters(with(vec![]))
            .send(),
        c.ec2.describe_subnets().set_filters(with(vec![])).send(),
        c.ec2
            .describe_route_tables()
            .set_filters(with(vec![]))
            .send(),
        c.ec2
            .describe_security_groups()
            .set_filters(with(vec![]))
            .send(),
        c.ec2.describe_key_pairs().set_filters(with(vec![])).send(),
        c.ec2
            .describe_instances()
            .set_filters(with(vec![et::Filter::builder()
                .name(format!("tag:{}", aws::ROLE_TAG))
                .values("control-plane")
                .build()]))
            .send(),
        c.ec2.describe_addresses().set_filters(with(vec![])).send(),
        c.ec2
            .describe_launch_templates()
            .set_filters(with(vec![]))
            .send(),
        c.elb.describe_target_groups().names(&n.tg).send(),
        c.elb.describe_load_balancers().names(&n.alb).send(),
        c.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&n.asg)
            .send(),
    );
    let mut found = Found::default();
    let vpcs = vpcs.call("vpc", "DescribeVpcs")?;
    found.vpc = vpcs.vpcs().first().map(|v| {
        (
            v.vpc_id().unwrap_or_default().to_owned(),
            v.cidr_block().unwrap_or_default().to_owned(),
        )
    });
    let igws = igws.call("internet gateway", "DescribeInternetGateways")?;
    found.igw = igws.internet_gateways().first().map(|g| {
        (
            g.internet_gateway_id().unwrap_or_default().to_owned(),
            g.attachments()
                .iter()
                .filter_map(|a| a.vpc_id().map(str::to_owned))
                .collect(),
        )
    });
    let subnets = subnets.call("subnets", "DescribeSubnets")?;
    found.subnets = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap_or_default().to_owned(),
                s.cidr_block().unwrap_or_default().to_owned(),
                s.availability_zone().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let rtbs = rtbs.call("route table", "DescribeRouteTables")?;
    found.rtb = rtbs.route_tables().first().map(|r| {
        let default = r.routes().iter().any(|x| {
            x.destination_cidr_block() == Some("0.0.0.0/0")
                && x.gateway_id().is_some_and(|g| g.starts_with("igw-"))
        });
        let assoc = r
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_owned))
            .collect();
        (
            r.route_table_id().unwrap_or_default().to_owned(),
            default,
            assoc,
        )
    });
    let sgs = sgs.call("security groups", "DescribeSecurityGroups")?;
    for g in sgs.security_groups() {
        let entry = Some((
            g.group_id().unwrap_or_default().to_owned(),
            rules_of(g.ip_permissions()),
        ));
        match tag_of(g.tags(), aws::ROLE_TAG) {
            Some("lb") => found.sg_lb = entry,
            Some("nodes") => found.sg_nodes = entry,
            _ => {}
        }
    }
    let keys = keys.call("key pair", "DescribeKeyPairs")?;
    found.key = keys.key_pairs().first().map(|k| {
        (
            k.key_name().unwrap_or_default().to_owned(),
            tag_of(k.tags(), "eshop/spec").unwrap_or("").to_owned(),
        )
    });
    let insts = insts.call("control plane", "DescribeInstances")?;
    for i in insts.reservations().iter().flat_map(|r| r.instances()) {
        let id = i.instance_id().unwrap_or_default().to_owned();
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if state == "terminated" || state == "shutting-down" {
            found.cp_terminated.push(id);
        } else if found.cp.is_none() {
            found.cp = Some((
                id,
                state,
                i.public_ip_address().unwrap_or_default().to_owned(),
                i.private_ip_address().unwrap_or_default().to_owned(),
            ));
        }
    }
    found.cp_terminated.sort();
    let addrs = addrs.call("elastic ip", "DescribeAddresses")?;
    found.eip = addrs.addresses().first().map(|a| {
        (
            a.allocation_id().unwrap_or_default().to_owned(),
            a.instance_id().map(str::to_owned),
            a.public_ip().unwrap_or_default().to_owned(),
        )
    });
    let lts = lts.call("launch template", "DescribeLaunchTemplates")?;
    found.lt = lts.launch_templates().first().map(|l| {
        (
            l.launch_template_id().unwrap_or_default().to_owned(),
            tag_of(l.tags(), "eshop/spec").unwrap_or("").to_owned(),
        )
    });
    match tgs {
        Ok(r) => {
            found.tg = r
                .target_groups()
                .first()
                .and_then(|t| t.target_group_arn().map(str::to_owned))
        }
        Err(e) if gone(&e) || aws::code(&e) == Some("TargetGroupNotFound") => {}
        Err(e) => return Err(e).call(&format!("target group {}", n.tg), "DescribeTargetGroups"),
    }
    match albs {
        Ok(r) => {
            found.alb = r.load_balancers().first().map(|l| {
                (
                    l.load_balancer_arn().unwrap_or_default().to_owned(),
                    l.dns_name().unwrap_or_default().to_owned(),
                    l.state()
                        .and_then(|s| s.code())
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                )
            })
        }
        Err(e) if gone(&e) || aws::code(&e) == Some("LoadBalancerNotFound") => {}
        Err(e) => return Err(e).call(&format!("load balancer {}", n.alb), "DescribeLoadBalancers"),
    }
    // Names are ours by convention; tags make them ours in fact.
    let arns: Vec<String> = found
        .tg
        .iter()
        .chain(found.alb.as_ref().map(|a| &a.0))
        .cloned()
        .collect();
    if !arns.is_empty() {
        let t = c
            .elb
            .describe_tags()
            .set_resource_arns(Some(arns))
            .send()
            .await
            .call("load balancer", "DescribeTags")?;
        for d in t.tag_descriptions() {
            let mine = aws::owned(
                project,
                d.tags()
                    .iter()
                    .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
            );
            if !mine {
                anyhow::bail!(
                    "{} exists but is not tagged as eshop project {project:?}'s: rename the project or remove it",
                    d.resource_arn().unwrap_or_default()
                );
            }
        }
    }
    if let Some((arn, _, _)) = &found.alb {
        let l = c
            .elb
            .describe_listeners()
            .load_balancer_arn(arn)
            .send()
            .await
            .call(&format!("load balancer {}", n.alb), "DescribeListeners")?;
        found.listener = l
            .listeners()
            .iter()
            .find(|l| l.port() == Some(80))
            .and_then(|l| l.listener_arn().map(str::to_owned));
    }
    let asgs = asgs.call(
        &format!("auto scaling group {}", n.asg),
        "DescribeAutoScalingGroups",
    )?;
    if let Some(g) = asgs.auto_scaling_groups().first() {
        let mine = aws::owned(
            project,
            g.tags()
                .iter()
                .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
        );
        if !mine {
            anyhow::bail!(
                "auto scaling group {} exists but is not tagged as eshop project {project:?}'s",
                n.asg
            );
        }
        found.asg = Some((
            g.min_size().unwrap_or(0),
            g.max_size().unwrap_or(0),
            g.desired_capacity().unwrap_or(0),
            g.instances()
                .iter()
                .filter(|i| {
                    i.lifecycle_state()
                        .is_some_and(|s| s.as_str() == "InService")
                })
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect(),
        ));
        let p = c
            .asg
            .describe_policies()
            .auto_scaling_group_name(&n.asg)
            .policy_names(&n.policy)
            .send()
            .await
            .call(&format!("scaling policy {}", n.policy), "DescribePolicies")?;
        found.policy = p.scaling_policies().first().map(|p| {
            p.target_tracking_configuration()
                .and_then(|t| t.target_value())
                .unwrap_or(0.0)
        });
    }
    Ok(found)
}

/// What the launch template's content hashes to, so a config change shows
/// up as an update and becomes a new template version.
fn lt_spec(cfg: &AwsCfg, ami: &str, sg: &str, key: &str, ud: &str) -> String {
    aws::short_hash(&[
        ami,
        &cfg.worker_type,
        sg,
        key,
        ud,
        &cfg.root_volume_gib.to_string(),
    ])
}

fn lt_data(
    cfg: &AwsCfg,
    ami: &str,
    sg: &str,
    key: &str,
    ud: &str,
) -> et::RequestLaunchTemplateData {
    et::RequestLaunchTemplateData::builder()
        .image_id(ami)
        .instance_type(et::InstanceType::from(cfg.worker_type.as_str()))
        .key_name(key)
        .security_group_ids(sg)
        .user_data(ud)
        .metadata_options(
            et::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(et::LaunchTemplateHttpTokensState::Required)
                .http_endpoint(et::LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .block_device_mappings(
            et::LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name("/dev/sda1")
                .ebs(
                    et::LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(cfg.root_volume_gib)
                        .volume_type(et::VolumeType::Gp3)
                        .encrypted(true)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(
            et::LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(et::ResourceType::Volume)
                .set_tags(Some(
                    aws::tags("", PHASE, "worker")
                        .into_iter()
                        .filter(|(k, _)| k != aws::PROJECT_TAG && k != "Name")
                        .map(|(k, v)| et::Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .build(),
        )
        .build()
}

async fn ami(c: &Clients, cfg: &AwsCfg) -> anyhow::Result<String> {
    if let Some(a) = &cfg.ami {
        return Ok(a.clone());
    }
    let r = c
        .ec2
        .describe_images()
        .owners(&cfg.ami_owner)
        .filters(
            et::Filter::builder()
                .name("name")
                .values(&cfg.ami_name)
                .build(),
        )
        .filters(
            et::Filter::builder()
                .name("architecture")
                .values("x86_64")
                .build(),
        )
        .filters(
            et::Filter::builder()
                .name("state")
                .values("available")
                .build(),
        )
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

async fn zones(c: &Clients, cfg: &AwsCfg) -> anyhow::Result<Vec<String>> {
    if !cfg.availability_zones.is_empty() {
        return Ok(cfg.availability_zones.clone());
    }
    let r = c
        .ec2
        .describe_availability_zones()
        .filters(
            et::Filter::builder()
                .name("state")
                .values("available")
                .build(),
        )
        .send()
        .await
        .call("availability zones", "DescribeAvailabilityZones")?;
    let mut z: Vec<String> = r
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    z.sort();
    if z.len() < cfg.subnet_cidrs.len() {
        anyhow::bail!(
            "availability zones: {} has {} available, {} subnets need one each",
            cfg.region,
            z.len(),
            cfg.subnet_cidrs.len()
        );
    }
    z.truncate(cfg.subnet_cidrs.len());
    Ok(z)
}

fn plan(cfg: &AwsCfg, project: &str, f: &Found, key_spec: &str) -> Vec<Change> {
    let n = names(project);
    let mut out = Vec::new();
    let mut push = |res: String, have: bool, update: Option<String>| {
        out.push(match (have, update) {
            (false, _) => Change::new(res, Action::Create, "absent"),
            (true, Some(why)) => Change::new(res, Action::Update, why),
            (true, None) => Change::new(res, Action::NoOp, "as configured"),
        });
    };
    let vpc_update = f
        .vpc
        .as_ref()
        .filter(|(_, cidr)| *cidr != cfg.vpc_cidr.to_string())
        .map(|(_, cidr)| {
            format!(
                "CIDR {cidr} differs from aws.vpc_cidr {}: a VPC's CIDR cannot change; destroy first",
                cfg.vpc_cidr
            )
        });
    push(
        format!("vpc eshop-{project}-vpc ({})", cfg.vpc_cidr),
        f.vpc.is_some(),
        vpc_update,
    );
    let attached = f.igw.as_ref().is_some_and(|(_, a)| !a.is_empty());
    push(
        format!("internet gateway eshop-{project}-igw"),
        f.igw.is_some(),
        (!attached).then(|| "not attached to the VPC".into()),
    );
    for (i, cidr) in cfg.subnet_cidrs.iter().enumerate() {
        let have = f.subnets.iter().any(|s| s.1 == cidr.to_string());
        push(format!("subnet public-{} ({cidr})", i + 1), have, None);
    }
    let mut extra = Vec::new();
    for (id, cidr, _) in &f.subnets {
        if !cfg.subnet_cidrs.iter().any(|c| c.to_string() == *cidr) {
            extra.push(Change::new(
                format!("subnet {id} ({cidr})"),
                Action::Delete,
                "no longer in aws.subnet_cidrs",
            ));
        }
    }
    let rtb_update = f.rtb.as_ref().and_then(|(_, default, assoc)| {
        if !default {
            Some("no default route to the internet gateway".to_owned())
        } else if f.subnets.iter().any(|s| !assoc.contains(&s.0))
            || f.subnets.len() < cfg.subnet_cidrs.len()
        {
            Some("not associated with every subnet".to_owned())
        } else {
            None
        }
    });
    push(
        format!("route table eshop-{project}-public"),
        f.rtb.is_some(),
        rtb_update,
    );
    let lb_id = f.sg_lb.as_ref().map(|s| s.0.as_str()).unwrap_or("sg-lb");
    push(
        format!("security group eshop-{project}-lb"),
        f.sg_lb.is_some(),
        f.sg_lb
            .as_ref()
            .filter(|(_, have)| *have != lb_rules())
            .map(|_| "ingress rules differ".into()),
    );
    push(
        format!("security group eshop-{project}-nodes"),
        f.sg_nodes.is_some(),
        f.sg_nodes
            .as_ref()
            .filter(|(id, have)| *have != node_rules(cfg, id, lb_id))
            .map(|_| "ingress rules differ".into()),
    );
    push(
        format!("key pair {}", n.key),
        f.key.is_some(),
        f.key
            .as_ref()
            .filter(|(_, spec)| spec != key_spec)
            .map(|_| "public key changed: re-import".into()),
    );
    push(
        format!("launch template {}", n.lt),
        f.lt.is_some(),
        None, // content drift needs the AMI lookup; apply checks it
    );
    push(
        format!(
            "instance eshop-{project}-control-plane ({})",
            cfg.control_plane_type
        ),
        f.cp.is_some(),
        None,
    );
    let eip_update = match (&f.eip, &f.cp) {
        (Some((_, assoc, _)), Some((cp, ..))) if assoc.as_deref() != Some(cp.as_str()) => {
            Some("not associated with the control plane".to_owned())
        }
        _ => None,
    };
    push(
        format!("elastic ip eshop-{project}-control-plane"),
        f.eip.is_some(),
        eip_update,
    );
    push(
        format!("target group {} (HTTP:{})", n.tg, cfg.node_port),
        f.tg.is_some(),
        None,
    );
    push(format!("load balancer {}", n.alb), f.alb.is_some(), None);
    push(
        format!("listener {} HTTP:80", n.alb),
        f.listener.is_some(),
        None,
    );
    let asg_update = f.asg.as_ref().and_then(|(min, max, _, _)| {
        (*min != cfg.min_size || *max != cfg.max_size).then(|| {
            format!(
                "size {min}..{max} → {}..{} (desired {})",
                cfg.min_size, cfg.max_size, cfg.desired_capacity
            )
        })
    });
    push(
        format!(
            "auto scaling group {} ({}..{}, desired {})",
            n.asg, cfg.min_size, cfg.max_size, cfg.desired_capacity
        ),
        f.asg.is_some(),
        asg_update,
    );
    let pol_update = f
        .policy
        .filter(|t| (*t - cfg.cpu_target_percent).abs() > f64::EPSILON)
        .map(|t| format!("target {t}% → {}%", cfg.cpu_target_percent));
    push(
        format!(
            "scaling policy {} (CPU {}%)",
            n.policy, cfg.cpu_target_percent
        ),
        f.policy.is_some(),
        pol_update,
    );
    out.extend(extra);
    out
}

/// One progress line per created or changed resource.
struct Tally<'a> {
    ctx: &'a Ctx,
    n: usize,
}

impl Tally<'_> {
    fn did(&mut self, what: impl AsRef<str>) {
        self.n += 1;
        self.ctx.ui.info(PHASE, what.as_ref());
    }
}

async fn apply(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config.aws;
    let project = ctx.config.project.as_str();
    let key_material = public_key(cfg)?;
    let c = ctx.aws().await;
    let n = names(project);
    let mut t = Tally { ctx, n: 0 };
    let (found, ami, zones) = tokio::try_join!(discover(c, project), ami(c, cfg), zones(c, cfg))?;
    let f = found;

    // --- network ---------------------------------------------------------
    let vpc = match &f.vpc {
        Some((id, _)) => id.clone(),
        None => {
            let r = c
                .ec2
                .create_vpc()
                .cidr_block(cfg.vpc_cidr.to_string())
                .tag_specifications(ec2_tags(project, "vpc", et::ResourceType::Vpc))
                .send()
                .await
                .call("vpc", "CreateVpc")?;
            let id = r
                .vpc()
                .and_then(|v| v.vpc_id())
                .unwrap_or_default()
                .to_owned();
            t.did(format!("created vpc {id} ({})", cfg.vpc_cidr));
            id
        }
    };
    // Idempotent by nature: setting an attribute to its value is a no-op.
    c.ec2
        .modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(et::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .call(&format!("vpc {vpc}"), "ModifyVpcAttribute")?;

    let igw_fut = async {
        let (id, attached) = match &f.igw {
            Some((id, a)) => (id.clone(), a.clone()),
            None => {
                let r = c
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(ec2_tags(project, "igw", et::ResourceType::InternetGateway))
                    .send()
                    .await
                    .call("internet gateway", "CreateInternetGateway")?;
                let id = r
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or_default()
                    .to_owned();
                (id, Vec::new())
            }
        };
        let mut did = f.igw.is_none();
        if !attached.contains(&vpc) {
            c.ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(&vpc)
                .send()
                .await
                .call(&format!("internet gateway {id}"), "AttachInternetGateway")?;
            did = true;
        }
        anyhow::Ok((id, did))
    };
    let subnets_fut = async {
        let mut ids = Vec::new();
        let mut created = 0;
        for (i, (cidr, zone)) in cfg.subnet_cidrs.iter().zip(&zones).enumerate() {
            if let Some(s) = f.subnets.iter().find(|s| s.1 == cidr.to_string()) {
                ids.push(s.0.clone());
                continue;
            }
            let role = format!("public-{}", i + 1);
            let r = c
                .ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(cidr.to_string())
                .availability_zone(zone)
                .tag_specifications(ec2_tags(project, &role, et::ResourceType::Subnet))
                .send()
                .await
                .call(&format!("subnet {cidr}"), "CreateSubnet")?;
            let id = r
                .subnet()
                .and_then(|s| s.subnet_id())
                .unwrap_or_default()
                .to_owned();
            c.ec2
                .modify_subnet_attribute()
                .subnet_id(&id)
                .map_public_ip_on_launch(et::AttributeBooleanValue::builder().value(true).build())
                .send()
                .await
                .call(&format!("subnet {id}"), "ModifySubnetAttribute")?;
            ids.push(id);
            created += 1;
        }
        anyhow::Ok((ids, created))
    };
    let vpc_id: &str = &vpc;
    let sg_fut = |role: &'static str, have: Option<String>| async move {
        if let Some(id) = have {
            return anyhow::Ok((id, false));
        }
        let r = c
            .ec2
            .create_security_group()
            .group_name(format!("eshop-{project}-{role}"))
            .description(format!("eshop {project}: {role}"))
            .vpc_id(vpc_id)
            .tag_specifications(ec2_tags(project, role, et::ResourceType::SecurityGroup))
            .send()
            .await
            .call(
                &format!("security group eshop-{project}-{role}"),
                "CreateSecurityGroup",
            )?;
        Ok((r.group_id().unwrap_or_default().to_owned(), true))
    };
    let key_spec = aws::short_hash(&[&key_material]);
    let key_fut = async {
        match &f.key {
            Some((_, spec)) if *spec == key_spec => return anyhow::Ok(false),
            Some((name, _)) => {
                c.ec2
                    .delete_key_pair()
                    .key_name(name)
                    .send()
                    .await
                    .call(&format!("key pair {name}"), "DeleteKeyPair")?;
            }
            None => {}
        }
        let mut spec = ec2_tags(project, "key", et::ResourceType::KeyPair);
        spec.tags.get_or_insert_with(Vec::new).push(
            et::Tag::builder()
                .key("eshop/spec")
                .value(&key_spec)
                .build(),
        );
        c.ec2
            .import_key_pair()
            .key_name(&n.key)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(key_material.as_bytes()))
            .tag_specifications(spec)
            .send()
            .await
            .call(&format!("key pair {}", n.key), "ImportKeyPair")?;
        Ok(true)
    };
    let tg_fut = async {
        if let Some(arn) = &f.tg {
            return anyhow::Ok((arn.clone(), false));
        }
        let r = c
            .elb
            .create_target_group()
            .name(&n.tg)
            .protocol(lt::ProtocolEnum::Http)
            .port(cfg.node_port)
            .vpc_id(&vpc)
            .target_type(lt::TargetTypeEnum::Instance)
            .health_check_path("/healthz")
            .set_tags(Some(elb_tags(project, "nodes")))
            .send()
            .await
            .call(&format!("target group {}", n.tg), "CreateTargetGroup")?;
        let arn = r
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn())
            .unwrap_or_default()
            .to_owned();
        Ok((arn, true))
    };
    let (igw, (subnets, new_subnets), lb_sg, nodes_sg, key_new, tg) = tokio::try_join!(
        igw_fut,
        subnets_fut,
        sg_fut("lb", f.sg_lb.as_ref().map(|s| s.0.clone())),
        sg_fut("nodes", f.sg_nodes.as_ref().map(|s| s.0.clone())),
        key_fut,
        tg_fut,
    )?;
    if igw.1 {
        t.did(format!("internet gateway {} attached", igw.0));
    }
    for _ in 0..new_subnets {
        t.did("created subnet");
    }
    if lb_sg.1 {
        t.did(format!("created security group {}", lb_sg.0));
    }
    if nodes_sg.1 {
        t.did(format!("created security group {}", nodes_sg.0));
    }
    if key_new {
        t.did(format!("imported key pair {}", n.key));
    }
    if tg.1 {
        t.did(format!("created target group {}", n.tg));
    }
    let (lb_sg, nodes_sg, tg) = (lb_sg.0, nodes_sg.0, tg.0);

    // --- routes, rules, template, load balancer ---------------------------
    let rtb_fut = async {
        let (id, default, assoc) = match &f.rtb {
            Some(r) => r.clone(),
            None => {
                let r = c
                    .ec2
                    .create_route_table()
                    .vpc_id(&vpc)
                    .tag_specifications(ec2_tags(project, "public", et::ResourceType::RouteTable))
                    .send()
                    .await
                    .call("route table", "CreateRouteTable")?;
                let id = r
                    .route_table()
                    .and_then(|r| r.route_table_id())
                    .unwrap_or_default()
                    .to_owned();
                (id, false, Vec::new())
            }
        };
        let mut did = f.rtb.is_none();
        if !default {
            c.ec2
                .create_route()
                .route_table_id(&id)
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id(&igw.0)
                .send()
                .await
                .call(&format!("route table {id}"), "CreateRoute")?;
            did = true;
        }
        for s in subnets.iter().filter(|s| !assoc.contains(s)) {
            c.ec2
                .associate_route_table()
                .route_table_id(&id)
                .subnet_id(s)
                .send()
                .await
                .call(&format!("route table {id}"), "AssociateRouteTable")?;
            did = true;
        }
        anyhow::Ok(did)
    };
    let rules_fut = |id: String, want: BTreeSet<Rule>, have: BTreeSet<Rule>| async move {
        let add: Vec<_> = want.difference(&have).map(permission).collect();
        let del: Vec<_> = have.difference(&want).map(permission).collect();
        let what = format!("security group {id}");
        if !del.is_empty() {
            c.ec2
                .revoke_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(del.clone()))
                .send()
                .await
                .call(&what, "RevokeSecurityGroupIngress")?;
        }
        if !add.is_empty() {
            c.ec2
                .authorize_security_group_ingress()
                .group_id(&id)
                .set_ip_permissions(Some(add.clone()))
                .send()
                .await
                .call(&what, "AuthorizeSecurityGroupIngress")?;
        }
        anyhow::Ok(!add.is_empty() || !del.is_empty())
    };
    let ud = user_data(project, "worker")?;
    let spec = lt_spec(cfg, &ami, &nodes_sg, &n.key, &ud);
    let lt_fut = async {
        let tag_spec = |s: &str| {
            let mut t = ec2_tags(project, "workers", et::ResourceType::LaunchTemplate);
            t.tags
                .get_or_insert_with(Vec::new)
                .push(et::Tag::builder().key("eshop/spec").value(s).build());
            t
        };
        match &f.lt {
            Some((id, have)) if *have == spec => anyhow::Ok((id.clone(), false)),
            Some((id, _)) => {
                // A new version becomes the default; instances launched
                // from now on get it (existing ones are left running).
                let v = c
                    .ec2
                    .create_launch_template_version()
                    .launch_template_id(id)
                    .launch_template_data(lt_data(cfg, &ami, &nodes_sg, &n.key, &ud))
                    .send()
                    .await
                    .call(
                        &format!("launch template {id}"),
                        "CreateLaunchTemplateVersion",
                    )?;
                let num = v
                    .launch_template_version()
                    .and_then(|v| v.version_number())
                    .unwrap_or(1);
                c.ec2
                    .modify_launch_template()
                    .launch_template_id(id)
                    .default_version(num.to_string())
                    .send()
                    .await
                    .call(&format!("launch template {id}"), "ModifyLaunchTemplate")?;
                c.ec2
                    .create_tags()
                    .resources(id)
                    .tags(et::Tag::builder().key("eshop/spec").value(&spec).build())
                    .send()
                    .await
                    .call(&format!("launch template {id}"), "CreateTags")?;
                Ok((id.clone(), true))
            }
            None => {
                let r = c
                    .ec2
                    .create_launch_template()
                    .launch_template_name(&n.lt)
                    .client_token(format!(
                        "eshop-{}",
                        aws::short_hash(&[project, &vpc, &spec])
                    ))
                    .launch_template_data(lt_data(cfg, &ami, &nodes_sg, &n.key, &ud))
                    .tag_specifications(tag_spec(&spec))
                    .send()
                    .await
                    .call(&format!("launch template {}", n.lt), "CreateLaunchTemplate")?;
                let id = r
                    .launch_template()
                    .and_then(|l| l.launch_template_id())
                    .unwrap_or_default()
                    .to_owned();
                Ok((id, true))
            }
        }
    };
    let alb_fut = async {
        if let Some((arn, ..)) = &f.alb {
            return anyhow::Ok((arn.clone(), false));
        }
        let r = c
            .elb
            .create_load_balancer()
            .name(&n.alb)
            .set_subnets(Some(subnets.clone()))
            .security_groups(&lb_sg)
            .scheme(lt::LoadBalancerSchemeEnum::InternetFacing)
            .r#type(lt::LoadBalancerTypeEnum::Application)
            .set_tags(Some(elb_tags(project, "alb")))
            .send()
            .await
            .call(&format!("load balancer {}", n.alb), "CreateLoadBalancer")?;
        let arn = r
            .load_balancers()
            .first()
            .and_then(|l| l.load_balancer_arn())
            .unwrap_or_default()
            .to_owned();
        Ok((arn, true))
    };
    let (rtb_did, lb_rules_did, node_rules_did, lt, alb) = tokio::try_join!(
        rtb_fut,
        rules_fut(
            lb_sg.clone(),
            lb_rules(),
            f.sg_lb.as_ref().map(|s| s.1.clone()).unwrap_or_default()
        ),
        rules_fut(
            nodes_sg.clone(),
            node_rules(cfg, &nodes_sg, &lb_sg),
            f.sg_nodes.as_ref().map(|s| s.1.clone()).unwrap_or_default()
        ),
        lt_fut,
        alb_fut,
    )?;
    if rtb_did {
        t.did("route table: default route and subnet associations");
    }
    if lb_rules_did {
        t.did(format!("security group {lb_sg}: ingress rules"));
    }
    if node_rules_did {
        t.did(format!("security group {nodes_sg}: ingress rules"));
    }
    if lt.1 {
        t.did(format!("launch template {} ({})", n.lt, lt.0));
    }
    if alb.1 {
        t.did(format!("created load balancer {}", n.alb));
    }
    let (lt, alb) = (lt.0, alb.0);

    // --- machines, listener, group ------------------------------------------
    let cp_fut = async {
        if let Some((id, ..)) = &f.cp {
            return anyhow::Ok((id.clone(), false));
        }
        // Same inputs, same token: a re-sent RunInstances returns the
        // instance it already started. Terminated predecessors are part of
        // the token so a deliberately terminated control plane is replaced.
        let mut parts = vec![project, &vpc, &subnets[0], &ami, &cfg.control_plane_type];
        parts.extend(f.cp_terminated.iter().map(String::as_str));
        let token = format!("eshop-cp-{}", aws::short_hash(&parts));
        let mut inst_tags = ec2_tags(project, "control-plane", et::ResourceType::Instance);
        let vol_tags = ec2_tags(project, "control-plane", et::ResourceType::Volume);
        inst_tags.resource_type = Some(et::ResourceType::Instance);
        let r = c
            .ec2
            .run_instances()
            .client_token(token)
            .image_id(&ami)
            .instance_type(et::InstanceType::from(cfg.control_plane_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(&n.key)
            .subnet_id(&subnets[0])
            .security_group_ids(&nodes_sg)
            .user_data(user_data(project, "control-plane")?)
            .metadata_options(
                et::InstanceMetadataOptionsRequest::builder()
                    .http_tokens(et::HttpTokensState::Required)
                    .http_endpoint(et::InstanceMetadataEndpointState::Enabled)
                    .build(),
            )
            .block_device_mappings(
                et::BlockDeviceMapping::builder()
                    .device_name("/dev/sda1")
                    .ebs(
                        et::EbsBlockDevice::builder()
                            .volume_size(cfg.root_volume_gib)
                            .volume_type(et::VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(inst_tags)
            .tag_specifications(vol_tags)
            .send()
            .await
            .call("instance control-plane", "RunInstances")?;
        let id = r
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .unwrap_or_default()
            .to_owned();
        Ok((id, true))
    };
    let listener_fut = async {
        if f.listener.is_some() {
            return anyhow::Ok(false);
        }
        c.elb
            .create_listener()
            .load_balancer_arn(&alb)
            .protocol(lt::ProtocolEnum::Http)
            .port(80)
            .default_actions(
                lt::Action::builder()
                    .r#type(lt::ActionTypeEnum::Forward)
                    .target_group_arn(&tg)
                    .build(),
            )
            .set_tags(Some(elb_tags(project, "http")))
            .send()
            .await
            .call(&format!("load balancer {}", n.alb), "CreateListener")?;
        Ok(true)
    };
    let asg_fut = async {
        let what = format!("auto scaling group {}", n.asg);
        match &f.asg {
            Some((min, max, desired, _)) => {
                if *min == cfg.min_size && *max == cfg.max_size {
                    return anyhow::Ok(false);
                }
                // Desired follows the policy between runs; only pull it
                // back inside the configured bounds (and up from zero after
                // the evening stop).
                let d = if *desired < cfg.min_size || *desired > cfg.max_size || *desired == 0 {
                    cfg.desired_capacity
                } else {
                    *desired
                };
                c.asg
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&n.asg)
                    .min_size(cfg.min_size)
                    .max_size(cfg.max_size)
                    .desired_capacity(d)
                    .send()
                    .await
                    .call(&what, "UpdateAutoScalingGroup")?;
                Ok(true)
            }
            None => {
                let tags = aws::tags(project, PHASE, "worker")
                    .into_iter()
                    .map(|(k, v)| {
                        at::Tag::builder()
                            .key(k)
                            .value(v)
                            .propagate_at_launch(true)
                            .resource_id(&n.asg)
                            .resource_type("auto-scaling-group")
                            .build()
                    })
                    .collect();
                let r = c
                    .asg
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(&n.asg)
                    .launch_template(
                        at::LaunchTemplateSpecification::builder()
                            .launch_template_id(&lt)
                            .version("$Latest")
                            .build(),
                    )
                    .min_size(cfg.min_size)
                    .max_size(cfg.max_size)
                    .desired_capacity(cfg.desired_capacity)
                    .vpc_zone_identifier(subnets.join(","))
                    .target_group_arns(&tg)
                    .health_check_type("ELB")
                    .health_check_grace_period(300)
                    .set_tags(Some(tags))
                    .send()
                    .await;
                match r {
                    Ok(_) => Ok(true),
                    // Created by a run that crashed before it could say so.
                    Err(e) if aws::code(&e) == Some("AlreadyExists") => Ok(false),
                    Err(e) => Err(e).call(&what, "CreateAutoScalingGroup"),
                }
            }
        }
    };
    let (cp, listener_did, asg_did) = tokio::try_join!(cp_fut, listener_fut, asg_fut)?;
    if cp.1 {
        t.did(format!("started control plane {}", cp.0));
    }
    if listener_did {
        t.did(format!("listener {} HTTP:80 → {}", n.alb, n.tg));
    }
    if asg_did {
        t.did(format!(
            "auto scaling group {} ({}..{}, desired {})",
            n.asg, cfg.min_size, cfg.max_size, cfg.desired_capacity
        ));
    }
    let cp = cp.0;

    // --- address and policy -------------------------------------------------
    let eip_fut = async {
        let (alloc, assoc) = match &f.eip {
            Some((a, i, _)) => (a.clone(), i.clone()),
            None => {
                let r = c
                    .ec2
                    .allocate_address()
                    .domain(et::DomainType::Vpc)
                    .tag_specifications(ec2_tags(
                        project,
                        "control-plane",
                        et::ResourceType::ElasticIp,
                    ))
                    .send()
                    .await
                    .call("elastic ip", "AllocateAddress")?;
                (r.allocation_id().unwrap_or_default().to_owned(), None)
            }
        };
        let mut did = f.eip.is_none();
        if assoc.as_deref() != Some(cp.as_str()) {
            c.ec2
                .associate_address()
                .allocation_id(&alloc)
                .instance_id(&cp)
                .send()
                .await
                .call(&format!("elastic ip {alloc}"), "AssociateAddress")?;
            did = true;
        }
        anyhow::Ok(did)
    };
    let policy_fut = async {
        if f.policy
            .is_some_and(|t| (t - cfg.cpu_target_percent).abs() < f64::EPSILON)
        {
            return anyhow::Ok(false);
        }
        // PutScalingPolicy is an upsert: create and update are one call.
        c.asg
            .put_scaling_policy()
            .auto_scaling_group_name(&n.asg)
            .policy_name(&n.policy)
            .policy_type("TargetTrackingScaling")
            .target_tracking_configuration(
                at::TargetTrackingConfiguration::builder()
                    .predefined_metric_specification(
                        at::PredefinedMetricSpecification::builder()
                            .predefined_metric_type(at::MetricType::AsgAverageCpuUtilization)
                            .build(),
                    )
                    .target_value(cfg.cpu_target_percent)
                    .build(),
            )
            .send()
            .await
            .call(&format!("scaling policy {}", n.policy), "PutScalingPolicy")?;
        Ok(true)
    };
    let (eip_did, policy_did) = tokio::try_join!(eip_fut, policy_fut)?;
    if eip_did {
        t.did("elastic ip associated with the control plane");
    }
    if policy_did {
        t.did(format!(
            "scaling policy {} at {}% CPU",
            n.policy, cfg.cpu_target_percent
        ));
    }

    // The state file is a cache of what phase 5 needs to reach the nodes.
    let after = discover(c, project).await?;
    ctx.set_phase_state(PHASE, outputs(&after, &vpc))?;
    Ok(t.n)
}

fn outputs(f: &Found, vpc: &str) -> serde_json::Value {
    json!({
        "vpc": vpc,
        "control_plane": f.cp.as_ref().map(|(id, state, _, private)| json!({
            "id": id, "state": state, "private_ip": private,
            "public_ip": f.eip.as_ref().map(|e| e.2.clone()),
        })),
        "workers": f.asg.as_ref().map(|a| a.3.clone()).unwrap_or_default(),
        "load_balancer": f.alb.as_ref().map(|a| a.1.clone()),
    })
}

fn elb_tags(project: &str, role: &str) -> Vec<lt::Tag> {
    aws::tags(project, PHASE, role)
        .into_iter()
        .map(|(k, v)| lt::Tag::builder().key(k).value(v).build())
        .collect()
}

/// Deletes, in dependency order, everything tagged as this project's
/// phase 3, waiting where AWS needs it. Untagged look-alikes are never
/// looked at: every lookup filters by eshop's tags.
async fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let project = ctx.config.project.as_str();
    let c = ctx.aws().await;
    let n = names(project);
    let f = discover(c, project).await?;
    let mut t = Tally { ctx, n: 0 };
    let patience = Duration::from_secs(600);

    // Group first, so it stops replacing the instances we terminate.
    if f.asg.is_some() {
        match c
            .asg
            .delete_auto_scaling_group()
            .auto_scaling_group_name(&n.asg)
            .force_delete(true)
            .send()
            .await
        {
            Ok(_) => t.did(format!("deleted auto scaling group {}", n.asg)),
            Err(e) if gone(&e) || aws::code(&e) == Some("ValidationError") => {}
            Err(e) => {
                return Err(e).call(
                    &format!("auto scaling group {}", n.asg),
                    "DeleteAutoScalingGroup",
                )
            }
        }
        wait_for(patience, || async {
            let r = c
                .asg
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(&n.asg)
                .send()
                .await
                .call(
                    &format!("auto scaling group {}", n.asg),
                    "DescribeAutoScalingGroups",
                )?;
            Ok(r.auto_scaling_groups().is_empty())
        })
        .await?;
    }
    if let Some((arn, ..)) = &f.alb {
        match c
            .elb
            .delete_load_balancer()
            .load_balancer_arn(arn)
            .send()
            .await
        {
            Ok(_) => t.did(format!("deleted load balancer {}", n.alb)),
            Err(e) if gone(&e) => {}
            Err(e) => {
                return Err(e).call(&format!("load balancer {}", n.alb), "DeleteLoadBalancer")
            }
        }
    }
    if let Some(arn) = &f.tg {
        until_settled(patience, &["ResourceInUse"], || async {
            match c
                .elb
                .delete_target_group()
                .target_group_arn(arn)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if gone(&e) => Ok(()),
                Err(e) => Err((
                    aws::code(&e).map(str::to_owned),
                    Err::<(), _>(e)
                        .call(&format!("target group {}", n.tg), "DeleteTargetGroup")
                        .unwrap_err(),
                )),
            }
        })
        .await?;
        t.did(format!("deleted target group {}", n.tg));
    }
    if let Some((alloc, assoc, _)) = &f.eip {
        if assoc.is_some() {
            let a = c
                .ec2
                .describe_addresses()
                .allocation_ids(alloc)
                .send()
                .await
                .call(&format!("elastic ip {alloc}"), "DescribeAddresses")?;
            if let Some(id) = a.addresses().first().and_then(|a| a.association_id()) {
                match c.ec2.disassociate_address().association_id(id).send().await {
                    Ok(_) => {}
                    Err(e) if gone(&e) => {}
                    Err(e) => {
                        return Err(e).call(&format!("elastic ip {alloc}"), "DisassociateAddress")
                    }
                }
            }
        }
        match c.ec2.release_address().allocation_id(alloc).send().await {
            Ok(_) => t.did(format!("released elastic ip {alloc}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&format!("elastic ip {alloc}"), "ReleaseAddress"),
        }
    }
    // Every instance of this phase: the control plane and group members
    // (they carry the group's propagated tags).
    let live = tagged_instances(c, project).await?;
    if !live.is_empty() {
        c.ec2
            .terminate_instances()
            .set_instance_ids(Some(live.clone()))
            .send()
            .await
            .call(
                &format!("instances {}", live.join(",")),
                "TerminateInstances",
            )?;
        for id in &live {
            t.did(format!("terminating instance {id}"));
        }
        wait_for(patience, || async {
            Ok(tagged_instances(c, project).await?.is_empty())
        })
        .await?;
    }
    if let Some((id, _)) = &f.lt {
        match c
            .ec2
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
        {
            Ok(_) => t.did(format!("deleted launch template {id}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&format!("launch template {id}"), "DeleteLaunchTemplate"),
        }
    }
    if let Some((name, _)) = &f.key {
        match c.ec2.delete_key_pair().key_name(name).send().await {
            Ok(_) => t.did(format!("deleted key pair {name}")),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&format!("key pair {name}"), "DeleteKeyPair"),
        }
    }
    // nodes references lb in a rule, so it goes first; both wait for the
    // network interfaces of terminated instances and the ALB to go.
    for (id, _) in f.sg_nodes.iter().chain(f.sg_lb.iter()) {
        delete_settled(
            patience,
            &format!("security group {id}"),
            "DeleteSecurityGroup",
            || c.ec2.delete_security_group().group_id(id).send(),
        )
        .await?;
        t.did(format!("deleted security group {id}"));
    }
    // A route table with subnet associations cannot be deleted: let go of
    // them first (AWS does not drop them when a subnet goes, moto neither).
    if let Some((id, ..)) = &f.rtb {
        let what = format!("route table {id}");
        let r = c
            .ec2
            .describe_route_tables()
            .route_table_ids(id)
            .send()
            .await;
        let assocs: Vec<String> = match r {
            Ok(r) => r
                .route_tables()
                .iter()
                .flat_map(|t| t.associations())
                .filter(|a| a.main() != Some(true))
                .filter_map(|a| a.route_table_association_id().map(str::to_owned))
                .collect(),
            Err(e) if gone(&e) => Vec::new(),
            Err(e) => return Err(e).call(&what, "DescribeRouteTables"),
        };
        for a in assocs {
            match c
                .ec2
                .disassociate_route_table()
                .association_id(&a)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e).call(&what, "DisassociateRouteTable"),
            }
        }
        delete_settled(patience, &what, "DeleteRouteTable", || {
            c.ec2.delete_route_table().route_table_id(id).send()
        })
        .await?;
        t.did(format!("deleted route table {id}"));
    }
    for (id, cidr, _) in &f.subnets {
        delete_settled(patience, &format!("subnet {id}"), "DeleteSubnet", || {
            c.ec2.delete_subnet().subnet_id(id).send()
        })
        .await?;
        t.did(format!("deleted subnet {id} ({cidr})"));
    }
    if let Some((id, attached)) = &f.igw {
        for vpc in attached {
            match c
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(id)
                .vpc_id(vpc)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if gone(&e) || aws::code(&e) == Some("Gateway.NotAttached") => {}
                Err(e) => {
                    return Err(e).call(&format!("internet gateway {id}"), "DetachInternetGateway")
                }
            }
        }
        delete_settled(
            patience,
            &format!("internet gateway {id}"),
            "DeleteInternetGateway",
            || {
                c.ec2
                    .delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
            },
        )
        .await?;
        t.did(format!("deleted internet gateway {id}"));
    }
    if let Some((id, _)) = &f.vpc {
        delete_settled(patience, &format!("vpc {id}"), "DeleteVpc", || {
            c.ec2.delete_vpc().vpc_id(id).send()
        })
        .await?;
        t.did(format!("deleted vpc {id}"));
    }
    ctx.clear_phase_state(PHASE)?;
    Ok(t.n)
}

/// A delete that is retried while AWS reports the resource still in use
/// and treats "not found" as done.
async fn delete_settled<T, E, R, F, Fut>(
    patience: Duration,
    what: &str,
    op: &str,
    mut f: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    until_settled(
        patience,
        &["DependencyViolation", "InvalidGroup.InUse"],
        || {
            let fut = f();
            async move {
                match fut.await {
                    Ok(_) => Ok(()),
                    Err(e) if gone(&e) => Ok(()),
                    Err(e) => {
                        let code = aws::code(&e).map(str::to_owned);
                        Err((code, Err::<(), _>(e).call(what, op).unwrap_err()))
                    }
                }
            }
        },
    )
    .await
}

async fn wait_for<F, Fut>(patience: Duration, mut done: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    while !done().await? {
        if start.elapsed() > patience {
            anyhow::bail!("gave up waiting after {}s", patience.as_secs());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Ok(())
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

/// The project's running instances (control plane and group members),
/// found by tag, the control plane first.
pub async fn instances(c: &Clients, project: &str) -> anyhow::Result<Vec<Instance>> {
    let mut filters = owner_filters(project);
    filters.push(
        et::Filter::builder()
            .name("instance-state-name")
            .values("running")
            .build(),
    );
    let r = c
        .ec2
        .describe_instances()
        .set_filters(Some(filters))
        .send()
        .await
        .call("instances", "DescribeInstances")?;
    let mut out: Vec<Instance> = r
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| Instance {
            id: i.instance_id().unwrap_or_default().to_owned(),
            role: tag_of(i.tags(), aws::ROLE_TAG)
                .unwrap_or("worker")
                .to_owned(),
            public_ip: i.public_ip_address().unwrap_or_default().to_owned(),
            private_ip: i.private_ip_address().unwrap_or_default().to_owned(),
        })
        .collect();
    out.sort_by(|a, b| (a.role != "control-plane", &a.id).cmp(&(b.role != "control-plane", &b.id)));
    Ok(out)
}

async fn tagged_instances(c: &Clients, project: &str) -> anyhow::Result<Vec<String>> {
    let mut filters = owner_filters(project);
    filters.push(
        et::Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .values("shutting-down")
            .build(),
    );
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
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect())
}

impl Phase for Infra {
    const INFO: Info = Info {
        number: 3,
        name: PHASE,
        about: "VPC, subnets, security groups, control plane + Elastic IP, workers' Auto Scaling group, load balancer (AWS SDK)",
        targets: &[Target::Aws],
    };

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let key = public_key(&ctx.config.aws)?;
        let c = ctx.aws().await;
        let f = discover(c, &ctx.config.project).await?;
        Ok(plan(
            &ctx.config.aws,
            &ctx.config.project,
            &f,
            &aws::short_hash(&[&key]),
        ))
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: apply(ctx).await?,
        })
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: destroy(ctx).await?,
        })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let c = ctx.aws().await;
        let f = discover(c, &ctx.config.project).await?;
        let cfg = &ctx.config.aws;
        let mut out = vec![Status {
            resource: "vpc".into(),
            state: f
                .vpc
                .as_ref()
                .map_or("absent".into(), |v| format!("{} {}", v.0, v.1)),
            healthy: f.vpc.is_some(),
        }];
        out.push(Status {
            resource: "control plane".into(),
            state: match (&f.cp, &f.eip) {
                (Some((id, s, ..)), Some((_, _, ip))) => format!("{id} {s}, {ip}"),
                (Some((id, s, ..)), None) => format!("{id} {s}, no elastic ip"),
                _ => "absent".into(),
            },
            healthy: f.cp.as_ref().is_some_and(|c| c.1 == "running") && f.eip.is_some(),
        });
        out.push(Status {
            resource: "workers".into(),
            state: f
                .asg
                .as_ref()
                .map_or("absent".into(), |(min, max, d, live)| {
                    format!("{} in service of {d} desired ({min}..{max})", live.len())
                }),
            healthy: f
                .asg
                .as_ref()
                .is_some_and(|a| a.3.len() as i32 >= a.2.min(cfg.max_size) && a.2 > 0),
        });
        out.push(Status {
            resource: "load balancer".into(),
            state: f
                .alb
                .as_ref()
                .map_or("absent".into(), |(_, dns, s)| format!("{s}, http://{dns}/")),
            healthy: f.alb.as_ref().is_some_and(|a| a.2 == "active") && f.listener.is_some(),
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn node_rules_never_open_ssh_to_the_world() {
        let mut cfg = crate::config::Config::parse(
            "",
            std::path::Path::new("e.toml"),
            std::path::Path::new("."),
            &std::collections::BTreeMap::new(),
            &Default::default(),
        )
        .unwrap()
        .aws;
        let r = node_rules(&cfg, "sg-n", "sg-l");
        assert!(r.iter().all(|x| x.3 != "0.0.0.0/0"), "{r:?}");
        assert!(!r.iter().any(|x| x.1 == 22));
        cfg.admin_cidr = Some("203.0.113.0/24".parse().unwrap());
        let r = node_rules(&cfg, "sg-n", "sg-l");
        assert!(r.contains(&("tcp".into(), 22, 22, "203.0.113.0/24".into())));
    }
}
