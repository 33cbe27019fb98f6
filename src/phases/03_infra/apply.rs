//! Apply: the steps in dependency order, each stage's independent steps
//! at once. Every step starts from what discovery found, so a re-run
//! (or a run after a crash) only does what is missing.

use super::balancer::{self, Placement};
use super::compute::{self, Boot};
use super::discover::{discover, Found};
use super::network::{self, refuse_moves};
use super::rules;
use super::{names, Tally, PHASE};
use crate::phases::{Ctx, Outcome};
use serde_json::json;

pub(super) async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let cfg = &ctx.config.aws;
    let project = ctx.config.project.as_str();
    let material = compute::public_key(cfg)?;
    let c = ctx.aws().await;
    let n = names(project);
    let (f, ami, zones) = tokio::try_join!(
        discover(c, project),
        compute::ami(c, cfg),
        network::zones(c, cfg)
    )?;
    // Before the first write: plan refuses the same way.
    refuse_moves(cfg, project, &f)?;
    let mut t = Tally::new(ctx);

    let vpc = t.take(network::vpc(c, cfg, project, &f).await?);
    let (igw, subnets, lb_sg, nodes_sg, key, tg) = tokio::try_join!(
        network::gateway(c, project, f.igw.as_ref(), &vpc),
        network::subnets(c, cfg, project, &f.subnets, &vpc, &zones),
        rules::group(c, project, &vpc, "lb", f.sg_lb.as_ref()),
        rules::group(c, project, &vpc, "nodes", f.sg_nodes.as_ref()),
        compute::key_pair(c, project, &n, &material, f.key.as_ref()),
        balancer::target_group(c, cfg, project, &n, &vpc, f.tg.as_ref()),
    )?;
    let (igw, subnets) = (t.take(igw), t.take(subnets));
    let (lb_sg, nodes_sg) = (t.take(lb_sg), t.take(nodes_sg));
    t.take(key);
    let tg = t.take(tg);

    let boot = Boot {
        ami: &ami,
        key: &n.key,
        group: &nodes_sg,
    };
    let (rtb, lb_rules, node_rules, lt, alb) = tokio::try_join!(
        network::route_table(c, project, f.rtb.as_ref(), &vpc, &igw, &subnets),
        rules::converge(c, &lb_sg, rules::lb_rules(), f.sg_lb.as_ref()),
        rules::converge(
            c,
            &nodes_sg,
            rules::node_rules(cfg, &nodes_sg, &lb_sg),
            f.sg_nodes.as_ref()
        ),
        compute::launch_template(c, cfg, project, &n, &boot, f.lt.as_ref()),
        balancer::load_balancer(c, project, &n, &subnets, &lb_sg, f.alb.as_ref()),
    )?;
    t.take(rtb);
    t.take(lb_rules);
    t.take(node_rules);
    let (lt, alb) = (t.take(lt), t.take(alb));

    let place = Placement {
        template: &lt,
        subnets: &subnets,
        target_group: &tg,
    };
    let (cp, listener, workers) = tokio::try_join!(
        compute::control_plane(c, cfg, project, &f, &boot, &subnets[0]),
        balancer::listener(c, project, &n, &alb, &tg, f.listener.as_ref()),
        balancer::workers(c, cfg, project, &n, &place, f.asg.as_ref()),
    )?;
    let cp = t.take(cp);
    t.take(listener);
    t.take(workers);

    let (eip, policy) = tokio::try_join!(
        compute::address(c, project, f.eip.as_ref(), &cp),
        balancer::policy(c, cfg, &n, f.policy),
    )?;
    t.take(eip);
    t.take(policy);

    // The state file is a cache of what phase 5 needs to reach the nodes.
    let after = discover(c, project).await?;
    ctx.set_phase_state(PHASE, outputs(&after, &vpc))?;
    Ok(t.outcome())
}

fn outputs(f: &Found, vpc: &str) -> serde_json::Value {
    json!({
        "vpc": vpc,
        "control_plane": f.cp.as_ref().map(|m| json!({
            "id": m.id, "state": m.state, "private_ip": m.private_ip,
            "public_ip": f.eip.as_ref().map(|a| a.public_ip.clone()),
        })),
        "workers": f.asg.as_ref().map(|w| w.in_service.clone()).unwrap_or_default(),
        "load_balancer": f.alb.as_ref().map(|b| b.dns.clone()),
    })
}
