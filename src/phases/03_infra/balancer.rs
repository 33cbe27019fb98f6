//! The way in and the workers: target group (the NodePort on every
//! worker), internet-facing application load balancer with an HTTP
//! listener, the workers' Auto Scaling group registered with the target
//! group, and its CPU target-tracking policy.

use super::discover::{Balancer, Workers};
use super::{elb_tags, Names, Step, PHASE};
use crate::config::aws::Aws as AwsCfg;
use crate::engines::aws::{self as aws, Call, Clients};
use aws_sdk_autoscaling::types as at;
use aws_sdk_elasticloadbalancingv2::types as lt;

pub(super) async fn target_group(
    c: &Clients,
    cfg: &AwsCfg,
    project: &str,
    n: &Names,
    vpc: &str,
    have: Option<&String>,
) -> anyhow::Result<Step<String>> {
    if let Some(arn) = have {
        return Ok(Step::kept(arn.clone()));
    }
    let r = c
        .elb
        .create_target_group()
        .name(&n.tg)
        .protocol(lt::ProtocolEnum::Http)
        .port(cfg.node_port)
        .vpc_id(vpc)
        .target_type(lt::TargetTypeEnum::Instance)
        .health_check_path("/healthz")
        .set_tags(Some(elb_tags(project, "nodes")))
        .send()
        .await
        .call(&format!("target group {}", n.tg), "CreateTargetGroup")?;
    let arn = r.target_groups().first().and_then(|t| t.target_group_arn());
    let what = format!("created target group {}", n.tg);
    Ok(Step::done(arn.unwrap_or_default().to_owned(), what))
}

pub(super) async fn load_balancer(
    c: &Clients,
    project: &str,
    n: &Names,
    subnets: &[String],
    group: &str,
    have: Option<&Balancer>,
) -> anyhow::Result<Step<String>> {
    if let Some(b) = have {
        return Ok(Step::kept(b.arn.clone()));
    }
    let r = c
        .elb
        .create_load_balancer()
        .name(&n.alb)
        .set_subnets(Some(subnets.to_vec()))
        .security_groups(group)
        .scheme(lt::LoadBalancerSchemeEnum::InternetFacing)
        .r#type(lt::LoadBalancerTypeEnum::Application)
        .set_tags(Some(elb_tags(project, "alb")))
        .send()
        .await
        .call(&format!("load balancer {}", n.alb), "CreateLoadBalancer")?;
    let arn = r
        .load_balancers()
        .first()
        .and_then(|l| l.load_balancer_arn());
    let what = format!("created load balancer {}", n.alb);
    Ok(Step::done(arn.unwrap_or_default().to_owned(), what))
}

/// HTTP:80 forwarding to the target group.
pub(super) async fn listener(
    c: &Clients,
    project: &str,
    n: &Names,
    alb: &str,
    tg: &str,
    have: Option<&String>,
) -> anyhow::Result<Step<()>> {
    if have.is_some() {
        return Ok(Step::kept(()));
    }
    c.elb
        .create_listener()
        .load_balancer_arn(alb)
        .protocol(lt::ProtocolEnum::Http)
        .port(80)
        .default_actions(
            lt::Action::builder()
                .r#type(lt::ActionTypeEnum::Forward)
                .target_group_arn(tg)
                .build(),
        )
        .set_tags(Some(elb_tags(project, "http")))
        .send()
        .await
        .call(&format!("load balancer {}", n.alb), "CreateListener")?;
    Ok(Step::done(
        (),
        format!("listener {} HTTP:80 → {}", n.alb, n.tg),
    ))
}

/// Where the group goes.
pub(super) struct Placement<'a> {
    pub template: &'a str,
    pub subnets: &'a [String],
    pub target_group: &'a str,
}

pub(super) async fn workers(
    c: &Clients,
    cfg: &AwsCfg,
    project: &str,
    n: &Names,
    place: &Placement<'_>,
    have: Option<&Workers>,
) -> anyhow::Result<Step<()>> {
    let what = format!("auto scaling group {}", n.asg);
    let done = format!(
        "{what} ({}..{}, desired {})",
        cfg.min_size, cfg.max_size, cfg.desired_capacity
    );
    let Some(w) = have else {
        return create_workers(c, cfg, project, n, place, &what, done).await;
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
        .auto_scaling_group_name(&n.asg)
        .min_size(cfg.min_size)
        .max_size(cfg.max_size)
        .desired_capacity(d)
        .send()
        .await
        .call(&what, "UpdateAutoScalingGroup")?;
    Ok(Step::done((), done))
}

async fn create_workers(
    c: &Clients,
    cfg: &AwsCfg,
    project: &str,
    n: &Names,
    place: &Placement<'_>,
    what: &str,
    done: String,
) -> anyhow::Result<Step<()>> {
    // Propagated, so every member carries eshop's tags from launch on.
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
                .launch_template_id(place.template)
                .version("$Latest")
                .build(),
        )
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

pub(super) async fn policy(
    c: &Clients,
    cfg: &AwsCfg,
    n: &Names,
    have: Option<f64>,
) -> anyhow::Result<Step<()>> {
    if policy_as_configured(cfg, have) {
        return Ok(Step::kept(()));
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
    Ok(Step::done(
        (),
        format!(
            "scaling policy {} at {}% CPU",
            n.policy, cfg.cpu_target_percent
        ),
    ))
}
