//! Plan and status, both read from one discovery. The plan says what
//! apply will do and nothing else: where apply would refuse (a moved
//! VPC), plan refuses with the same words.

use super::balancer::policy_as_configured;
use super::compute::{key_spec, public_key};
use super::discover::{discover, Found};
use super::network::refuse_moves;
use super::rules::{lb_rules, node_rules};
use super::{names, Scope};
use crate::config::aws::Aws as AwsCfg;
use crate::phases::{Action, Change, Ctx, Status};

pub(super) async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let key = public_key(&ctx.config.aws)?;
    let s = Scope::of(ctx).await;
    let f = discover(&s).await?;
    refuse_moves(s.cfg, s.project, &f)?;
    Ok(changes(s.cfg, s.project, &f, &key_spec(&key)))
}

/// The plan's lines, in apply's order.
struct Lines(Vec<Change>);

impl Lines {
    /// Create when absent, update when `update` says why, else unchanged.
    fn push(&mut self, res: String, have: bool, update: Option<String>) {
        self.0.push(match (have, update) {
            (false, _) => Change::new(res, Action::Create, "absent"),
            (true, Some(why)) => Change::new(res, Action::Update, why),
            (true, None) => Change::new(res, Action::NoOp, "as configured"),
        });
    }
}

fn changes(cfg: &AwsCfg, project: &str, f: &Found, key_spec: &str) -> Vec<Change> {
    let mut out = Lines(Vec::new());
    network(&mut out, cfg, project, f);
    machines(&mut out, cfg, project, f, key_spec);
    balancing(&mut out, cfg, project, f);
    out.0
}

fn network(out: &mut Lines, cfg: &AwsCfg, project: &str, f: &Found) {
    out.push(
        format!("vpc eshop-{project}-vpc ({})", cfg.vpc_cidr),
        f.vpc.is_some(),
        None, // a moved VPC was refused above
    );
    let attached = f.igw.as_ref().is_some_and(|g| !g.attached.is_empty());
    out.push(
        format!("internet gateway eshop-{project}-igw"),
        f.igw.is_some(),
        (!attached).then(|| "not attached to the VPC".into()),
    );
    for (i, cidr) in cfg.subnet_cidrs.iter().enumerate() {
        let have = f.subnets.iter().any(|s| s.cidr == cidr.to_string());
        out.push(format!("subnet public-{} ({cidr})", i + 1), have, None);
    }
    let rtb_update = f.rtb.as_ref().and_then(|r| {
        if !r.default_route {
            Some("no default route to the internet gateway".to_owned())
        } else if f.subnets.iter().any(|s| !r.subnets.contains(&s.id))
            || f.subnets.len() < cfg.subnet_cidrs.len()
        {
            Some("not associated with every subnet".to_owned())
        } else {
            None
        }
    });
    out.push(
        format!("route table eshop-{project}-public"),
        f.rtb.is_some(),
        rtb_update,
    );
    let lb_id = f.sg_lb.as_ref().map_or("sg-lb", |g| g.id.as_str());
    let differ = || "ingress rules differ".to_owned();
    out.push(
        format!("security group eshop-{project}-lb"),
        f.sg_lb.is_some(),
        f.sg_lb
            .as_ref()
            .filter(|g| g.rules != lb_rules())
            .map(|_| differ()),
    );
    out.push(
        format!("security group eshop-{project}-nodes"),
        f.sg_nodes.is_some(),
        f.sg_nodes
            .as_ref()
            .filter(|g| g.rules != node_rules(cfg, &g.id, lb_id))
            .map(|_| differ()),
    );
}

fn machines(out: &mut Lines, cfg: &AwsCfg, project: &str, f: &Found, key_spec: &str) {
    let n = names(project);
    out.push(
        format!("key pair {}", n.key),
        f.key.is_some(),
        f.key
            .as_ref()
            .filter(|k| k.spec != key_spec)
            .map(|_| "public key changed: re-import".into()),
    );
    out.push(
        format!("launch template {}", n.lt),
        f.lt.is_some(),
        None, // content drift needs the AMI lookup; apply checks it
    );
    out.push(
        format!(
            "instance eshop-{project}-control-plane ({})",
            cfg.control_plane_type
        ),
        f.cp.is_some(),
        None,
    );
    let eip_update = match (&f.eip, &f.cp) {
        (Some(a), Some(cp)) if a.instance.as_deref() != Some(cp.id.as_str()) => {
            Some("not associated with the control plane".to_owned())
        }
        _ => None,
    };
    out.push(
        format!("elastic ip eshop-{project}-control-plane"),
        f.eip.is_some(),
        eip_update,
    );
}

fn balancing(out: &mut Lines, cfg: &AwsCfg, project: &str, f: &Found) {
    let n = names(project);
    out.push(
        format!("target group {} (HTTP:{})", n.tg, cfg.node_port),
        f.tg.is_some(),
        None,
    );
    out.push(format!("load balancer {}", n.alb), f.alb.is_some(), None);
    out.push(
        format!("listener {} HTTP:80", n.alb),
        f.listener.is_some(),
        None,
    );
    let asg_update = f.asg.as_ref().and_then(|w| {
        (w.min != cfg.min_size || w.max != cfg.max_size).then(|| {
            format!(
                "size {}..{} → {}..{} (desired {})",
                w.min, w.max, cfg.min_size, cfg.max_size, cfg.desired_capacity
            )
        })
    });
    out.push(
        format!(
            "auto scaling group {} ({}..{}, desired {})",
            n.asg, cfg.min_size, cfg.max_size, cfg.desired_capacity
        ),
        f.asg.is_some(),
        asg_update,
    );
    let pol_update = f
        .policy
        .filter(|_| !policy_as_configured(cfg, f.policy))
        .map(|t| format!("target {t}% → {}%", cfg.cpu_target_percent));
    out.push(
        format!(
            "scaling policy {} (CPU {}%)",
            n.policy, cfg.cpu_target_percent
        ),
        f.policy.is_some(),
        pol_update,
    );
}

pub(super) async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let s = Scope::of(ctx).await;
    let f = discover(&s).await?;
    let cfg = s.cfg;
    let line = |resource: &str, state: String, healthy: bool| Status {
        resource: resource.into(),
        state,
        healthy,
    };
    let vpc = f.vpc.as_ref();
    let cp = match (&f.cp, &f.eip) {
        (Some(m), Some(a)) => format!("{} {}, {}", m.id, m.state, a.public_ip),
        (Some(m), None) => format!("{} {}, no elastic ip", m.id, m.state),
        _ => "absent".into(),
    };
    let workers = f.asg.as_ref().map_or("absent".into(), |w| {
        format!(
            "{} in service of {} desired ({}..{})",
            w.in_service.len(),
            w.desired,
            w.min,
            w.max
        )
    });
    let lb = f.alb.as_ref();
    Ok(vec![
        line(
            "vpc",
            vpc.map_or("absent".into(), |v| format!("{} {}", v.id, v.cidr)),
            vpc.is_some(),
        ),
        line(
            "control plane",
            cp,
            f.cp.as_ref().is_some_and(|m| m.state == "running") && f.eip.is_some(),
        ),
        line(
            "workers",
            workers,
            f.asg.as_ref().is_some_and(|w| {
                w.in_service.len() as i32 >= w.desired.min(cfg.max_size) && w.desired > 0
            }),
        ),
        line(
            "load balancer",
            lb.map_or("absent".into(), |b| {
                format!("{}, http://{}/", b.state, b.dns)
            }),
            lb.is_some_and(|b| b.state == "active") && f.listener.is_some(),
        ),
    ])
}
