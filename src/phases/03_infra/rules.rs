//! The two security groups and their ingress rules: the world reaches the
//! load balancer on 80/443 only; nodes take everything from each other,
//! the NodePort from the load balancer, SSH and the API server only from
//! `aws.admin_cidr`. Apply revokes what is not wanted (hand-made drift)
//! and authorizes what is missing.

use super::discover::Group;
use super::{ec2_tags, Scope, Step};
use crate::config::aws::Aws as AwsCfg;
use crate::engines::aws::Call;
use aws_sdk_ec2::types as et;
use std::collections::BTreeSet;

/// One ingress rule in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rule {
    /// `tcp`, or `-1` for every protocol (ports are then -1).
    pub protocol: String,
    pub from: i32,
    pub to: i32,
    /// A CIDR or a security group id.
    pub source: String,
}

impl Rule {
    fn tcp(port: i32, source: impl Into<String>) -> Rule {
        Rule {
            protocol: "tcp".into(),
            from: port,
            to: port,
            source: source.into(),
        }
    }
}

pub(super) fn rules_of(perms: &[et::IpPermission]) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_owned();
        let (from, to) = if protocol == "-1" {
            (-1, -1)
        } else {
            (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1))
        };
        let cidrs = p.ip_ranges().iter().map(|r| r.cidr_ip());
        let groups = p.user_id_group_pairs().iter().map(|g| g.group_id());
        for source in cidrs.chain(groups) {
            out.insert(Rule {
                protocol: protocol.clone(),
                from,
                to,
                source: source.unwrap_or("").to_owned(),
            });
        }
    }
    out
}

fn permission(r: &Rule) -> et::IpPermission {
    let mut b = et::IpPermission::builder().ip_protocol(&r.protocol);
    if r.protocol != "-1" {
        b = b.from_port(r.from).to_port(r.to);
    }
    if r.source.starts_with("sg-") {
        b.user_id_group_pairs(et::UserIdGroupPair::builder().group_id(&r.source).build())
            .build()
    } else {
        b.ip_ranges(et::IpRange::builder().cidr_ip(&r.source).build())
            .build()
    }
}

pub(super) fn lb_rules() -> BTreeSet<Rule> {
    [80, 443]
        .into_iter()
        .map(|p| Rule::tcp(p, "0.0.0.0/0"))
        .collect()
}

/// Nodes: everything from each other, the NodePort from the load
/// balancer, SSH and the API server only from the admin network.
pub(super) fn node_rules(cfg: &AwsCfg, self_id: &str, lb_id: &str) -> BTreeSet<Rule> {
    let mut r = BTreeSet::new();
    r.insert(Rule {
        protocol: "-1".into(),
        from: -1,
        to: -1,
        source: self_id.to_owned(),
    });
    r.insert(Rule::tcp(cfg.node_port, lb_id));
    if let Some(admin) = cfg.admin_cidr {
        for p in [22, 6443] {
            r.insert(Rule::tcp(p, admin.to_string()));
        }
    }
    r
}

/// The group `eshop-<project>-<role>`, created (without rules) if absent.
pub(super) async fn group(
    s: &Scope<'_>,
    vpc: &str,
    role: &str,
    have: Option<&Group>,
) -> anyhow::Result<Step<String>> {
    let c = s.c;
    if let Some(g) = have {
        return Ok(Step::kept(g.id.clone()));
    }
    let project = s.project;
    let name = format!("eshop-{project}-{role}");
    let r = c
        .ec2
        .create_security_group()
        .group_name(&name)
        .description(format!("eshop {project}: {role}"))
        .vpc_id(vpc)
        .tag_specifications(ec2_tags(project, role, et::ResourceType::SecurityGroup))
        .send()
        .await
        .call(&format!("security group {name}"), "CreateSecurityGroup")?;
    let id = r.group_id().unwrap_or_default().to_owned();
    Ok(Step::done(
        id.clone(),
        format!("created security group {id}"),
    ))
}

/// Brings group `id`'s ingress from `have` to `want`.
pub(super) async fn converge(
    s: &Scope<'_>,
    id: &str,
    want: BTreeSet<Rule>,
    have: Option<&Group>,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let have = have.map(|g| g.rules.clone()).unwrap_or_default();
    let add: Vec<_> = want.difference(&have).map(permission).collect();
    let del: Vec<_> = have.difference(&want).map(permission).collect();
    let what = format!("security group {id}");
    if !del.is_empty() {
        let r = c.ec2.revoke_security_group_ingress().group_id(id);
        let r = r.set_ip_permissions(Some(del.clone())).send().await;
        r.call(&what, "RevokeSecurityGroupIngress")?;
    }
    if !add.is_empty() {
        let r = c.ec2.authorize_security_group_ingress().group_id(id);
        let r = r.set_ip_permissions(Some(add.clone())).send().await;
        r.call(&what, "AuthorizeSecurityGroupIngress")?;
    }
    let did = !add.is_empty() || !del.is_empty();
    Ok(Step::when((), did, || format!("{what}: ingress rules")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(r.iter().all(|x| x.source != "0.0.0.0/0"), "{r:?}");
        assert!(!r.iter().any(|x| x.from == 22));
        cfg.admin_cidr = Some("203.0.113.0/24".parse().unwrap());
        let r = node_rules(&cfg, "sg-n", "sg-l");
        assert!(r.contains(&Rule::tcp(22, "203.0.113.0/24")));
    }

    #[test]
    fn rules_read_back_from_aws_compare_equal_to_the_wanted_ones() {
        // The round trip apply relies on: what it authorizes, discovery
        // reads back as the same rules, so a second apply changes nothing.
        let want: BTreeSet<Rule> = lb_rules()
            .into_iter()
            .chain([Rule {
                protocol: "-1".into(),
                from: -1,
                to: -1,
                source: "sg-1".into(),
            }])
            .collect();
        let perms: Vec<_> = want.iter().map(permission).collect();
        assert_eq!(rules_of(&perms), want);
        // AWS reports all-protocol rules with ports it did not get.
        let odd = et::IpPermission::builder()
            .ip_protocol("-1")
            .from_port(0)
            .to_port(65535)
            .user_id_group_pairs(et::UserIdGroupPair::builder().group_id("sg-1").build())
            .build();
        assert_eq!(
            rules_of(&[odd]).first().map(|r| (r.from, r.to)),
            Some((-1, -1))
        );
    }
}
