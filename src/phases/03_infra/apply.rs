//! Apply: the steps in dependency order, each stage's independent steps
//! at once. Every step starts from what discovery found, so a re-run
//! (or a run after a crash) only does what is missing.

use super::balancer::{self, Placement};
use super::compute::{self, Boot};
use super::discover::{discover, Found};
use super::network::{self, refuse_moves};
use super::rules;
use super::{Scope, Tally, PHASE};
use crate::phases::{Ctx, Outcome};
use serde_json::json;

pub(super) async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let material = compute::public_key(&ctx.config.aws)?;
    let s = Scope::of(ctx).await;
    let (f, ami, zones) = tokio::try_join!(discover(&s), compute::ami(&s), network::zones(&s))?;
    // Before the first write: plan refuses the same way.
    refuse_moves(s.cfg, s.project, &f)?;
    let mut t = Tally::new(ctx);

    let vpc = t.take(network::vpc(&s, &f).await?);
    let (igw, subnets, lb_sg, nodes_sg, key, tg) = tokio::try_join!(
        network::gateway(&s, f.igw.as_ref(), &vpc),
        network::subnets(&s, &f.subnets, &vpc, &zones),
        rules::group(&s, &vpc, "lb", f.sg_lb.as_ref()),
        rules::group(&s, &vpc, "nodes", f.sg_nodes.as_ref()),
        compute::key_pair(&s, &material, f.key.as_ref()),
        balancer::target_group(&s, &vpc, f.tg.as_ref()),
    )?;
    let (igw, subnets) = (t.take(igw), t.take(subnets));
    let (lb_sg, nodes_sg) = (t.take(lb_sg), t.take(nodes_sg));
    t.take(key);
    let tg = t.take(tg);

    let boot = Boot {
        ami: &ami,
        key: &s.n.key,
        group: &nodes_sg,
    };
    let node_rules = rules::node_rules(s.cfg, &nodes_sg, &lb_sg);
    let (rtb, lb_rules, node_rules, lt, alb) = tokio::try_join!(
        network::route_table(&s, f.rtb.as_ref(), &vpc, &igw, &subnets),
        rules::converge(&s, &lb_sg, rules::lb_rules(), f.sg_lb.as_ref()),
        rules::converge(&s, &nodes_sg, node_rules, f.sg_nodes.as_ref()),
        compute::launch_template(&s, &boot, f.lt.as_ref()),
        balancer::load_balancer(&s, &subnets, &lb_sg, f.alb.as_ref()),
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
        compute::control_plane(&s, &f, &boot, &subnets[0]),
        balancer::listener(&s, &alb, &tg, f.listener.as_ref()),
        balancer::workers(&s, &place, f.asg.as_ref()),
    )?;
    let cp = t.take(cp);
    t.take(listener);
    t.take(workers);

    let (eip, policy) = tokio::try_join!(
        compute::address(&s, f.eip.as_ref(), &cp),
        balancer::policy(&s, f.policy),
    )?;
    t.take(eip);
    t.take(policy);

    // The state file is a cache of what phase 5 needs to reach the nodes.
    let after = discover(&s).await?;
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
