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

    // The lambda role's policy names the account, which the role's own
    // ARN tells: create (with the trust, which names no account), then
    // converge the policy.
    let docs = iam::lambda_documents(&c.region, "ACCOUNT", project)?;
    let role = iam::arn_or_create(
        c,
        project,
        f.lambda_role.as_ref(),
        &n.lambda_role,
        &docs.trust,
    )
    .await?;
    let account = iam::account_of(&role.arn)?;
    let docs = iam::lambda_documents(&c.region, &account, project)?;
    if iam::converge(c, &n.lambda_role, &role, LAMBDA_POLICY_NAME, &docs).await? {
        did(format!(
            "iam role {} (least privilege: the shop's tagged instances and groups)",
            n.lambda_role
        ));
    }

    let want = Settings::wanted(project, &role.arn);
    let (function_arn, lines) =
        function::ensure(c, project, &n.function, &want, f.function.as_ref()).await?;
    lines.into_iter().for_each(&mut did);

    let docs = iam::scheduler_documents(&account, &function_arn)?;
    let sched_role = iam::arn_or_create(
        c,
        project,
        f.scheduler_role.as_ref(),
        &n.scheduler_role,
        &docs.trust,
    )
    .await?;
    if iam::converge(
        c,
        &n.scheduler_role,
        &sched_role,
        SCHEDULER_POLICY_NAME,
        &docs,
    )
    .await?
    {
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
    let project = ctx.config.project.as_str();
    let c = ctx.aws().await;
    let n = names(project);
    let f = discover(c, project).await?;
    let mut removed = 0;
    let mut did = |what: String| {
        removed += 1;
        ctx.ui.info(PHASE, &what);
    };
    if f.group {
        for name in f.schedules.keys() {
            schedules::delete(c, &n.group, name).await?;
        }
        if schedules::delete_group(c, &n.group).await? {
            did(format!(
                "deleted schedule group {} and its schedules",
                n.group
            ));
        }
    }
    if f.function.is_some() && function::delete(c, &n.function).await? {
        did(format!("deleted lambda function {}", n.function));
    }
    for (role, have) in [
        (&n.lambda_role, &f.lambda_role),
        (&n.scheduler_role, &f.scheduler_role),
    ] {
        if have.is_some() && iam::delete(c, role).await? {
            did(format!("deleted iam role {role}"));
        }
    }
    ctx.clear_phase_state(PHASE)?;
    Ok(Outcome { changed: removed })
}
