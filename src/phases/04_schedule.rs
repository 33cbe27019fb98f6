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
//! each with one inline least-privilege policy), the function, and a
//! schedule group holding the schedules. Roles, function and group carry
//! eshop's tags and are only touched when they do.

use super::{Action, Change, Ctx, Info, Outcome, Phase, Status};
use crate::config::aws::Schedule as ScheduleCfg;
use crate::config::Target;
use crate::engines::aws::{self as aws, gone, until_settled, Call, Clients};
use aws_sdk_scheduler::types as st;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Schedule;

pub const PHASE: &str = "schedule";
const HANDLER: &str = include_str!("../../templates/lambda/stop_shop.py");
const LAMBDA_TRUST: &str = include_str!("../../templates/schedule/lambda-trust.json");
const LAMBDA_POLICY: &str = include_str!("../../templates/schedule/lambda-policy.json");
const SCHEDULER_TRUST: &str = include_str!("../../templates/schedule/scheduler-trust.json");
const SCHEDULER_POLICY: &str = include_str!("../../templates/schedule/scheduler-policy.json");
const RUNTIME: &str = "python3.12";

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

fn describe_next(at: (u8, u8), tz: &str) -> String {
    match next_run(at, tz, jiff::Timestamp::now()) {
        Ok(z) => format!(
            "next {} {tz} ({} UTC)",
            z.strftime("%Y-%m-%d %H:%M"),
            z.timestamp().strftime("%H:%M")
        ),
        Err(_) => String::new(),
    }
}

