//! The two IAM roles: the function's (may stop and resize only the
//! shop's tagged instances and groups) and the scheduler's (may invoke
//! only the function). Each has one inline policy; the hash of its trust
//! and policy documents is the role's `eshop/spec` tag, so plan and apply
//! see alike when a document changed.
//!
//! The documents are templates/schedule/*.json, parsed first and filled
//! in as data: a value lands inside the JSON string that names it and
//! can never change the document's shape.

use super::{names, Found, PHASE};
use crate::engines::aws::{self as aws, Call, Clients};
use crate::labels;
use crate::util::short_hash;
use serde_json::Value;
use std::path::{Path, PathBuf};

const LAMBDA_TRUST: &str = include_str!("../../../templates/schedule/lambda-trust.json");
const LAMBDA_POLICY: &str = include_str!("../../../templates/schedule/lambda-policy.json");
const SCHEDULER_TRUST: &str = include_str!("../../../templates/schedule/scheduler-trust.json");
const SCHEDULER_POLICY: &str = include_str!("../../../templates/schedule/scheduler-policy.json");
/// The inline policies' names.
pub(super) const LAMBDA_POLICY_NAME: &str = "stop-shop";
pub(super) const SCHEDULER_POLICY_NAME: &str = "invoke-stop-shop";

#[derive(Debug, Clone)]
pub(super) struct Role {
    pub arn: String,
    /// The `eshop/spec` tag: the hash of the documents last applied.
    pub spec: String,
}

/// A role's trust and inline policy, rendered.
pub(super) struct Documents {
    pub trust: String,
    pub policy: String,
}

impl Documents {
    pub fn spec(&self) -> String {
        short_hash(&[&self.trust, &self.policy])
    }
}

/// Fills `{{name}}` inside the string values of the JSON `template`.
fn fill(file: &str, template: &str, vars: &[(&str, String)]) -> anyhow::Result<String> {
    fn walk(v: &mut Value, vars: &[(&str, String)]) -> anyhow::Result<()> {
        match v {
            Value::String(s) => *s = crate::render::render_string_value(s, vars)?,
            Value::Array(a) => a.iter_mut().try_for_each(|x| walk(x, vars))?,
            Value::Object(o) => o.values_mut().try_for_each(|x| walk(x, vars))?,
            _ => {}
        }
        Ok(())
    }
    let mut doc: Value = serde_json::from_str(template)
        .map_err(|e| anyhow::anyhow!("templates/schedule/{file}: {e}"))?;
    walk(&mut doc, vars).map_err(|e| anyhow::anyhow!("templates/schedule/{file}: {e}"))?;
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// The function role's trust: Lambda may assume it (no account in it, so
/// it can be had before the role exists).
pub(super) fn lambda_trust() -> anyhow::Result<String> {
    fill("lambda-trust.json", LAMBDA_TRUST, &[])
}

/// The function's role: assumable by Lambda, allowed to stop and resize
/// the project's tagged instances and groups and to write its own logs.
pub(super) fn lambda_documents(
    region: &str,
    account: &str,
    project: &str,
) -> anyhow::Result<Documents> {
    let n = names(project);
    let vars = [
        ("region", region.to_owned()),
        ("account", account.to_owned()),
        ("project", project.to_owned()),
        ("function", n.function),
    ];
    Ok(Documents {
        trust: lambda_trust()?,
        policy: fill("lambda-policy.json", LAMBDA_POLICY, &vars)?,
    })
}

/// The scheduler's role: assumable by EventBridge Scheduler of this
/// account, allowed to invoke only the function.
pub(super) fn scheduler_documents(account: &str, function_arn: &str) -> anyhow::Result<Documents> {
    let vars = [
        ("account", account.to_owned()),
        ("function_arn", function_arn.to_owned()),
    ];
    Ok(Documents {
        trust: fill("scheduler-trust.json", SCHEDULER_TRUST, &vars)?,
        policy: fill("scheduler-policy.json", SCHEDULER_POLICY, &vars)?,
    })
}

/// `arn:aws:iam::123456789012:role/x` → the account id.
pub(super) fn account_of(arn: &str) -> anyhow::Result<String> {
    arn.split(':')
        .nth(4)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("cannot read the account id from {arn:?}"))
}

/// The function's ARN before it exists, in the partition of `role_arn`
/// (for plan: what the scheduler's policy will name).
pub(super) fn function_arn(role_arn: &str, region: &str, function: &str) -> anyhow::Result<String> {
    let partition = role_arn.split(':').nth(1).unwrap_or("aws");
    let account = account_of(role_arn)?;
    Ok(format!(
        "arn:{partition}:lambda:{region}:{account}:function:{function}"
    ))
}

/// The role `name` if it exists; an untagged one stops everything.
pub(super) async fn read(c: &Clients, project: &str, name: &str) -> anyhow::Result<Option<Role>> {
    let what = format!("iam role {name}");
    let r = c.iam.get_role().role_name(name).send();
    let Some(role) = r.await.call_or_gone(&what, "GetRole")? else {
        return Ok(None);
    };
    let Some(role) = role.role() else {
        return Ok(None);
    };
    // GetRole may omit tags; ListRoleTags is authoritative.
    let t = c.iam.list_role_tags().role_name(name).send();
    let t = t.await.call(&what, "ListRoleTags")?;
    let tags: Vec<(&str, &str)> = t.tags().iter().map(|t| (t.key(), t.value())).collect();
    if !aws::owned(project, tags.iter().copied()) {
        anyhow::bail!("{what} exists but is not tagged as eshop project {project:?}'s: rename the project or remove it");
    }
    let spec = tags
        .iter()
        .find(|t| t.0 == labels::SPEC)
        .map_or("", |t| t.1);
    Ok(Some(Role {
        arn: role.arn().to_owned(),
        spec: spec.to_owned(),
    }))
}

