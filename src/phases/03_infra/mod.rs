//! Phase 3 infra: the shop's AWS network and machines through the SDK.
//!
//! Every resource is created with its tags in the same call
//! (TagSpecifications), so a crash can never leave an untagged orphan:
//! the next run finds it by tag and carries on. RunInstances gets a
//! ClientToken, so even a retried call after a lost response starts one
//! control plane, not two. Load balancer, target group and Auto Scaling
//! group names are derived from the project and checked for eshop's tags
//! before eshop touches them.
//!
//! The files follow the resources: `discover` reads what exists (by tag),
//! `network` (VPC, subnets, gateway, routes), `rules` (security groups),
//! `compute` (key pair, control plane and its address, launch template),
//! `balancer` (target group, load balancer, Auto Scaling), `plan` (plan
//! and status, from one discovery), `apply` (the order and concurrency of
//! the steps) and `destroy` (the reverse).

mod apply;
mod balancer;
mod compute;
mod destroy;
mod discover;
mod network;
mod plan;
mod rules;

use super::{Change, Ctx, Info, Outcome, Phase, Status, AWS_ONLY};
use crate::config::aws::Aws as AwsCfg;
use crate::engines::aws::{self, Clients};
use crate::labels;
use aws_sdk_ec2::types as et;
use std::path::{Path, PathBuf};

pub use compute::{instances, Instance};

pub struct Infra;

pub const PHASE: &str = "infra";

/// What `eshop phases` says this phase does.
const ABOUT: &str = "VPC, subnets, security groups, control plane + Elastic IP, workers' Auto Scaling group, load balancer (AWS SDK)";

impl Phase for Infra {
    const INFO: Info = Info::new(3, PHASE, ABOUT, AWS_ONLY);

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        plan::plan(ctx).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        apply::apply(ctx).await
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        destroy::destroy(ctx).await
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        plan::status(ctx).await
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        compute::render(&ctx.config.project, out)
    }
}

/// What every step needs: the clients, `[aws]`, the project and the
/// names derived from it.
struct Scope<'a> {
    c: &'a Clients,
    cfg: &'a AwsCfg,
    project: &'a str,
    n: Names,
}

impl<'a> Scope<'a> {
    async fn of(ctx: &'a Ctx) -> Scope<'a> {
        let project = ctx.config.project.as_str();
        Scope {
            c: ctx.aws().await,
            cfg: &ctx.config.aws,
            project,
            n: names(project),
        }
    }
}

/// The names eshop gives what AWS identifies by name.
struct Names {
    key: String,
    alb: String,
    tg: String,
    asg: String,
    policy: String,
    lt: String,
}

fn names(project: &str) -> Names {
    Names {
        key: format!("eshop-{project}"),
        alb: aws::elb_name(project, "alb"),
        tg: aws::elb_name(project, "nodes"),
        asg: format!("eshop-{project}-workers"),
        policy: format!("eshop-{project}-cpu-target"),
        lt: format!("eshop-{project}-workers"),
    }
}

/// eshop's tags for an EC2 resource of type `rt`, set in the create call.
fn ec2_tags(project: &str, role: &str, rt: et::ResourceType) -> et::TagSpecification {
    let tags = aws::tags(project, PHASE, role)
        .into_iter()
        .map(|(k, v)| et::Tag::builder().key(k).value(v).build());
    et::TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(tags.collect()))
        .build()
}

/// [`ec2_tags`] plus the hash of the resource's desired settings.
fn ec2_tags_with_spec(
    project: &str,
    role: &str,
    rt: et::ResourceType,
    spec: &str,
) -> et::TagSpecification {
    let mut t = ec2_tags(project, role, rt);
    t.tags
        .get_or_insert_with(Vec::new)
        .push(et::Tag::builder().key(labels::SPEC).value(spec).build());
    t
}

/// Filters that find exactly this project's phase 3 resources.
fn owner_filters(project: &str) -> Vec<et::Filter> {
    [
        (labels::PROJECT, project),
        (labels::TARGET, "aws"),
        (labels::PHASE, PHASE),
    ]
    .into_iter()
    .map(|(k, v)| {
        et::Filter::builder()
            .name(format!("tag:{k}"))
            .values(v)
            .build()
    })
    .collect()
}

fn filter(name: &str, values: &[&str]) -> et::Filter {
    values
        .iter()
        .fold(et::Filter::builder().name(name), |b, v| b.values(*v))
        .build()
}

fn tag_of<'a>(tags: &'a [et::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn elb_tags(project: &str, role: &str) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    aws::tags(project, PHASE, role)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect()
}

/// What one apply or destroy step ended with, and the lines it has to
/// report (none when it found everything as configured).
struct Step<T> {
    value: T,
    did: Vec<String>,
}

impl<T> Step<T> {
    fn kept(value: T) -> Self {
        Step {
            value,
            did: Vec::new(),
        }
    }
    fn done(value: T, what: impl Into<String>) -> Self {
        Step {
            value,
            did: vec![what.into()],
        }
    }
    /// `kept` or `done`, as `did` says.
    fn when(value: T, did: bool, what: impl FnOnce() -> String) -> Self {
        if did {
            Step::done(value, what())
        } else {
            Step::kept(value)
        }
    }
}

/// One progress line per created, changed or deleted resource.
struct Tally<'a> {
    ctx: &'a Ctx,
    n: usize,
}

impl<'a> Tally<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Tally { ctx, n: 0 }
    }
    fn did(&mut self, what: impl AsRef<str>) {
        self.n += 1;
        self.ctx.ui.info(PHASE, what.as_ref());
    }
    /// Reports what `step` did and hands back its value.
    fn take<T>(&mut self, step: Step<T>) -> T {
        for line in &step.did {
            self.did(line);
        }
        step.value
    }
    fn outcome(&self) -> Outcome {
        Outcome { changed: self.n }
    }
}