/// A deterministic zip (one stored file, fixed timestamp), so the same
/// handler always has the same CodeSha256 and re-applies are no-ops.
pub fn handler_zip() -> Vec<u8> {
    let name = b"stop_shop.py";
    let data = HANDLER.as_bytes();
    let crc = crc32fast::hash(data);
    let (size, nlen) = (data.len() as u32, name.len() as u16);
    // 1980-01-01 00:00 in DOS time: the zip epoch.
    let (time, date) = (0u16, (1u16 << 5) | 1);
    let mut z = Vec::with_capacity(data.len() + 128);
    let header = |z: &mut Vec<u8>, central: bool| {
        if central {
            z.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            z.extend_from_slice(&(0x0300u16 | 20).to_le_bytes()); // made by: unix
        } else {
            z.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        }
        z.extend_from_slice(&20u16.to_le_bytes()); // version needed
        z.extend_from_slice(&0u16.to_le_bytes()); // flags
        z.extend_from_slice(&0u16.to_le_bytes()); // stored
        z.extend_from_slice(&time.to_le_bytes());
        z.extend_from_slice(&date.to_le_bytes());
        z.extend_from_slice(&crc.to_le_bytes());
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&size.to_le_bytes());
        z.extend_from_slice(&nlen.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes()); // extra
        if central {
            z.extend_from_slice(&0u16.to_le_bytes()); // comment
            z.extend_from_slice(&0u16.to_le_bytes()); // disk
            z.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
            z.extend_from_slice(&((0o100644u32) << 16).to_le_bytes()); // -rw-r--r--
            z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
        }
        z.extend_from_slice(name);
    };
    header(&mut z, false);
    z.extend_from_slice(data);
    let cd_start = z.len() as u32;
    header(&mut z, true);
    let cd_len = z.len() as u32 - cd_start;
    z.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    z.extend_from_slice(&[0, 0, 0, 0]); // disk numbers
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&1u16.to_le_bytes());
    z.extend_from_slice(&cd_len.to_le_bytes());
    z.extend_from_slice(&cd_start.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn code_sha256(zip: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

fn render(t: &str, vars: &[(&'static str, &str)]) -> anyhow::Result<String> {
    let v: BTreeMap<&str, String> = vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    crate::render::render(t, &v, &[])
}

#[derive(Debug, Default)]
struct Found {
    /// role name → (arn, spec hash tag)
    roles: BTreeMap<String, (String, String)>,
    /// (arn, code sha256, config hash tag)
    function: Option<(String, String, String)>,
    group: bool,
    /// schedule name → (expression, time zone, state)
    schedules: BTreeMap<String, (String, String, String)>,
}

async fn discover(c: &Clients, project: &str) -> anyhow::Result<Found> {
    let n = names(project);
    let mut f = Found::default();
    let (r1, r2, func, group) = tokio::join!(
        c.iam.get_role().role_name(&n.lambda_role).send(),
        c.iam.get_role().role_name(&n.scheduler_role).send(),
        c.lambda.get_function().function_name(&n.function).send(),
        c.scheduler.get_schedule_group().name(&n.group).send(),
    );
    for (name, r) in [(&n.lambda_role, r1), (&n.scheduler_role, r2)] {
        match r {
            Ok(out) => {
                let Some(role) = out.role() else { continue };
                // GetRole may omit tags; ListRoleTags is authoritative.
                let t = c
                    .iam
                    .list_role_tags()
                    .role_name(name)
                    .send()
                    .await
                    .call(&format!("iam role {name}"), "ListRoleTags")?;
                let tags: Vec<(&str, &str)> =
                    t.tags().iter().map(|t| (t.key(), t.value())).collect();
                if !aws::owned(project, tags.iter().copied()) {
                    anyhow::bail!("iam role {name} exists but is not tagged as eshop project {project:?}'s: rename the project or remove it");
                }
                let spec = tags
                    .iter()
                    .find(|t| t.0 == "eshop/spec")
                    .map_or("", |t| t.1);
                f.roles
                    .insert(name.clone(), (role.arn().to_owned(), spec.to_owned()));
            }
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&format!("iam role {name}"), "GetRole"),
        }
    }
    match func {
        Ok(out) => {
            let tags = out.tags();
            let owned = tags.is_some_and(|t| {
                aws::owned(project, t.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            });
            if !owned {
                anyhow::bail!(
                    "lambda function {} exists but is not tagged as eshop project {project:?}'s",
                    n.function
                );
            }
            let conf = out.configuration();
            f.function = Some((
                conf.and_then(|c| c.function_arn())
                    .unwrap_or_default()
                    .to_owned(),
                conf.and_then(|c| c.code_sha256())
                    .unwrap_or_default()
                    .to_owned(),
                tags.and_then(|t| t.get("eshop/spec"))
                    .cloned()
                    .unwrap_or_default(),
            ));
        }
        Err(e) if gone(&e) => {}
        Err(e) => return Err(e).call(&format!("lambda function {}", n.function), "GetFunction"),
    }
    match group {
        Ok(out) => {
            let arn = out.arn().unwrap_or_default();
            let t = c
                .scheduler
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .call(
                    &format!("schedule group {}", n.group),
                    "ListTagsForResource",
                )?;
            let owned = aws::owned(project, t.tags().iter().map(|t| (t.key(), t.value())));
            if !owned {
                anyhow::bail!(
                    "schedule group {} exists but is not tagged as eshop project {project:?}'s",
                    n.group
                );
            }
            f.group = true;
            for name in ["stop", "start"] {
                match c
                    .scheduler
                    .get_schedule()
                    .group_name(&n.group)
                    .name(name)
                    .send()
                    .await
                {
                    Ok(s) => {
                        f.schedules.insert(
                            name.to_owned(),
                            (
                                s.schedule_expression().unwrap_or_default().to_owned(),
                                s.schedule_expression_timezone().unwrap_or("UTC").to_owned(),
                                s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                            ),
                        );
                    }
                    Err(e) if gone(&e) => {}
                    Err(e) => {
                        return Err(e).call(&format!("schedule {}/{name}", n.group), "GetSchedule")
                    }
                }
            }
        }
        Err(e) if gone(&e) => {}
        Err(e) => return Err(e).call(&format!("schedule group {}", n.group), "GetScheduleGroup"),
    }
    Ok(f)
}

/// What each schedule should be: name → (at, input).
fn wanted(s: &ScheduleCfg) -> Vec<(&'static str, (u8, u8))> {
    let mut v = vec![("stop", s.stop_at)];
    if let Some(at) = s.start_at {
        v.push(("start", at));
    }
    v
}

/// Hash of the inputs of a role, to tell when its documents changed.
fn role_spec(trust: &str, policy: &str) -> String {
    aws::short_hash(&[trust, policy])
}

fn function_spec(role_arn: &str, project: &str) -> String {
    aws::short_hash(&[role_arn, project, RUNTIME, "stop_shop.handler", "60"])
}

fn plan(ctx: &Ctx, f: &Found) -> Vec<Change> {
    let n = names(&ctx.config.project);
    let s = &ctx.config.schedule;
    let mut out = Vec::new();
    for role in [&n.lambda_role, &n.scheduler_role] {
        out.push(match f.roles.get(role) {
            None => Change::new(format!("iam role {role}"), Action::Create, "absent"),
            Some(_) => Change::new(
                format!("iam role {role}"),
                Action::NoOp,
                "present (documents checked on apply)",
            ),
        });
    }
    let zip = handler_zip();
    out.push(match &f.function {
        None => Change::new(
            format!("lambda function {}", n.function),
            Action::Create,
            "absent",
        ),
        Some((_, sha, _)) if *sha != code_sha256(&zip) => Change::new(
            format!("lambda function {}", n.function),
            Action::Update,
            "handler code changed",
        ),
        Some(_) => Change::new(
            format!("lambda function {}", n.function),
            Action::NoOp,
            "code unchanged",
        ),
    });
    out.push(if f.group {
        Change::new(
            format!("schedule group {}", n.group),
            Action::NoOp,
            "present",
        )
    } else {
        Change::new(
            format!("schedule group {}", n.group),
            Action::Create,
            "absent",
        )
    });
    for (name, at) in wanted(s) {
        let expr = cron(at);
        let res = format!("schedule {}/{name} {expr} {}", n.group, s.time_zone);
        let next = describe_next(at, &s.time_zone);
        out.push(match f.schedules.get(name) {
            None => Change::new(res, Action::Create, format!("absent; {next}")),
            Some((e, tz, state)) if *e != expr || *tz != s.time_zone || state != "ENABLED" => {
                Change::new(res, Action::Update, format!("was {e} {tz} {state}; {next}"))
            }
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
    out
}

async fn create_role(
    c: &Clients,
    project: &str,
    name: &str,
    trust: &str,
) -> anyhow::Result<String> {
    let what = format!("iam role {name}");
    let tags = aws::tags(project, PHASE, name)
        .into_iter()
        .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()?;
    let r = c
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .description(format!("eshop {project}: phase 4 schedule"))
        .set_tags(Some(tags))
        .send()
        .await;
    match r {
        Ok(r) => Ok(r.role().map(|r| r.arn().to_owned()).unwrap_or_default()),
        Err(e) => Err(e).call(&what, "CreateRole"),
    }
}

/// Brings a role's trust and inline policy to what is rendered. The spec
/// tag is written last, after the policy: a crash in between leaves a role
/// whose next run completes it.
async fn ensure_role(
    c: &Clients,
    name: &str,
    have: (&str, &str),
    trust: &str,
    policy_name: &str,
    policy: &str,
) -> anyhow::Result<bool> {
    let spec = role_spec(trust, policy);
    if have.1 == spec {
        return Ok(false);
    }
    let what = format!("iam role {name}");
    c.iam
        .update_assume_role_policy()
        .role_name(name)
        .policy_document(trust)
        .send()
        .await
        .call(&what, "UpdateAssumeRolePolicy")?;
    // PutRolePolicy overwrites: create and update are one call.
    c.iam
        .put_role_policy()
        .role_name(name)
        .policy_name(policy_name)
        .policy_document(policy)
        .send()
        .await
        .call(&what, "PutRolePolicy")?;
    c.iam
        .tag_role()
        .role_name(name)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("eshop/spec")
                .value(&spec)
                .build()?,
        )
        .send()
        .await
        .call(&what, "TagRole")?;
    Ok(true)
}

/// The role's ARN, creating it (trust only) when absent.
async fn role_arn(
    c: &Clients,
    project: &str,
    f: &Found,
    name: &str,
    trust: &str,
) -> anyhow::Result<(String, String)> {
    Ok(match f.roles.get(name) {
        Some((arn, spec)) => (arn.clone(), spec.clone()),
        None => (create_role(c, project, name, trust).await?, String::new()),
    })
}

/// `arn:aws:iam::123456789012:role/x` → the account id.
fn account_of(arn: &str) -> anyhow::Result<String> {
    arn.split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("cannot read the account id from {arn:?}"))
}

async fn apply(ctx: &Ctx) -> anyhow::Result<usize> {
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
    // ARN tells: create (trust only), then converge the policy.
    let (lambda_role_arn, spec) = role_arn(c, project, &f, &n.lambda_role, LAMBDA_TRUST).await?;
    let account = account_of(&lambda_role_arn)?;
    let region = c.region.as_str();
    let lambda_policy = render(
        LAMBDA_POLICY,
        &[
            ("region", region),
            ("account", &account),
            ("project", project),
            ("function", &n.function),
        ],
    )?;
    if ensure_role(
        c,
        &n.lambda_role,
        (&lambda_role_arn, &spec),
        LAMBDA_TRUST,
        "stop-shop",
        &lambda_policy,
    )
    .await?
    {
        did(format!(
            "iam role {} (least privilege: the shop's tagged instances and groups)",
            n.lambda_role
        ));
    }

    // --- function -----------------------------------------------------------
    let zip = handler_zip();
    let sha = code_sha256(&zip);
    let fspec = function_spec(&lambda_role_arn, project);
    let what = format!("lambda function {}", n.function);
    let env = aws_sdk_lambda::types::Environment::builder()
        .variables("ESHOP_PROJECT", project)
        .build();
    let function_arn = match &f.function {
        None => {
            let tags: std::collections::HashMap<String, String> =
                aws::tags(project, PHASE, "stop-shop")
                    .into_iter()
                    .chain([("eshop/spec".to_owned(), fspec.clone())])
                    .collect();
            // A role just created is not assumable by Lambda for a few
            // seconds (IAM is eventually consistent): retry that one error.
            let r = until_settled(
                Duration::from_secs(90),
                &["InvalidParameterValueException"],
                || async {
                    match c
                        .lambda
                        .create_function()
                        .function_name(&n.function)
                        .runtime(aws_sdk_lambda::types::Runtime::from(RUNTIME))
                        .handler("stop_shop.handler")
                        .role(&lambda_role_arn)
                        .timeout(60)
                        .memory_size(128)
                        .environment(env.clone())
                        .code(
                            aws_sdk_lambda::types::FunctionCode::builder()
                                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
                                .build(),
                        )
                        .set_tags(Some(tags.clone()))
                        .send()
                        .await
                    {
                        Ok(r) => Ok(r.function_arn().unwrap_or_default().to_owned()),
                        Err(e) if aws::code(&e) == Some("ResourceConflictException") => {
                            // Created by a run that crashed before recording it.
                            let g = c
                                .lambda
                                .get_function()
                                .function_name(&n.function)
                                .send()
                                .await;
                            Ok(g.ok()
                                .and_then(|g| {
                                    g.configuration()
                                        .and_then(|c| c.function_arn())
                                        .map(str::to_owned)
                                })
                                .unwrap_or_default())
                        }
                        Err(e) => Err((
                            aws::code(&e).map(str::to_owned),
                            Err::<(), _>(e).call(&what, "CreateFunction").unwrap_err(),
                        )),
                    }
                },
            )
            .await?;
            did(format!("lambda function {} ({RUNTIME})", n.function));
            r
        }
        Some((arn, have_sha, have_spec)) => {
            if *have_sha != sha {
                until_settled(
                    Duration::from_secs(90),
                    &["ResourceConflictException"],
                    || async {
                        c.lambda
                            .update_function_code()
                            .function_name(&n.function)
                            .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
                            .send()
                            .await
                            .map_err(|e| {
                                (
                                    aws::code(&e).map(str::to_owned),
                                    Err::<(), _>(e)
                                        .call(&what, "UpdateFunctionCode")
                                        .unwrap_err(),
                                )
                            })
                    },
                )
                .await?;
                did(format!("lambda function {}: new handler code", n.function));
            }
            if *have_spec != fspec {
                until_settled(
                    Duration::from_secs(90),
                    &["ResourceConflictException"],
                    || async {
                        c.lambda
                            .update_function_configuration()
                            .function_name(&n.function)
                            .runtime(aws_sdk_lambda::types::Runtime::from(RUNTIME))
                            .handler("stop_shop.handler")
                            .role(&lambda_role_arn)
                            .timeout(60)
                            .environment(env.clone())
                            .send()
                            .await
                            .map_err(|e| {
                                (
                                    aws::code(&e).map(str::to_owned),
                                    Err::<(), _>(e)
                                        .call(&what, "UpdateFunctionConfiguration")
                                        .unwrap_err(),
                                )
                            })
                    },
                )
                .await?;
                c.lambda
                    .tag_resource()
                    .resource(arn)
                    .tags("eshop/spec", &fspec)
                    .send()
                    .await
                    .call(&what, "TagResource")?;
                did(format!("lambda function {}: configuration", n.function));
            }
            arn.clone()
        }
    };

    // --- the scheduler's role, group and schedules ---------------------------
    let trust = render(SCHEDULER_TRUST, &[("account", &account)])?;
    let policy = render(SCHEDULER_POLICY, &[("function_arn", &function_arn)])?;
    let (sched_role_arn, spec) = role_arn(c, project, &f, &n.scheduler_role, &trust).await?;
    if ensure_role(
        c,
        &n.scheduler_role,
        (&sched_role_arn, &spec),
        &trust,
        "invoke-stop-shop",
        &policy,
    )
    .await?
    {
        did(format!(
            "iam role {} (may invoke only {})",
            n.scheduler_role, n.function
        ));
    }
    if !f.group {
        let tags = aws::tags(project, PHASE, "schedules")
            .into_iter()
            .map(|(k, v)| st::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()?;
        match c
            .scheduler
            .create_schedule_group()
            .name(&n.group)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => did(format!("schedule group {}", n.group)),
            Err(e) if aws::code(&e) == Some("ConflictException") => {}
            Err(e) => {
                return Err(e).call(
                    &format!("schedule group {}", n.group),
                    "CreateScheduleGroup",
                )
            }
        }
    }
    for (name, at) in wanted(s) {
        let expr = cron(at);
        let ok = f
            .schedules
            .get(name)
            .is_some_and(|(e, tz, st)| *e == expr && *tz == s.time_zone && st == "ENABLED");
        if ok {
            continue;
        }
        let target = st::Target::builder()
            .arn(&function_arn)
            .role_arn(&sched_role_arn)
            .input(json!({"action": name}).to_string())
            .retry_policy(st::RetryPolicy::builder().maximum_retry_attempts(3).build())
            .build()?;
        let window = st::FlexibleTimeWindow::builder()
            .mode(st::FlexibleTimeWindowMode::Off)
            .build()?;
        let what = format!("schedule {}/{name}", n.group);
        let description = format!(
            "eshop {project}: {name} the shop's EC2 capacity daily at {:02}:{:02} {}",
            at.0, at.1, s.time_zone
        );
        if f.schedules.contains_key(name) {
            c.scheduler
                .update_schedule()
                .group_name(&n.group)
                .name(name)
                .schedule_expression(&expr)
                .schedule_expression_timezone(&s.time_zone)
                .state(st::ScheduleState::Enabled)
                .description(description)
                .flexible_time_window(window)
                .target(target)
                .send()
                .await
                .call(&what, "UpdateSchedule")?;
        } else {
            match c
                .scheduler
                .create_schedule()
                .group_name(&n.group)
                .name(name)
                .schedule_expression(&expr)
                .schedule_expression_timezone(&s.time_zone)
                .state(st::ScheduleState::Enabled)
                .description(description)
                .flexible_time_window(window)
                .target(target)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if aws::code(&e) == Some("ConflictException") => {}
                Err(e) => return Err(e).call(&what, "CreateSchedule"),
            }
        }
        did(format!(
            "{what}: {expr} in {} ({})",
            s.time_zone,
            describe_next(at, &s.time_zone)
        ));
    }
    if s.start_at.is_none() && f.schedules.contains_key("start") {
        match c
            .scheduler
            .delete_schedule()
            .group_name(&n.group)
            .name("start")
            .send()
            .await
        {
            Ok(_) => did(format!("schedule {}/start removed", n.group)),
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&format!("schedule {}/start", n.group), "DeleteSchedule"),
        }
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
    Ok(changed)
}

async fn delete_role(c: &Clients, name: &str) -> anyhow::Result<()> {
    let what = format!("iam role {name}");
    let p = match c.iam.list_role_policies().role_name(name).send().await {
        Ok(p) => p,
        Err(e) if gone(&e) => return Ok(()),
        Err(e) => return Err(e).call(&what, "ListRolePolicies"),
    };
    for pol in p.policy_names() {
        match c
            .iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(pol)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(e).call(&what, "DeleteRolePolicy"),
        }
    }
    match c.iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e).call(&what, "DeleteRole"),
    }
}

async fn destroy(ctx: &Ctx) -> anyhow::Result<usize> {
    let project = ctx.config.project.as_str();
    let c = ctx.aws().await;
    let n = names(project);
    let f = discover(c, project).await?;
    let mut removed = 0;
    // Schedules first, so nothing invokes a function that is going away.
    if f.group {
        for name in f.schedules.keys() {
            match c
                .scheduler
                .delete_schedule()
                .group_name(&n.group)
                .name(name)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if gone(&e) => {}
                Err(e) => {
                    return Err(e).call(&format!("schedule {}/{name}", n.group), "DeleteSchedule")
                }
            }
        }
        match c
            .scheduler
            .delete_schedule_group()
            .name(&n.group)
            .send()
            .await
        {
            Ok(_) => {
                removed += 1;
                ctx.ui.info(
                    PHASE,
                    &format!("deleted schedule group {} and its schedules", n.group),
                );
            }
            Err(e) if gone(&e) => {}
            Err(e) => {
                return Err(e).call(
                    &format!("schedule group {}", n.group),
                    "DeleteScheduleGroup",
                )
            }
        }
    }
    if f.function.is_some() {
        match c
            .lambda
            .delete_function()
            .function_name(&n.function)
            .send()
            .await
        {
            Ok(_) => {
                removed += 1;
                ctx.ui
                    .info(PHASE, &format!("deleted lambda function {}", n.function));
            }
            Err(e) if gone(&e) => {}
            Err(e) => {
                return Err(e).call(&format!("lambda function {}", n.function), "DeleteFunction")
            }
        }
    }
    for role in f.roles.keys() {
        delete_role(c, role).await?;
        removed += 1;
        ctx.ui.info(PHASE, &format!("deleted iam role {role}"));
    }
    ctx.clear_phase_state(PHASE)?;
    Ok(removed)
}

