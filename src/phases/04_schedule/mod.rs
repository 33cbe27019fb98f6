//! Phase 4 schedule: every day at `schedule.stop_at` in `schedule.time_zone`
//! a Lambda function stops the shop's standalone instances and scales its
//! Auto Scaling group to zero (templates/lambda/stop_shop.py explains why
//! members are not simply stopped); optionally a morning start.
//!
//! EventBridge Scheduler evaluates the cron expression in the configured
//! IANA time zone itself, so 18:00 stays 18:00 across daylight-saving
//! changes; a UTC cron would drift by an hour twice a year.
//!
//! Owned resources: two IAM roles (the function's and the scheduler's,
//! each with one inline least-privilege policy; `iam`), the function
//! (`function`, its deterministic zip in `zip`), and a schedule group
//! holding the schedules (`schedules`). Roles, function and group carry
//! eshop's tags and are only touched when they do. `plan` holds plan and
//! status, `apply` the order of apply and destroy.

mod apply;
mod function;
mod iam;
mod plan;
mod schedules;
mod zip;

use super::{Change, Ctx, Info, Outcome, Phase, Status, AWS_ONLY};
use crate::engines::aws::Clients;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use schedules::{cron, next_run};
pub use zip::handler_zip;

pub struct Schedule;

pub const PHASE: &str = "schedule";

/// What `eshop phases` says this phase does.
const ABOUT: &str = "Lambda that stops the shop's instances every evening at the configured time and time zone (schedule.stop_at, schedule.time_zone; optional morning start), its IAM roles and schedules";

impl Phase for Schedule {
    const INFO: Info = Info::new(4, PHASE, ABOUT, AWS_ONLY);

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        plan::plan(ctx).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        apply::apply(ctx).await
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        apply::destroy(ctx).await
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        plan::status(ctx).await
    }
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        iam::render(&ctx.config.project, &ctx.config.aws.region, out)
    }
}

/// The names eshop gives this phase's resources.
struct Names {
    function: String,
    lambda_role: String,
    scheduler_role: String,
    group: String,
}

fn names(project: &str) -> Names {
    Names {
        function: format!("eshop-{project}-stop-shop"),
        lambda_role: format!("eshop-{project}-stop-shop"),
        scheduler_role: format!("eshop-{project}-scheduler"),
        group: format!("eshop-{project}"),
    }
}

/// What of this phase exists, read once for plan, apply, status, destroy.
#[derive(Debug, Default)]
struct Found {
    lambda_role: Option<iam::Role>,
    scheduler_role: Option<iam::Role>,
    function: Option<function::Function>,
    group: bool,
    /// By name (`stop`, `start`).
    schedules: BTreeMap<String, schedules::Sched>,
}

async fn discover(c: &Clients, project: &str) -> anyhow::Result<Found> {
    let n = names(project);
    let (lambda_role, scheduler_role, function, (group, schedules)) = tokio::try_join!(
        iam::read(c, project, &n.lambda_role),
        iam::read(c, project, &n.scheduler_role),
        function::read(c, project, &n.function),
        schedules::read(c, project, &n.group),
    )?;
    Ok(Found {
        lambda_role,
        scheduler_role,
        function,
        group,
        schedules,
    })
}
