//! The network: one VPC, one public subnet per zone, an internet gateway
//! and a route table sending 0.0.0.0/0 to it.
//!
//! Address ranges are fixed once created: a VPC's CIDR cannot change, and
//! subnets carry the load balancer and the workers. eshop does not
//! replace them behind the user's back (that would take the whole phase,
//! and phase 5's cluster on it, down with them), so [`refuse_moves`] stops
//! plan and apply alike, before anything is touched, and says what to do.

use super::discover::{Found, Gateway, RouteTable, Subnet};
use super::{ec2_tags, filter, Scope, Step};
use crate::config::aws::Aws as AwsCfg;
use crate::config::ConfigError;
use crate::engines::aws::Call;
use aws_sdk_ec2::types as et;

/// Fails, naming what exists and what is configured, when the VPC's CIDR
/// or a subnet that exists is no longer what `[aws]` asks for.
pub(super) fn refuse_moves(cfg: &AwsCfg, project: &str, f: &Found) -> Result<(), ConfigError> {
    let destroy = format!(
        "run `eshop destroy` first (it removes project {project:?}'s VPC and everything in it, \
         the cluster included), then apply again"
    );
    if let Some(v) = f
        .vpc
        .as_ref()
        .filter(|v| v.cidr != cfg.vpc_cidr.to_string())
    {
        return Err(ConfigError(format!(
            "aws.vpc_cidr: is {} but VPC {} was created with {}, and a VPC's CIDR cannot change: \
             set aws.vpc_cidr back to {}, or {destroy}",
            cfg.vpc_cidr, v.id, v.cidr, v.cidr
        )));
    }
    let gone: Vec<String> = f
        .subnets
        .iter()
        .filter(|s| !cfg.subnet_cidrs.iter().any(|c| c.to_string() == s.cidr))
        .map(|s| format!("{} ({})", s.cidr, s.id))
        .collect();
    if !gone.is_empty() {
        return Err(ConfigError(format!(
            "aws.subnet_cidrs: no longer lists {}, which the load balancer and the workers use; \
             eshop does not move them: add it back, or {destroy}",
            gone.join(", ")
        )));
    }
    Ok(())
}

