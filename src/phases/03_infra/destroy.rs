//! Destroy: everything tagged as this project's phase 3, in dependency
//! order, waiting where AWS needs it. Untagged look-alikes are never
//! looked at: every lookup filters by eshop's tags. "Already gone" counts
//! as done, so destroy can be re-run after a crash.

use super::compute::not_terminated;
use super::discover::{discover, Found, RouteTable};
use super::{Scope, Tally, PHASE};
use crate::engines::aws::{self as aws, gone, until_settled, Call, Clients};
use crate::phases::{Ctx, Outcome};
use crate::util::{poll_until, Pace};
use std::time::Duration;

/// How long AWS may take to let go of a dependency.
const PATIENCE: Duration = Duration::from_secs(600);
/// Remote API: start quick, then ask every few seconds.
const PACE: Pace = Pace::Backoff(Duration::from_millis(100), Duration::from_secs(5));

pub(super) async fn destroy(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let s = Scope::of(ctx).await;
    let f = discover(&s).await?;
    let mut t = Tally::new(ctx);
    // Group first, so it stops replacing the instances we terminate.
    if f.asg.is_some() {
        workers(&s, &mut t).await?;
    }
    balancing(&s, &f, &mut t).await?;
    machines(&s, &f, &mut t).await?;
    network(s.c, &f, &mut t).await?;
    ctx.clear_phase_state(PHASE)?;
    Ok(t.outcome())
}

async fn workers(s: &Scope<'_>, t: &mut Tally<'_>) -> anyhow::Result<()> {
    let c = s.c;
    let name = &s.n.asg;
    let what = format!("auto scaling group {name}");
    let r = c
        .asg
        .delete_auto_scaling_group()
        .auto_scaling_group_name(name);
    match r.force_delete(true).send().await {
        Ok(_) => t.did(format!("deleted {what}")),
        // ValidationError: a delete is already under way.
        Err(e) if gone(&e) || aws::code(&e) == Some("ValidationError") => {}
        Err(e) => return Err(e).call(&what, "DeleteAutoScalingGroup"),
    }
    poll_until(PATIENCE, PACE, &format!("{what} deleted"), || async {
        let r = c.asg.describe_auto_scaling_groups();
        let r = r.auto_scaling_group_names(name).send().await;
        let r = r.call(&what, "DescribeAutoScalingGroups")?;
        Ok(r.auto_scaling_groups().is_empty().then_some(()))
    })
    .await
}

async fn balancing(s: &Scope<'_>, f: &Found, t: &mut Tally<'_>) -> anyhow::Result<()> {
    let c = s.c;
    if let Some(b) = &f.alb {
        let what = format!("load balancer {}", s.n.alb);
        let r = c.elb.delete_load_balancer().load_balancer_arn(&b.arn);
        if r.send().await.deleted(&what, "DeleteLoadBalancer")? {
            t.did(format!("deleted {what}"));
        }
    }
    if let Some(arn) = &f.tg {
        let what = format!("target group {}", s.n.tg);
        // In use until the load balancer is really gone.
        delete_settled(&what, "DeleteTargetGroup", &["ResourceInUse"], || {
            c.elb.delete_target_group().target_group_arn(arn).send()
        })
        .await?;
        t.did(format!("deleted {what}"));
    }
    Ok(())
}

async fn machines(s: &Scope<'_>, f: &Found, t: &mut Tally<'_>) -> anyhow::Result<()> {
    let (c, project) = (s.c, s.project);
    if let Some(a) = &f.eip {
        let what = format!("elastic ip {}", a.allocation);
        if a.instance.is_some() {
            let r = c.ec2.describe_addresses().allocation_ids(&a.allocation);
            let r = r.send().await.call(&what, "DescribeAddresses")?;
            if let Some(id) = r.addresses().first().and_then(|a| a.association_id()) {
                let d = c.ec2.disassociate_address().association_id(id).send();
                d.await.call_or_gone(&what, "DisassociateAddress")?;
            }
        }
        let r = c.ec2.release_address().allocation_id(&a.allocation).send();
        if r.await.deleted(&what, "ReleaseAddress")? {
            t.did(format!("released {what}"));
        }
    }
    // Every instance of this phase: the control plane and group members
    // (they carry the group's propagated tags).
    let live = not_terminated(c, project).await?;
    if !live.is_empty() {
        let what = format!("instances {}", live.join(","));
        let r = c
            .ec2
            .terminate_instances()
            .set_instance_ids(Some(live.clone()));
        r.send().await.call(&what, "TerminateInstances")?;
        for id in &live {
            t.did(format!("terminating instance {id}"));
        }
        poll_until(PATIENCE, PACE, &format!("{what} terminated"), || async {
            Ok(not_terminated(c, project).await?.is_empty().then_some(()))
        })
        .await?;
    }
    if let Some(lt) = &f.lt {
        let what = format!("launch template {}", lt.id);
        let r = c.ec2.delete_launch_template().launch_template_id(&lt.id);
        if r.send().await.deleted(&what, "DeleteLaunchTemplate")? {
            t.did(format!("deleted {what}"));
        }
    }
    if let Some(k) = &f.key {
        let what = format!("key pair {}", k.id);
        let r = c.ec2.delete_key_pair().key_name(&k.id).send();
        if r.await.deleted(&what, "DeleteKeyPair")? {
            t.did(format!("deleted {what}"));
        }
    }
    Ok(())
}

