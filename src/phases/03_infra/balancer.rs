//! The way in and the workers: target group (the NodePort on every
//! worker), internet-facing application load balancer with an HTTP
//! listener, the workers' Auto Scaling group registered with the target
//! group, and its CPU target-tracking policy.

use super::discover::{Balancer, Workers};
use super::{elb_tags, Scope, Step, PHASE};
use crate::config::aws::Aws as AwsCfg;
use crate::engines::aws::{self as aws, Call};
use aws_sdk_autoscaling::types as at;
use aws_sdk_elasticloadbalancingv2::types as lt;

pub(super) async fn target_group(
    s: &Scope<'_>,
    vpc: &str,
    have: Option<&String>,
) -> anyhow::Result<Step<String>> {
    let c = s.c;
    if let Some(arn) = have {
        return Ok(Step::kept(arn.clone()));
    }
    let name = &s.n.tg;
    let r = c
        .elb
        .create_target_group()
        .name(name)
        .protocol(lt::ProtocolEnum::Http)
        .port(s.cfg.node_port)
        .vpc_id(vpc)
        .target_type(lt::TargetTypeEnum::Instance)
        .health_check_path("/healthz")
        .set_tags(Some(elb_tags(s.project, "nodes")))
        .send()
        .await
        .call(&format!("target group {name}"), "CreateTargetGroup")?;
    let arn = r.target_groups().first().and_then(|t| t.target_group_arn());
    let what = format!("created target group {name}");
    Ok(Step::done(arn.unwrap_or_default().to_owned(), what))
}

pub(super) async fn load_balancer(
    s: &Scope<'_>,
    subnets: &[String],
    group: &str,
    have: Option<&Balancer>,
) -> anyhow::Result<Step<String>> {
    let c = s.c;
    if let Some(b) = have {
        return Ok(Step::kept(b.arn.clone()));
    }
    let name = &s.n.alb;
    let r = c
        .elb
        .create_load_balancer()
        .name(name)
        .set_subnets(Some(subnets.to_vec()))
        .security_groups(group)
        .scheme(lt::LoadBalancerSchemeEnum::InternetFacing)
        .r#type(lt::LoadBalancerTypeEnum::Application)
        .set_tags(Some(elb_tags(s.project, "alb")))
        .send()
        .await
        .call(&format!("load balancer {name}"), "CreateLoadBalancer")?;
    let arn = r
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn());
    let what = format!("created load balancer {name}");
    Ok(Step::done(arn.unwrap_or_default().to_owned(), what))
}

/// HTTP:80 forwarding to the target group.
pub(super) async fn listener(
    s: &Scope<'_>,
    alb: &str,
    tg: &str,
    have: Option<&String>,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    if have.is_some() {
        return Ok(Step::kept(()));
    }
    let forward = lt::Action::builder()
        .r#type(lt::ActionTypeEnum::Forward)
        .target_group_arn(tg)
        .build();
    c.elb
        .create_listener()
        .load_balancer_arn(alb)
        .protocol(lt::ProtocolEnum::Http)
        .port(80)
        .default_actions(forward)
        .set_tags(Some(elb_tags(s.project, "http")))
        .send()
        .await
        .call(&format!("load balancer {}", s.n.alb), "CreateListener")?;
    let what = format!("listener {} HTTP:80 → {}", s.n.alb, s.n.tg);
    Ok(Step::done((), what))
}

/// Where the group goes.
pub(super) struct Placement<'a> {
    pub template: &'a str,
    pub subnets: &'a [String],
    pub target_group: &'a str,
}

pub(super) async fn workers(
    s: &Scope<'_>,
    place: &Placement<'_>,
    have: Option<&Workers>,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let cfg = s.cfg;
    let what = format!("auto scaling group {}", s.n.asg);
    let done = format!(
        "{what} ({}..{}, desired {})",
        cfg.min_size, cfg.max_size, cfg.desired_capacity
    );
    let Some(w) = have else {
        return create_workers(s, place, &what, done).await;
    };
    if w.min == cfg.min_size && w.max == cfg.max_size {
        return Ok(Step::kept(()));
    }
    // Desired follows the policy between runs; only pull it back inside
    // the configured bounds (and up from zero after the evening stop).
    let d = if w.desired < cfg.min_size || w.desired > cfg.max_size || w.desired == 0 {
        cfg.desired_capacity
    } else {
        w.desired
    };
    c.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&s.n.asg)
        .min_size(cfg.min_size)
        .max_size(cfg.max_size)
        .desired_capacity(d)
        .send()
        .await
        .call(&what, "UpdateAutoScalingGroup")?;
    Ok(Step::done((), done))
}

async fn create_workers(
    s: &Scope<'_>,
    place: &Placement<'_>,
    what: &str,
    done: String,
) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let (cfg, name) = (s.cfg, &s.n.asg);
    // Propagated, so every member carries eshop's tags from launch on.
    let tags = aws::tags(s.project, PHASE, "worker")
        .into_iter()
        .map(|(k, v)| {
            at::Tag::builder()
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .build()
        })
        .collect();
    let template = at::LaunchTemplateSpecification::builder()
        .launch_template_id(place.template)
        .version("$Latest")
        .build();
    let r = c
        .asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(template)
        .min_size(cfg.min_size)
        .max_size(cfg.max_size)
        .desired_capacity(cfg.desired_capacity)
        .vpc_zone_identifier(place.subnets.join(","))
        .target_group_arns(place.target_group)
        .health_check_type("ELB")
        .health_check_grace_period(300)
        .set_tags(Some(tags))
        .send()
        .await;
    match r {
        Ok(_) => Ok(Step::done((), done)),
        // Created by a run that crashed before it could say so.
        Err(e) if aws::code(&e) == Some("AlreadyExists") => Ok(Step::kept(())),
        Err(e) => Err(e).call(what, "CreateAutoScalingGroup"),
    }
}

/// True when the policy's target is the configured one.
pub(super) fn policy_as_configured(cfg: &AwsCfg, have: Option<f64>) -> bool {
    have.is_some_and(|t| (t - cfg.cpu_target_percent).abs() < f64::EPSILON)
}

pub(super) async fn policy(s: &Scope<'_>, have: Option<f64>) -> anyhow::Result<Step<()>> {
    let c = s.c;
    let cfg = s.cfg;
    if policy_as_configured(cfg, have) {
        return Ok(Step::kept(()));
    }
    let metric = at::PredefinedMetricSpecification::builder()
        .predefined_metric_type(at::MetricType::AsgAverageCpuUtilization)
        .build();
    let tracking = at::TargetTrackingConfiguration::builder()
        .predefined_metric_specification(metric)
        .target_value(cfg.cpu_target_percent)
        .build();
    // PutScalingPolicy is an upsert: create and update are one call.
    c.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&s.n.asg)
        .policy_name(&s.n.policy)
        .policy_type("TargetTrackingScaling")
        .target_tracking_configuration(tracking)
        .send()
        .await
        .call(
            &format!("scaling policy {}", s.n.policy),
            "PutScalingPolicy",
        )?;
    let what = format!(
        "scaling policy {} at {}% CPU",
        s.n.policy, cfg.cpu_target_percent
    );
    Ok(Step::done((), what))
}