pub(super) async fn vpc(s: &Scope<'_>, f: &Found) -> anyhow::Result<Step<String>> {
    let (c, cfg, project) = (s.c, s.cfg, s.project);
    let step = match &f.vpc {
        Some(v) => Step::kept(v.id.clone()),
        None => {
            let r = c
                .ec2
                .create_vpc()
                .cidr_block(cfg.vpc_cidr.to_string())
                .tag_specifications(ec2_tags(project, "vpc", et::ResourceType::Vpc))
                .send()
                .await
                .call("vpc", "CreateVpc")?;
            let id = r.vpc().and_then(|v| v.vpc_id()).unwrap_or_default();
            Step::done(
                id.to_owned(),
                format!("created vpc {id} ({})", cfg.vpc_cidr),
            )
        }
    };
    // Idempotent by nature: setting an attribute to its value is a no-op.
    c.ec2
        .modify_vpc_attribute()
        .vpc_id(&step.value)
        .enable_dns_hostnames(et::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .call(&format!("vpc {}", step.value), "ModifyVpcAttribute")?;
    Ok(step)
}

pub(super) async fn gateway(
    s: &Scope<'_>,
    have: Option<&Gateway>,
    vpc: &str,
) -> anyhow::Result<Step<String>> {
    let c = s.c;
    let (id, attached) = match have {
        Some(g) => (g.id.clone(), g.attached.clone()),
        None => {
            let r = c
                .ec2
                .create_internet_gateway()
                .tag_specifications(ec2_tags(
                    s.project,
                    "igw",
                    et::ResourceType::InternetGateway,
                ))
                .send()
                .await
                .call("internet gateway", "CreateInternetGateway")?;
            let g = r.internet_gateway().and_then(|g| g.internet_gateway_id());
            (g.unwrap_or_default().to_owned(), Vec::new())
        }
    };
    let attach = !attached.iter().any(|a| a == vpc);
    if attach {
        let a = c.ec2.attach_internet_gateway().internet_gateway_id(&id);
        let a = a.vpc_id(vpc).send().await;
        a.call(&format!("internet gateway {id}"), "AttachInternetGateway")?;
    }
    let what = format!("internet gateway {id} attached");
    Ok(Step::when(id, have.is_none() || attach, || what))
}

/// The configured subnets' ids, in `aws.subnet_cidrs` order, creating the
/// missing ones in their zones.
pub(super) async fn subnets(
    s: &Scope<'_>,
    have: &[Subnet],
    vpc: &str,
    zones: &[String],
) -> anyhow::Result<Step<Vec<String>>> {
    let c = s.c;
    let mut step = Step::kept(Vec::new());
    for (i, (cidr, zone)) in s.cfg.subnet_cidrs.iter().zip(zones).enumerate() {
        let cidr = cidr.to_string();
        if let Some(x) = have.iter().find(|x| x.cidr == cidr) {
            step.value.push(x.id.clone());
            continue;
        }
        let role = format!("public-{}", i + 1);
        let r = c
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(&cidr)
            .availability_zone(zone)
            .tag_specifications(ec2_tags(s.project, &role, et::ResourceType::Subnet))
            .send()
            .await
            .call(&format!("subnet {cidr}"), "CreateSubnet")?;
        let id = r.subnet().and_then(|x| x.subnet_id()).unwrap_or_default();
        c.ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(et::AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .call(&format!("subnet {id}"), "ModifySubnetAttribute")?;
        step.value.push(id.to_owned());
        step.did
            .push(format!("created subnet {id} ({cidr}) in {zone}"));
    }
    Ok(step)
}

/// The public route table: created if absent, default route to `igw`,
/// associated with every subnet.
pub(super) async fn route_table(
    s: &Scope<'_>,
    have: Option<&RouteTable>,
    vpc: &str,
    igw: &str,
    subnets: &[String],
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let (id, default_route, assoc) = match have {
        Some(r) => (r.id.clone(), r.default_route, r.subnets.clone()),
        None => {
            let r = c
                .ec2
                .create_route_table()
                .vpc_id(vpc)
                .tag_specifications(ec2_tags(s.project, "public", et::ResourceType::RouteTable))
                .send()
                .await
                .call("route table", "CreateRouteTable")?;
            let id = r.route_table().and_then(|r| r.route_table_id());
            (id.unwrap_or_default().to_owned(), false, Vec::new())
        }
    };
    let what = format!("route table {id}");
    if !default_route {
        let r = c.ec2.create_route().route_table_id(&id);
        let r = r.destination_cidr_block("0.0.0.0/0").gateway_id(igw);
        r.send().await.call(&what, "CreateRoute")?;
    }
    let missing: Vec<&String> = subnets.iter().filter(|x| !assoc.contains(x)).collect();
    for x in &missing {
        let a = c.ec2.associate_route_table().route_table_id(&id);
        a.subnet_id(*x)
            .send()
            .await
            .call(&what, "AssociateRouteTable")?;
    }
    let did = have.is_none() || !default_route || !missing.is_empty();
    Ok(Step::when((), did, || {
        format!("{what}: default route and subnet associations")
    }))
}

/// `aws.availability_zones`, or the first available ones, one per subnet.
pub(super) async fn zones(s: &Scope<'_>) -> anyhow::Result<Vec<String>> {
    let (c, cfg) = (s.c, s.cfg);
    if !cfg.availability_zones.is_empty() {
        return Ok(cfg.availability_zones.clone());
    }
    let r = c
        .ec2
        .describe_availability_zones()
        .filters(filter("state", &["available"]))
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

#[cfg(test)]
mod tests {
    use super::super::discover::Vpc;
    use super::*;

    fn cfg(toml: &str) -> AwsCfg {
        crate::config::Config::parse(
            toml,
            std::path::Path::new("e.toml"),
            std::path::Path::new("."),
            &std::collections::BTreeMap::new(),
            &Default::default(),
        )
        .unwrap()
        .aws
    }

    fn found(vpc: &str, subnets: &[&str]) -> Found {
        Found {
            vpc: Some(Vpc {
                id: "vpc-1".into(),
                cidr: vpc.into(),
            }),
            subnets: subnets
                .iter()
                .enumerate()
                .map(|(i, c)| Subnet {
                    id: format!("subnet-{i}"),
                    cidr: (*c).into(),
                })
                .collect(),
            ..Found::default()
        }
    }

    #[test]
    fn moving_the_vpc_or_dropping_a_subnet_is_refused_with_what_to_do() {
        let as_built = found("10.42.0.0/16", &["10.42.1.0/24", "10.42.2.0/24"]);
        assert!(refuse_moves(&cfg(""), "p", &as_built).is_ok());
        assert!(refuse_moves(&cfg(""), "p", &Found::default()).is_ok());
        let moved = cfg("[aws]\nvpc_cidr = \"10.43.0.0/16\"\n\
                         subnet_cidrs = [\"10.43.1.0/24\", \"10.43.2.0/24\"]\n");
        let e = refuse_moves(&moved, "p", &as_built)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "aws.vpc_cidr: is 10.43.0.0/16 but VPC vpc-1 was created with 10.42.0.0/16"
            ) && e.contains("eshop destroy"),
            "{e}"
        );
        let fewer = cfg("[aws]\nsubnet_cidrs = [\"10.42.1.0/24\", \"10.42.3.0/24\"]\n");
        let e = refuse_moves(&fewer, "p", &as_built)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no longer lists 10.42.2.0/24 (subnet-1)") && e.contains("eshop destroy"),
            "{e}"
        );
    }
}