impl Phase for Schedule {
    const INFO: Info = Info {
        number: 4,
        name: PHASE,
        about: "Lambda that stops the shop's instances daily at 18:00 in the configured time zone, its IAM roles and schedule",
        targets: &[Target::Aws],
    };

    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        let f = discover(ctx.aws().await, &ctx.config.project).await?;
        Ok(plan(ctx, &f))
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: apply(ctx).await?,
        })
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        Ok(Outcome {
            changed: destroy(ctx).await?,
        })
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        let f = discover(ctx.aws().await, &ctx.config.project).await?;
        let s = &ctx.config.schedule;
        let mut out = vec![Status {
            resource: "lambda function".into(),
            state: f.function.as_ref().map_or("absent".into(), |f| f.0.clone()),
            healthy: f.function.is_some(),
        }];
        for (name, at) in wanted(s) {
            out.push(Status {
                resource: format!("schedule {name}"),
                state: f
                    .schedules
                    .get(name)
                    .map_or("absent".into(), |(e, tz, st)| {
                        format!("{st} {e} {tz}; {}", describe_next(at, tz))
                    }),
                healthy: f.schedules.get(name).is_some_and(|x| x.2 == "ENABLED"),
            });
        }
        Ok(out)
    }
    fn render(&self, ctx: &Ctx, out: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
        // Account and function ARN are only known on AWS; the review copy
        // shows where they go.
        let project = ctx.config.project.as_str();
        let n = names(project);
        let region = ctx.config.aws.region.as_str();
        let files = [
            ("stop_shop.py", HANDLER.to_owned()),
            ("lambda-trust.json", LAMBDA_TRUST.to_owned()),
            (
                "lambda-policy.json",
                render(
                    LAMBDA_POLICY,
                    &[
                        ("region", region),
                        ("account", "ACCOUNT"),
                        ("project", project),
                        ("function", &n.function),
                    ],
                )?,
            ),
            (
                "scheduler-trust.json",
                render(SCHEDULER_TRUST, &[("account", "ACCOUNT")])?,
            ),
            (
                "scheduler-policy.json",
                render(SCHEDULER_POLICY, &[("function_arn", "FUNCTION_ARN")])?,
            ),
        ];
        std::fs::create_dir_all(out)?;
        let mut written = Vec::new();
        for (name, body) in files {
            let p = out.join(name);
            std::fs::write(&p, body)?;
            written.push(p);
        }
        Ok(written)
    }
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

    #[test]
    fn the_handler_zip_is_deterministic() {
        assert_eq!(handler_zip(), handler_zip());
        assert_eq!(&handler_zip()[..4], b"PK\x03\x04");
    }

    #[test]
    fn the_account_comes_from_the_role_arn() {
        assert_eq!(
            account_of("arn:aws:iam::123456789012:role/x").unwrap(),
            "123456789012"
        );
        assert!(account_of("nonsense").is_err());
    }
}
