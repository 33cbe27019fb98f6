//! What of phase 3 exists, found by eshop's tags (or, for what AWS names
//! by name, by the derived name and then checked for the tags). Plan,
//! apply, status and destroy all start from one [`Found`].

use super::rules::{rules_of, Rule};
use super::{filter, names, owner_filters, tag_of, Names};
use crate::engines::aws::{self as aws, gone, Call, Clients};
use crate::labels;
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

pub(super) async fn discover(c: &Clients, project: &str) -> anyhow::Result<Found> {
    let n = names(project);
    let f = owner_filters(project);
    let (vpc, (igw, rtb), subnets, (sg_lb, sg_nodes), key, cp, eip, lt, lb, asg) = tokio::try_join!(
        vpc(c, &f),
        gateway_and_routes(c, &f),
        subnets(c, &f),
        groups(c, &f),
        key_pair(c, &f),
        control_plane(c, &f),
        address(c, &f),
        launch_template(c, &f),
        balancer(c, project, &n),
        workers(c, project, &n),
    )?;
    let (cp, cp_terminated) = cp;
    let (tg, alb, listener) = lb;
    let (asg, policy) = asg;
    Ok(Found {
        vpc,
        igw,
        subnets,
        rtb,
        sg_lb,
        sg_nodes,
        key,
        cp,
        cp_terminated,
        eip,
        lt,
        tg,
        alb,
        listener,
        asg,
        policy,
    })
}

fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_owned()
}

async fn vpc(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Option<Vpc>> {
    let r = c.ec2.describe_vpcs().set_filters(Some(f.to_vec())).send();
    let r = r.await.call("vpc", "DescribeVpcs")?;
    Ok(r.vpcs().first().map(|v| Vpc {
        id: s(v.vpc_id()),
        cidr: s(v.cidr_block()),
    }))
}

async fn gateway_and_routes(
    c: &Clients,
    f: &[et::Filter],
) -> anyhow::Result<(Option<Gateway>, Option<RouteTable>)> {
    let (igws, rtbs) = tokio::join!(
        c.ec2
            .describe_internet_gateways()
            .set_filters(Some(f.to_vec()))
            .send(),
        c.ec2
            .describe_route_tables()
            .set_filters(Some(f.to_vec()))
            .send(),
    );
    let igws = igws.call("internet gateway", "DescribeInternetGateways")?;
    let igw = igws.internet_gateways().first().map(|g| Gateway {
        id: s(g.internet_gateway_id()),
        attached: g
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id().map(str::to_owned))
            .collect(),
    });
    let rtbs = rtbs.call("route table", "DescribeRouteTables")?;
    let rtb = rtbs.route_tables().first().map(|r| RouteTable {
        id: s(r.route_table_id()),
        default_route: r.routes().iter().any(|x| {
            x.destination_cidr_block() == Some("0.0.0.0/0")
                && x.gateway_id().is_some_and(|g| g.starts_with("igw-"))
        }),
        subnets: r
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id().map(str::to_owned))
            .collect(),
    });
    Ok((igw, rtb))
}

async fn subnets(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Vec<Subnet>> {
    let r = c
        .ec2
        .describe_subnets()
        .set_filters(Some(f.to_vec()))
        .send();
    let r = r.await.call("subnets", "DescribeSubnets")?;
    Ok(r.subnets()
        .iter()
        .map(|x| Subnet {
            id: s(x.subnet_id()),
            cidr: s(x.cidr_block()),
        })
        .collect())
}

/// The load balancer's and the nodes' security groups, by role tag.
async fn groups(c: &Clients, f: &[et::Filter]) -> anyhow::Result<(Option<Group>, Option<Group>)> {
    let r = c
        .ec2
        .describe_security_groups()
        .set_filters(Some(f.to_vec()));
    let r = r
        .send()
        .await
        .call("security groups", "DescribeSecurityGroups")?;
    let (mut lb, mut nodes) = (None, None);
    for g in r.security_groups() {
        let entry = Some(Group {
            id: s(g.group_id()),
            rules: rules_of(g.ip_permissions()),
        });
        match tag_of(g.tags(), labels::ROLE) {
            Some("lb") => lb = entry,
            Some("nodes") => nodes = entry,
            _ => {}
        }
    }
    Ok((lb, nodes))
}

async fn key_pair(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Option<Specced>> {
    let r = c
        .ec2
        .describe_key_pairs()
        .set_filters(Some(f.to_vec()))
        .send();
    let r = r.await.call("key pair", "DescribeKeyPairs")?;
    Ok(r.key_pairs().first().map(|k| Specced {
        id: s(k.key_name()),
        spec: s(tag_of(k.tags(), labels::SPEC)),
    }))
}

/// The live control plane, and the ids of terminated ones.
async fn control_plane(
    c: &Clients,
    f: &[et::Filter],
) -> anyhow::Result<(Option<Machine>, Vec<String>)> {
    let mut filters = f.to_vec();
    filters.push(filter(&format!("tag:{}", labels::ROLE), &["control-plane"]));
    let r = c.ec2.describe_instances().set_filters(Some(filters)).send();
    let r = r.await.call("control plane", "DescribeInstances")?;
    let (mut live, mut terminated) = (None, Vec::new());
    for i in r.reservations().iter().flat_map(|r| r.instances()) {
        let id = s(i.instance_id());
        let state = s(i.state().and_then(|s| s.name()).map(|s| s.as_str()));
        if state == "terminated" || state == "shutting-down" {
            terminated.push(id);
        } else if live.is_none() {
            live = Some(Machine {
                id,
                state,
                private_ip: s(i.private_ip_address()),
            });
        }
    }
    terminated.sort();
    Ok((live, terminated))
}

async fn address(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Option<Address>> {
    let r = c
        .ec2
        .describe_addresses()
        .set_filters(Some(f.to_vec()))
        .send();
    let r = r.await.call("elastic ip", "DescribeAddresses")?;
    Ok(r.addresses().first().map(|a| Address {
        allocation: s(a.allocation_id()),
        instance: a.instance_id().map(str::to_owned),
        public_ip: s(a.public_ip()),
    }))
}

async fn launch_template(c: &Clients, f: &[et::Filter]) -> anyhow::Result<Option<Specced>> {
    let r = c
        .ec2
        .describe_launch_templates()
        .set_filters(Some(f.to_vec()));
    let r = r
        .send()
        .await
        .call("launch template", "DescribeLaunchTemplates")?;
    Ok(r.launch_templates().first().map(|l| Specced {
        id: s(l.launch_template_id()),
        spec: s(tag_of(l.tags(), labels::SPEC)),
    }))
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
        Ok(r) => r.target_groups().first().map(|t| s(t.target_group_arn())),
        Err(e) if gone(&e) || not_found(aws::code(&e), "TargetGroupNotFound") => None,
        Err(e) => return Err(e).call(&format!("target group {}", n.tg), "DescribeTargetGroups"),
    };
    let alb = match albs {
        Ok(r) => r.load_balancers().first().map(|l| Balancer {
            arn: s(l.load_balancer_arn()),
            dns: s(l.dns_name()),
            state: s(l.state().and_then(|s| s.code()).map(|c| c.as_str())),
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
