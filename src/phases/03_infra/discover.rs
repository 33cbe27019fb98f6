//! What of phase 3 exists, found by eshop's tags (or, for what AWS names
//! by name, by the derived name and then checked for the tags). Plan,
//! apply, status and destroy all start from one [`Found`].

use super::rules::{rules_of, Rule};
use super::{filter, owner_filters, tag_of, Names, Scope};
use crate::engines::aws::{self as aws, gone, Call, Clients};
use crate::labels;
use aws_sdk_ec2::operation::{
    describe_instances::DescribeInstancesOutput,
    describe_internet_gateways::DescribeInternetGatewaysOutput,
    describe_route_tables::DescribeRouteTablesOutput,
    describe_security_groups::DescribeSecurityGroupsOutput,
};
use aws_sdk_ec2::types as et;
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub(super) struct Vpc {
    pub id: String,
    pub cidr: String,
}

#[derive(Debug, Clone)]
pub(super) struct Gateway {
    pub id: String,
    /// The VPCs it is attached to.
    pub attached: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Subnet {
    pub id: String,
    pub cidr: String,
}

#[derive(Debug, Clone)]
pub(super) struct RouteTable {
    pub id: String,
    /// Has 0.0.0.0/0 → an internet gateway.
    pub default_route: bool,
    /// The subnets associated with it.
    pub subnets: Vec<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: String,
    pub rules: BTreeSet<Rule>,
}

/// A resource that carries the hash of its settings (`eshop/spec`).
#[derive(Debug, Clone)]
pub(super) struct Specced {
    /// The key pair's name or the launch template's id.
    pub id: String,
    pub spec: String,
}

#[derive(Debug, Clone)]
pub(super) struct Machine {
    pub id: String,
    pub state: String,
    pub private_ip: String,
}

#[derive(Debug, Clone)]
pub(super) struct Address {
    pub allocation: String,
    pub instance: Option<String>,
    pub public_ip: String,
}

#[derive(Debug, Clone)]
pub(super) struct Balancer {
    pub arn: String,
    pub dns: String,
    pub state: String,
}

#[derive(Debug, Clone)]
pub(super) struct Workers {
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    /// The ids of the members in service.
    pub in_service: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct Found {
    pub vpc: Option<Vpc>,
    pub igw: Option<Gateway>,
    pub subnets: Vec<Subnet>,
    pub rtb: Option<RouteTable>,
    pub sg_lb: Option<Group>,
    pub sg_nodes: Option<Group>,
    pub key: Option<Specced>,
    pub cp: Option<Machine>,
    /// Terminated control planes only feed the next RunInstances token.
    pub cp_terminated: Vec<String>,
    pub eip: Option<Address>,
    pub lt: Option<Specced>,
    pub tg: Option<String>,
    pub alb: Option<Balancer>,
    pub listener: Option<String>,
    pub asg: Option<Workers>,
    /// The scaling policy's CPU target.
    pub policy: Option<f64>,
}

pub(super) async fn discover(s: &Scope<'_>) -> anyhow::Result<Found> {
    let owned = owner_filters(s.project);
    let (mut found, (tg, alb, listener), (asg, policy)) = tokio::try_join!(
        ec2(s.c, &owned),
        balancer(s.c, s.project, &s.n),
        workers(s.c, s.project, &s.n),
    )?;
    (found.tg, found.alb, found.listener) = (tg, alb, listener);
    (found.asg, found.policy) = (asg, policy);
    Ok(found)
}

fn text(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

/// Everything EC2 lists by tag, at once.
async fn ec2(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Found> {
    let filters = || Some(f.to_vec());
    let mut with_role = f.to_vec();
    with_role.push(filter(&format!("tag:{}", labels::ROLE), &["control-plane"]));
    let e = &c.ec2;
    let (vpcs, igws, subnets, rtbs, sgs, keys, cps, addrs, lts) = tokio::join!(
        e.describe_vpcs().set_filters(filters()).send(),
        e.describe_internet_gateways().set_filters(filters()).send(),
        e.describe_subnets().set_filters(filters()).send(),
        e.describe_route_tables().set_filters(filters()).send(),
        e.describe_security_groups().set_filters(filters()).send(),
        e.describe_key_pairs().set_filters(filters()).send(),
        e.describe_instances().set_filters(Some(with_role)).send(),
        e.describe_addresses().set_filters(filters()).send(),
        e.describe_launch_templates().set_filters(filters()).send(),
    );
    let (sg_lb, sg_nodes) = groups(&sgs.call("security groups", "DescribeSecurityGroups")?);
    let (cp, cp_terminated) = control_plane(&cps.call("control plane", "DescribeInstances")?);
    let keys = keys.call("key pair", "DescribeKeyPairs")?;
    let lts = lts.call("launch template", "DescribeLaunchTemplates")?;
    let addrs = addrs.call("elastic ip", "DescribeAddresses")?;
    Ok(Found {
        vpc: vpcs
            .call("vpc", "DescribeVpcs")?
            .vpcs()
            .first()
            .map(|v| Vpc {
                id: text(v.vpc_id()),
                cidr: text(v.cidr_block()),
            }),
        igw: gateway(&igws.call("internet gateway", "DescribeInternetGateways")?),
        subnets: subnets
            .call("subnets", "DescribeSubnets")?
            .subnets()
            .iter()
            .map(|x| Subnet {
                id: text(x.subnet_id()),
                cidr: text(x.cidr_block()),
            })
            .collect(),
        rtb: route_table(&rtbs.call("route table", "DescribeRouteTables")?),
        sg_lb,
        sg_nodes,
        key: keys.key_pairs().first().map(|k| Specced {
            id: text(k.key_name()),
            spec: text(tag_of(k.tags(), labels::SPEC)),
        }),
        cp,
        cp_terminated,
        eip: addrs.addresses().first().map(|a| Address {
            allocation: text(a.allocation_id()),
            instance: a.instance_id().map(str::to_owned),
            public_ip: text(a.public_ip()),
        }),
        lt: lts.launch_templates().first().map(|l| Specced {
            id: text(l.launch_template_id()),
            spec: text(tag_of(l.tags(), labels::SPEC)),
        }),
        ..Found::default()
    })
}

fn gateway(r: &DescribeInternetGatewaysOutput) -> Option<Gateway> {
    r.internet_gateways().first().map(|g| Gateway {
        id: text(g.internet_gateway_id()),
        attached: g
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id().map(str::to_owned))
            .collect(),
    })
}

fn route_table(r: &DescribeRouteTablesOutput) -> Option<RouteTable> {
    r.route_tables().first().map(|r| RouteTable {
        id: text(r.route_table_id()),
        default_route: r.routes().iter().any(|x| {
            x.destination_cidr_block() == Some("0.0.0.0/0")
                && x.gateway_id().is_some_and(|g| g.starts_with("igw-"))
        }),
        subnets: r
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_owned))
            .collect(),
    })
}

/// The load balancer's and the nodes' security groups, by role tag.
fn groups(r: &DescribeSecurityGroupsOutput) -> (Option<Group>, Option<Group>) {
    let (mut lb, mut nodes) = (None, None);
    for g in r.security_groups() {
        let entry = Some(Group {
            id: text(g.group_id()),
            rules: rules_of(g.ip_permissions()),
        });
        match tag_of(g.tags(), labels::ROLE) {
            Some("lb") => lb = entry,
            Some("nodes") => nodes = entry,
            _ => {}
        }
    }
    (lb, nodes)
}

/// The live control plane, and the ids of terminated ones.
fn control_plane(r: &DescribeInstancesOutput) -> (Option<Machine>, Vec<String>) {
    let (mut live, mut terminated) = (None, Vec::new());
    for i in r.reservations().iter().flat_map(|r| r.instances()) {
        let id = text(i.instance_id());
        let state = text(i.state().and_then(|s| s.name()).map(|s| s.as_str()));
        if state == "terminated" || state == "shutting-down" {
            terminated.push(id);
        } else if live.is_none() {
            live = Some(Machine {
                id,
                state,
                private_ip: text(i.private_ip_address()),
            });
        }
    }
    terminated.sort();
    (live, terminated)
}

/// Fails unless `tags` mark the resource as this project's: a name alone
/// may belong to someone else.
fn must_own<'a>(
    project: &str,
    what: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    if aws::owned(project, tags) {
        return Ok(());
    }
    anyhow::bail!(
        "{what} exists but is not tagged as eshop project {project:?}'s: rename the project or remove it"
    )
}

