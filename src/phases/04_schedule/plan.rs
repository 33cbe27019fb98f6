//! Plan and status, both read from one discovery. Every comparison here
//! is the one apply makes, so plan shows exactly what apply would change.

use super::function::Settings;
use super::schedules::{cron, describe_next, wanted};
use super::{discover, iam, names, Found};
use crate::phases::{Action, Change, Ctx, Status};

pub(super) async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let f = discover(ctx.aws().await, &ctx.config.project).await?;
    changes(ctx, &f)
}

/// Create when absent, update when there are reasons, else unchanged.
fn line(res: String, have: bool, why: Vec<String>, same: &str) -> Change {
    match (have, why.is_empty()) {
        (false, _) => Change::new(res, Action::Create, "absent"),
        (true, false) => Change::new(res, Action::Update, why.join("; ")),
        (true, true) => Change::new(res, Action::NoOp, same),
    }
}

fn changes(ctx: &Ctx, f: &Found) -> anyhow::Result<Vec<Change>> {
    let project = ctx.config.project.as_str();
    let n = names(project);
    let s = &ctx.config.schedule;
    let (lambda_spec, scheduler_spec) = iam::wanted_specs(project, &ctx.config.aws.region, f)?;
    let mut out = Vec::new();
    for (name, have, want) in [
        (&n.lambda_role, &f.lambda_role, lambda_spec),
        (&n.scheduler_role, &f.scheduler_role, scheduler_spec),
    ] {
        let why = have
            .as_ref()
            .filter(|r| want.as_ref().is_some_and(|w| *w != r.spec))
            .map(|_| "trust or policy document changed".to_owned());
        out.push(line(
            format!("iam role {name}"),
            have.is_some(),
            why.into_iter().collect(),
            "documents as rendered",
        ));
    }
    let why = match (&f.function, &f.lambda_role) {
        (Some(func), Some(role)) => func.drift(&Settings::wanted(project, &role.arn)),
        _ => Vec::new(),
    };
    out.push(line(
        format!("lambda function {}", n.function),
        f.function.is_some(),
        why,
        "code and configuration as built",
    ));
    out.push(line(
        format!("schedule group {}", n.group),
        f.group,
        Vec::new(),
        "present",
    ));
    for (name, at) in wanted(s) {
        let expr = cron(at);
        let res = format!("schedule {}/{name} {expr} {}", n.group, s.time_zone);
        let next = describe_next(at, &s.time_zone);
        out.push(match f.schedules.get(name) {
            None => Change::new(res, Action::Create, format!("absent; {next}")),
            Some(h) if !h.as_configured(&expr, &s.time_zone) => Change::new(
                res,
                Action::Update,
                format!("was {} {} {}; {next}", h.expression, h.time_zone, h.state),
            ),
            Some(_) => Change::new(res, Action::NoOp, next),
        });
    }
    if s.start_at.is_none() && f.schedules.contains_key("start") {
        out.push(Change::new(
            format!("schedule {}/start", n.group),
            Action::Delete,
            "schedule.start_at is no longer set",
        ));
    }
    Ok(out)
}

pub(super) async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let f = discover(ctx.aws().await, &ctx.config.project).await?;
    let s = &ctx.config.schedule;
    let mut out = vec![Status {
        resource: "lambda function".into(),
        state: f
            .function
            .as_ref()
            .map_or("absent".into(), |f| f.arn.clone()),
        healthy: f.function.is_some(),
    }];
    for (name, at) in wanted(s) {
        let have = f.schedules.get(name);
        out.push(Status {
            resource: format!("schedule {name}"),
            state: have.map_or("absent".into(), |h| {
                format!(
                    "{} {} {}; {}",
                    h.state,
                    h.expression,
                    h.time_zone,
                    describe_next(at, &h.time_zone)
                )
            }),
            healthy: have.is_some_and(|h| h.state == "ENABLED"),
        });
    }
    Ok(out)
}