/// Creates the role `name` with `trust` when absent, then brings its
/// trust and inline policy to `docs(role)` (the lambda role's policy names
/// the account, which only the role's own ARN tells). Returns the role
/// and whether anything changed. The spec tag is written last, after the
/// policy: a crash in between leaves a role whose next run completes it.
pub(super) async fn ensure(
    c: &Clients,
    project: &str,
    (name, have): (&str, Option<&Role>),
    trust: &str,
    policy_name: &str,
    docs: impl FnOnce(&Role) -> anyhow::Result<Documents>,
) -> anyhow::Result<(Role, bool)> {
    let role = match have {
        Some(r) => r.clone(),
        None => create(c, project, name, trust).await?,
    };
    let docs = docs(&role)?;
    let spec = docs.spec();
    if role.spec == spec {
        return Ok((role, false));
    }
    let what = format!("iam role {name}");
    c.iam
        .update_assume_role_policy()
        .role_name(name)
        .policy_document(&docs.trust)
        .send()
        .await
        .call(&what, "UpdateAssumeRolePolicy")?;
    // PutRolePolicy overwrites: create and update are one call.
    c.iam
        .put_role_policy()
        .role_name(name)
        .policy_name(policy_name)
        .policy_document(&docs.policy)
        .send()
        .await
        .call(&what, "PutRolePolicy")?;
    let tag = aws_sdk_iam::types::Tag::builder()
        .key(labels::SPEC)
        .value(&spec)
        .build()?;
    let t = c.iam.tag_role().role_name(name).tags(tag).send().await;
    t.call(&what, "TagRole")?;
    Ok((Role { spec, ..role }, true))
}

async fn create(c: &Clients, project: &str, name: &str, trust: &str) -> anyhow::Result<Role> {
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
        .await
        .call(&format!("iam role {name}"), "CreateRole")?;
    Ok(Role {
        arn: r.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
        spec: String::new(),
    })
}

/// Removes the role `name` and its inline policies; true when it existed.
pub(super) async fn delete(c: &Clients, name: &str) -> anyhow::Result<bool> {
    let what = format!("iam role {name}");
    let p = c.iam.list_role_policies().role_name(name).send();
    let Some(p) = p.await.call_or_gone(&what, "ListRolePolicies")? else {
        return Ok(false);
    };
    for pol in p.policy_names() {
        let d = c.iam.delete_role_policy().role_name(name).policy_name(pol);
        d.send().await.call_or_gone(&what, "DeleteRolePolicy")?;
    }
    let d = c.iam.delete_role().role_name(name).send();
    Ok(d.await.call_or_gone(&what, "DeleteRole")?.is_some())
}

/// The specs the two roles should carry, for plan; `None` while the
/// lambda role (whose ARN tells the account) does not exist yet.
pub(super) fn wanted_specs(
    project: &str,
    region: &str,
    f: &Found,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let n = names(project);
    let Some(lambda) = &f.lambda_role else {
        return Ok((None, None));
    };
    let account = account_of(&lambda.arn)?;
    let lambda_spec = lambda_documents(region, &account, project)?.spec();
    let arn = match &f.function {
        Some(func) => func.arn.clone(),
        None => function_arn(&lambda.arn, region, &n.function)?,
    };
    let scheduler_spec = scheduler_documents(&account, &arn)?.spec();
    Ok((Some(lambda_spec), Some(scheduler_spec)))
}

/// `eshop render schedule`: the handler and the four documents. Account
/// and function ARN are only known on AWS; the review copy shows where
/// they go.
pub(super) fn render(project: &str, region: &str, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let lambda = lambda_documents(region, "ACCOUNT", project)?;
    let scheduler = scheduler_documents("ACCOUNT", "FUNCTION_ARN")?;
    let files = [
        ("stop_shop.py", super::zip::HANDLER.to_owned()),
        ("lambda-trust.json", lambda.trust),
        ("lambda-policy.json", lambda.policy),
        ("scheduler-trust.json", scheduler.trust),
        ("scheduler-policy.json", scheduler.policy),
    ];
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, body) in files {
        let p = out.join(name);
        std::fs::write(&p, body).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_role_arn() {
        assert_eq!(
            account_of("arn:aws:iam::123456789012:role/x").unwrap(),
            "123456789012"
        );
        assert!(account_of("nonsense").is_err());
        assert_eq!(
            function_arn("arn:aws-cn:iam::123456789012:role/x", "cn-north-1", "f").unwrap(),
            "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
        );
    }

    #[test]
    fn values_fill_their_strings_and_cannot_change_the_documents_shape() {
        let d = lambda_documents("eu-west-1", "123456789012", "shop").unwrap();
        let policy: Value = serde_json::from_str(&d.policy).unwrap();
        assert_eq!(
            policy["Statement"][3]["Resource"],
            "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/eshop-shop-stop-shop:*"
        );
        assert_eq!(
            policy["Statement"][1]["Condition"]["StringEquals"]["aws:ResourceTag/eshop/project"],
            "shop"
        );
        // A value with JSON in it stays one string value.
        let evil = r#"x", "Effect": "Deny"#;
        let s = scheduler_documents("1", evil).unwrap();
        let doc: Value = serde_json::from_str(&s.policy).unwrap();
        assert_eq!(doc["Statement"][0]["Resource"], evil);
        assert_eq!(doc["Statement"][0]["Effect"], "Allow");
        // Another account or function is another spec.
        let other = scheduler_documents("1", "arn:other").unwrap();
        assert_ne!(s.spec(), other.spec());
    }
}
