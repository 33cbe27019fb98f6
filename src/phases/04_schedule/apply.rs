//! Apply and destroy: the order of the steps. Apply goes role → function
//! → scheduler role → group → schedules (each needs the ARN of the one
//! before); destroy goes the other way, schedules first, so nothing
//! invokes a function that is going away.

use super::function::{self, Settings};
use super::iam::{self, LAMBDA_POLICY_NAME, SCHEDULER_POLICY_NAME};
use super::schedules::{self, cron, describe_next, wanted, Invoke};
use super::{discover, names, PHASE};
use crate::phases::{Ctx, Outcome};
use serde_json::json;

pub(super) async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let project = ctx.config.project.as_str();
    let s = &ctx.config.schedule;
    let c = ctx.aws().await;
    let n = names(project);
    let f = discover(c, project).await?;
    let mut changed = 0;
    let mut did = |what: String| {
        changed += 1;
        ctx.ui.info(PHASE, &what);
    };

    let region = c.region.as_str();
    let (role, updated) = iam::ensure(
        c,
        project,
        (&n.lambda_role, f.lambda_role.as_ref()),
        &iam::lambda_trust()?,
        LAMBDA_POLICY_NAME,
        |r| iam::lambda_documents(region, &iam::account_of(&r.arn)?, project),
    )
    .await?;
    if updated {
        did(format!(
            "iam role {} (least privilege: the shop's tagged instances and groups)",
            n.lambda_role
        ));
    }

    let want = Settings::wanted(project, &role.arn);
    let (function_arn, lines) =
        function::ensure(c, project, &n.function, &want, f.function.as_ref()).await?;
    lines.into_iter().for_each(&mut did);

    let account = iam::account_of(&role.arn)?;
    let docs = || iam::scheduler_documents(&account, &function_arn);
    let (sched_role, updated) = iam::ensure(
        c,
        project,
        (&n.scheduler_role, f.scheduler_role.as_ref()),
        &docs()?.trust,
        SCHEDULER_POLICY_NAME,
        |_| docs(),
    )
    .await?;
    if updated {
        did(format!(
            "iam role {} (may invoke only {})",
            n.scheduler_role, n.function
        ));
    }

    if !f.group && schedules::create_group(c, project, &n.group).await? {
        did(format!("schedule group {}", n.group));
    }
    let invoke = Invoke {
        function_arn: &function_arn,
        role_arn: &sched_role.arn,
    };
    for (name, at) in wanted(s) {
        let have = f.schedules.get(name);
        if schedules::ensure(c, s, project, &n.group, (name, at), have, &invoke).await? {
            did(format!(
                "schedule {}/{name}: {} in {} ({})",
                n.group,
                cron(at),
                s.time_zone,
                describe_next(at, &s.time_zone)
            ));
        }
    }
    if s.start_at.is_none()
        && f.schedules.contains_key("start")
        && schedules::delete(c, &n.group, "start").await?
    {
        did(format!("schedule {}/start removed", n.group));
    }
    ctx.set_phase_state(
        PHASE,
        json!({
            "function": function_arn,
            "stop": cron(s.stop_at),
            "start": s.start_at.map(cron),
            "time_zone": s.time_zone,
        }),
    )?;
    Ok(Outcome { changed })
}

pub(super) async fn destroy(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let (c, n) = (ctx.aws().await, names(&ctx.config.project));
    let f = discover(c, &ctx.config.project).await?;
    let mut done = Vec::new();
    if f.group {
        for name in f.schedules.keys() {
            schedules::delete(c, &n.group, name).await?;
        }
        if schedules::delete_group(c, &n.group).await? {
            done.push(format!("schedule group {} and its schedules", n.group));
        }
    }
    if f.function.is_some() && function::delete(c, &n.function).await? {
        done.push(format!("lambda function {}", n.function));
    }
    for (role, have) in [
        (&n.lambda_role, &f.lambda_role),
        (&n.scheduler_role, &f.scheduler_role),
    ] {
        if have.is_some() && iam::delete(c, role).await? {
            done.push(format!("iam role {role}"));
        }
    }
    for what in &done {
        ctx.ui.info(PHASE, &format!("deleted {what}"));
    }
    ctx.clear_phase_state(PHASE)?;
    Ok(Outcome {
        changed: done.len(),
    })
}