/// Target group, load balancer and its HTTP listener, by name.
async fn balancer(
    c: &Clients,
    project: &str,
    n: &Names,
) -> anyhow::Result<(Option<String>, Option<Balancer>, Option<String>)> {
    let (tgs, albs) = tokio::join!(
        c.elb.describe_target_groups().names(&n.tg).send(),
        c.elb.describe_load_balancers().names(&n.alb).send(),
    );
    let not_found = |code: Option<&str>, name: &str| code == Some(name);
    let tg = match tgs {
        Ok(r) => r
            .target_groups()
            .first()
            .map(|t| text(t.target_group_arn())),
        Err(e) if gone(&e) || not_found(aws::code(&e), "TargetGroupNotFound") => None,
        Err(e) => return Err(e).call(&format!("target group {}", n.tg), "DescribeTargetGroups"),
    };
    let alb = match albs {
        Ok(r) => r.load_balancers().first().map(|l| Balancer {
            arn: text(l.load_balancer_arn()),
            dns: text(l.dns_name()),
            state: text(l.state().and_then(|s| s.code()).map(|c| c.as_str())),
        }),
        Err(e) if gone(&e) || not_found(aws::code(&e), "LoadBalancerNotFound") => None,
        Err(e) => return Err(e).call(&format!("load balancer {}", n.alb), "DescribeLoadBalancers"),
    };
    // Names are ours by convention; tags make them ours in fact.
    let arns: Vec<String> = tg
        .iter()
        .chain(alb.as_ref().map(|a| &a.arn))
        .cloned()
        .collect();
    if !arns.is_empty() {
        let t = c.elb.describe_tags().set_resource_arns(Some(arns)).send();
        let t = t.await.call("load balancer", "DescribeTags")?;
        for d in t.tag_descriptions() {
            let tags = d.tags().iter();
            must_own(
                project,
                d.resource_arn().unwrap_or_default(),
                tags.map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
            )?;
        }
    }
    let Some(lb) = &alb else {
        return Ok((tg, alb, None));
    };
    let l = c.elb.describe_listeners().load_balancer_arn(&lb.arn).send();
    let l = l
        .await
        .call(&format!("load balancer {}", n.alb), "DescribeListeners")?;
    let listener = l
        .listeners()
        .iter()
        .find(|l| l.port() == Some(80))
        .and_then(|l| l.listener_arn().map(str::to_owned));
    Ok((tg, alb, listener))
}

