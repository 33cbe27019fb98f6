//! The schedule group and its schedules: `stop` every day at
//! `schedule.stop_at`, and `start` at `schedule.start_at` when set, both
//! in `schedule.time_zone`, both invoking the function with the action.

use crate::config::aws::Schedule as ScheduleCfg;
use crate::engines::aws::{self as aws, Call, Clients};
use aws_sdk_scheduler::types as st;
use serde_json::json;
use std::collections::BTreeMap;

/// `cron(M H * * ? *)`: every day, in the schedule's own time zone.
pub fn cron((h, m): (u8, u8)) -> String {
    format!("cron({m} {h} * * ? *)")
}

/// The next time `at` happens in `tz` after `now`, for plans and status:
/// shows trainers that 18:00 Paris is 17:00 UTC in winter, 16:00 in summer.
pub fn next_run(at: (u8, u8), tz: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Zoned> {
    let tz = jiff::tz::TimeZone::get(tz)?;
    let local = now.to_zoned(tz.clone());
    let today = local
        .date()
        .at(i8::try_from(at.0)?, i8::try_from(at.1)?, 0, 0)
        .to_zoned(tz)?;
    Ok(if today.timestamp() > now {
        today
    } else {
        today.tomorrow()?
    })
}

pub(super) fn describe_next(at: (u8, u8), tz: &str) -> String {
    match next_run(at, tz, jiff::Timestamp::now()) {
        Ok(z) => format!(
            "next {} {tz} ({} UTC)",
            z.strftime("%Y-%m-%d %H:%M"),
            z.timestamp().strftime("%H:%M")
        ),
        Err(_) => String::new(),
    }
}

/// What each schedule should be: name → time of day.
pub(super) fn wanted(s: &ScheduleCfg) -> Vec<(&'static str, (u8, u8))> {
    let mut v = vec![("stop", s.stop_at)];
    if let Some(at) = s.start_at {
        v.push(("start", at));
    }
    v
}

/// A schedule as EventBridge Scheduler reports it.
#[derive(Debug, Clone)]
pub(super) struct Sched {
    pub expression: String,
    pub time_zone: String,
    pub state: String,
}

impl Sched {
    pub fn as_configured(&self, expression: &str, time_zone: &str) -> bool {
        self.expression == expression && self.time_zone == time_zone && self.state == "ENABLED"
    }
}

/// Whether the group exists (and is this project's), and its schedules.
pub(super) async fn read(
    c: &Clients,
    project: &str,
    group: &str,
) -> anyhow::Result<(bool, BTreeMap<String, Sched>)> {
    let what = format!("schedule group {group}");
    let g = c.scheduler.get_schedule_group().name(group).send();
    let Some(g) = g.await.call_or_gone(&what, "GetScheduleGroup")? else {
        return Ok((false, BTreeMap::new()));
    };
    let arn = g.arn().unwrap_or_default();
    let t = c
        .scheduler
        .list_tags_for_resource()
        .resource_arn(arn)
        .send();
    let t = t.await.call(&what, "ListTagsForResource")?;
    if !aws::owned(project, t.tags().iter().map(|t| (t.key(), t.value()))) {
        anyhow::bail!("{what} exists but is not tagged as eshop project {project:?}'s");
    }
    let mut out = BTreeMap::new();
    for name in ["stop", "start"] {
        let s = c
            .scheduler
            .get_schedule()
            .group_name(group)
            .name(name)
            .send();
        let s = s
            .await
            .call_or_gone(&format!("schedule {group}/{name}"), "GetSchedule")?;
        if let Some(s) = s {
            let sched = Sched {
                expression: s.schedule_expression().unwrap_or_default().to_owned(),
                time_zone: s.schedule_expression_timezone().unwrap_or("UTC").to_owned(),
                state: s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            };
            out.insert(name.to_owned(), sched);
        }
    }
    Ok((true, out))
}

/// Creates the group; true when this call created it.
pub(super) async fn create_group(c: &Clients, project: &str, group: &str) -> anyhow::Result<bool> {
    let tags = aws::tags(project, super::PHASE, "schedules")
        .into_iter()
        .map(|(k, v)| st::Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()?;
    let r = c
        .scheduler
        .create_schedule_group()
        .name(group)
        .set_tags(Some(tags))
        .send()
        .await;
    match r {
        Ok(_) => Ok(true),
        // Created by a run that crashed before it could say so.
        Err(e) if aws::code(&e) == Some("ConflictException") => Ok(false),
        Err(e) => Err(e).call(&format!("schedule group {group}"), "CreateScheduleGroup"),
    }
}

/// Who a schedule invokes, and as whom.
pub(super) struct Invoke<'a> {
    pub function_arn: &'a str,
    pub role_arn: &'a str,
}

/// Creates or updates the schedule `name` to fire at `at`; false when it
/// already did as configured.
pub(super) async fn ensure(
    c: &Clients,
    s: &ScheduleCfg,
    project: &str,
    group: &str,
    (name, at): (&str, (u8, u8)),
    have: Option<&Sched>,
    invoke: &Invoke<'_>,
) -> anyhow::Result<bool> {
    let expr = cron(at);
    if have.is_some_and(|h| h.as_configured(&expr, &s.time_zone)) {
        return Ok(false);
    }
    let target = st::Target::builder()
        .arn(invoke.function_arn)
        .role_arn(invoke.role_arn)
        .input(json!({ "action": name }).to_string())
        .retry_policy(st::RetryPolicy::builder().maximum_retry_attempts(3).build())
        .build()?;
    let window = st::FlexibleTimeWindow::builder()
        .mode(st::FlexibleTimeWindowMode::Off)
        .build()?;
    let what = format!("schedule {group}/{name}");
    let description = format!(
        "eshop {project}: {name} the shop's EC2 capacity daily at {:02}:{:02} {}",
        at.0, at.1, s.time_zone
    );
    // Create and update take the same settings; the SDK gives them
    // different builder types, hence the macro.
    macro_rules! with_settings {
        ($call:expr) => {
            $call
                .group_name(group)
                .name(name)
                .schedule_expression(&expr)
                .schedule_expression_timezone(&s.time_zone)
                .state(st::ScheduleState::Enabled)
                .description(description)
                .flexible_time_window(window)
                .target(target)
                .send()
                .await
        };
    }
    if have.is_some() {
        with_settings!(c.scheduler.update_schedule()).call(&what, "UpdateSchedule")?;
        return Ok(true);
    }
    match with_settings!(c.scheduler.create_schedule()) {
        Ok(_) => Ok(true),
        Err(e) if aws::code(&e) == Some("ConflictException") => Ok(true),
        Err(e) => Err(e).call(&what, "CreateSchedule"),
    }
}

/// Deletes the schedule `name`; true when it existed.
pub(super) async fn delete(c: &Clients, group: &str, name: &str) -> anyhow::Result<bool> {
    let r = c.scheduler.delete_schedule().group_name(group).name(name);
    let r = r.send().await;
    r.deleted(&format!("schedule {group}/{name}"), "DeleteSchedule")
}

/// Deletes the group (and with it any schedule left); true when it existed.
pub(super) async fn delete_group(c: &Clients, group: &str) -> anyhow::Result<bool> {
    let r = c.scheduler.delete_schedule_group().name(group).send().await;
    r.deleted(&format!("schedule group {group}"), "DeleteScheduleGroup")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_hundred_paris_follows_daylight_saving() {
        let winter: jiff::Timestamp = "2026-01-15T10:00:00Z".parse().unwrap();
        let summer: jiff::Timestamp = "2026-07-15T10:00:00Z".parse().unwrap();
        let w = next_run((18, 0), "Europe/Paris", winter).unwrap();
        let s = next_run((18, 0), "Europe/Paris", summer).unwrap();
        assert_eq!(w.timestamp().to_string(), "2026-01-15T17:00:00Z");
        assert_eq!(s.timestamp().to_string(), "2026-07-15T16:00:00Z");
        // After today's run, the next is tomorrow.
        let late: jiff::Timestamp = "2026-01-15T18:30:00Z".parse().unwrap();
        let t = next_run((18, 0), "Europe/Paris", late).unwrap();
        assert_eq!(t.timestamp().to_string(), "2026-01-16T17:00:00Z");
        // The spring-forward day is 23 hours long; 18:00 still lands right.
        let spring: jiff::Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
        let sp = next_run((18, 0), "Europe/Paris", spring).unwrap();
        assert_eq!(sp.timestamp().to_string(), "2026-03-29T16:00:00Z");
        assert_eq!(cron((18, 0)), "cron(0 18 * * ? *)");
        assert_eq!(cron((7, 30)), "cron(30 7 * * ? *)");
    }
}