async fn network(c: &Clients, f: &Found, t: &mut Tally<'_>) -> anyhow::Result<()> {
    // nodes references lb in a rule, so it goes first; both wait for the
    // network interfaces of terminated instances and the ALB to go.
    for g in f.sg_nodes.iter().chain(f.sg_lb.iter()) {
        let what = format!("security group {}", g.id);
        delete_settled(&what, "DeleteSecurityGroup", IN_USE, || {
            c.ec2.delete_security_group().group_id(&g.id).send()
        })
        .await?;
        t.did(format!("deleted {what}"));
    }
    if let Some(r) = &f.rtb {
        route_table(c, r).await?;
        t.did(format!("deleted route table {}", r.id));
    }
    for x in &f.subnets {
        delete_settled(&format!("subnet {}", x.id), "DeleteSubnet", IN_USE, || {
            c.ec2.delete_subnet().subnet_id(&x.id).send()
        })
        .await?;
        t.did(format!("deleted subnet {} ({})", x.id, x.cidr));
    }
    if let Some(g) = &f.igw {
        let what = format!("internet gateway {}", g.id);
        for vpc in &g.attached {
            let r = c.ec2.detach_internet_gateway().internet_gateway_id(&g.id);
            match r.vpc_id(vpc).send().await {
                Err(e) if aws::code(&e) == Some("Gateway.NotAttached") => {}
                r => {
                    r.call_or_gone(&what, "DetachInternetGateway")?;
                }
            }
        }
        delete_settled(&what, "DeleteInternetGateway", IN_USE, || {
            c.ec2
                .delete_internet_gateway()
                .internet_gateway_id(&g.id)
                .send()
        })
        .await?;
        t.did(format!("deleted {what}"));
    }
    if let Some(v) = &f.vpc {
        delete_settled(&format!("vpc {}", v.id), "DeleteVpc", IN_USE, || {
            c.ec2.delete_vpc().vpc_id(&v.id).send()
        })
        .await?;
        t.did(format!("deleted vpc {}", v.id));
    }
    Ok(())
}

/// A route table with subnet associations cannot be deleted: let go of
/// them first (AWS does not drop them when a subnet goes, moto neither).
async fn route_table(c: &Clients, r: &RouteTable) -> anyhow::Result<()> {
    let what = format!("route table {}", r.id);
    let now = c.ec2.describe_route_tables().route_table_ids(&r.id).send();
    let assocs: Vec<String> = now
        .await
        .call_or_gone(&what, "DescribeRouteTables")?
        .iter()
        .flat_map(|o| o.route_tables())
        .flat_map(|t| t.associations())
        .filter(|a| a.main() != Some(true))
        .filter_map(|a| a.route_table_association_id().map(str::to_owned))
        .collect();
    for a in assocs {
        let d = c.ec2.disassociate_route_table().association_id(&a).send();
        d.await.call_or_gone(&what, "DisassociateRouteTable")?;
    }
    delete_settled(&what, "DeleteRouteTable", IN_USE, || {
        c.ec2.delete_route_table().route_table_id(&r.id).send()
    })
    .await
}

/// What EC2 answers while a dependency still holds on.
const IN_USE: &[&str] = &["DependencyViolation", "InvalidGroup.InUse"];

/// A delete that is retried while AWS answers one of `in_use` and treats
/// "not found" as done.
async fn delete_settled<T, E, R, F, Fut>(
    what: &str,
    op: &str,
    in_use: &[&str],
    mut f: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    until_settled(PATIENCE, in_use, || {
        let fut = f();
        async move {
            match fut.await {
                Err(e) if !gone(&e) => Err(e).settle(what, op),
                _ => Ok(()),
            }
        }
    })
    .await
}