/// The workers' Auto Scaling group and its CPU target, by name.
async fn workers(
    c: &Clients,
    project: &str,
    n: &Names,
) -> anyhow::Result<(Option<Workers>, Option<f64>)> {
    let r = c.asg.describe_auto_scaling_groups();
    let r = r.auto_scaling_group_names(&n.asg).send().await.call(
        &format!("auto scaling group {}", n.asg),
        "DescribeAutoScalingGroups",
    )?;
    let Some(g) = r.auto_scaling_groups().first() else {
        return Ok((None, None));
    };
    let tags = g.tags().iter();
    must_own(
        project,
        &format!("auto scaling group {}", n.asg),
        tags.map(|t| (t.key().unwrap_or(""), t.value().unwrap_or(""))),
    )?;
    let workers = Workers {
        min: g.min_size().unwrap_or(0),
        max: g.max_size().unwrap_or(0),
        desired: g.desired_capacity().unwrap_or(0),
        in_service: g
            .instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| s.as_str() == "InService")
            })
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect(),
    };
    let p = c.asg.describe_policies().auto_scaling_group_name(&n.asg);
    let p = p
        .policy_names(&n.policy)
        .send()
        .await
        .call(&format!("scaling policy {}", n.policy), "DescribePolicies")?;
    let policy = p.scaling_policies().first().map(|p| {
        p.target_tracking_configuration()
            .and_then(|t| t.target_value())
            .unwrap_or(0.0)
    });
    Ok((Some(workers), policy))
}
