//! The Lambda function. Its code is compared by CodeSha256 and its
//! configuration field by field with what Lambda reports, so a hand edit
//! (more memory, another handler, a changed variable) shows in the plan
//! and apply puts it back.

use super::zip::{code_sha256, handler_zip};
use super::PHASE;
use crate::engines::aws::{self as aws, until_settled, Call, Clients};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, FunctionConfiguration, Runtime};
use std::collections::BTreeMap;
use std::time::Duration;

const RUNTIME: &str = "python3.12";
const HANDLER: &str = "stop_shop.handler";
const TIMEOUT_SECS: i32 = 60;
const MEMORY_MB: i32 = 128;
/// Lambda is eventually consistent with IAM and with itself: a fresh role
/// is not assumable at once, and an update refuses while one runs.
const PATIENCE: Duration = Duration::from_secs(90);

/// `want` set on a CreateFunction or UpdateFunctionConfiguration call:
/// two SDK builder types with the same methods, one list of settings.
macro_rules! configured {
    ($call:expr, $name:expr, $want:expr) => {
        $call
            .function_name($name)
            .runtime(Runtime::from($want.runtime.as_str()))
            .handler(&$want.handler)
            .role(&$want.role)
            .timeout($want.timeout)
            .memory_size($want.memory)
            .environment($want.environment())
    };
}

/// The configuration eshop sets, in a comparable form.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Settings {
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub timeout: i32,
    pub memory: i32,
    pub env: BTreeMap<String, String>,
}

impl Settings {
    pub fn wanted(project: &str, role_arn: &str) -> Settings {
        Settings {
            runtime: RUNTIME.into(),
            handler: HANDLER.into(),
            role: role_arn.into(),
            timeout: TIMEOUT_SECS,
            memory: MEMORY_MB,
            env: BTreeMap::from([("ESHOP_PROJECT".to_owned(), project.to_owned())]),
        }
    }

    fn of(c: &FunctionConfiguration) -> Settings {
        let env = c.environment().and_then(|e| e.variables());
        Settings {
            runtime: c
                .runtime()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            handler: c.handler().unwrap_or_default().to_owned(),
            role: c.role().unwrap_or_default().to_owned(),
            timeout: c.timeout().unwrap_or_default(),
            memory: c.memory_size().unwrap_or_default(),
            env: env
                .map(|v| v.clone().into_iter().collect())
                .unwrap_or_default(),
        }
    }

    /// What differs from `want`, one phrase each; empty when nothing.
    /// Variable values are not shown (a hand-added one may be a secret).
    pub fn drift(&self, want: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        let mut field = |name: &str, have: String, want: String| {
            if have != want {
                out.push(format!("{name} {have} → {want}"));
            }
        };
        field("runtime", self.runtime.clone(), want.runtime.clone());
        field("handler", self.handler.clone(), want.handler.clone());
        field("role", self.role.clone(), want.role.clone());
        field(
            "timeout",
            self.timeout.to_string(),
            want.timeout.to_string(),
        );
        field("memory", self.memory.to_string(), want.memory.to_string());
        let keys: std::collections::BTreeSet<&String> =
            self.env.keys().chain(want.env.keys()).collect();
        let changed: Vec<&str> = keys
            .into_iter()
            .filter(|k| self.env.get(*k) != want.env.get(*k))
            .map(String::as_str)
            .collect();
        if !changed.is_empty() {
            out.push(format!("environment {}", changed.join(", ")));
        }
        out
    }

    fn environment(&self) -> Environment {
        Environment::builder()
            .set_variables(Some(self.env.clone().into_iter().collect()))
            .build()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Function {
    pub arn: String,
    pub code_sha: String,
    pub settings: Settings,
}

impl Function {
    /// Why apply would update it: code and configuration drift.
    pub fn drift(&self, want: &Settings) -> Vec<String> {
        let mut out = Vec::new();
        if self.code_sha != code_sha256(&handler_zip()) {
            out.push("handler code changed".to_owned());
        }
        out.extend(self.settings.drift(want));
        out
    }
}

/// The function `name` if it exists; an untagged one stops everything.
pub(super) async fn read(
    c: &Clients,
    project: &str,
    name: &str,
) -> anyhow::Result<Option<Function>> {
    let what = format!("lambda function {name}");
    let r = c.lambda.get_function().function_name(name).send();
    let Some(out) = r.await.call_or_gone(&what, "GetFunction")? else {
        return Ok(None);
    };
    let tags = out.tags().into_iter().flatten();
    if !aws::owned(project, tags.map(|(k, v)| (k.as_str(), v.as_str()))) {
        anyhow::bail!("{what} exists but is not tagged as eshop project {project:?}'s");
    }
    let Some(conf) = out.configuration() else {
        anyhow::bail!("{what}: GetFunction returned no configuration");
    };
    Ok(Some(Function {
        arn: conf.function_arn().unwrap_or_default().to_owned(),
        code_sha: conf.code_sha256().unwrap_or_default().to_owned(),
        settings: Settings::of(conf),
    }))
}

/// Creates the function or brings code and configuration back to
/// `want`; returns its ARN and what it did.
pub(super) async fn ensure(
    c: &Clients,
    project: &str,
    name: &str,
    want: &Settings,
    have: Option<&Function>,
) -> anyhow::Result<(String, Vec<String>)> {
    let what = format!("lambda function {name}");
    let Some(f) = have else {
        let arn = create(c, project, name, want).await?;
        return Ok((arn, vec![format!("{what} ({RUNTIME})")]));
    };
    let mut did = Vec::new();
    let zip = handler_zip();
    if f.code_sha != code_sha256(&zip) {
        until_settled(PATIENCE, &["ResourceConflictException"], || async {
            let r = c.lambda.update_function_code().function_name(name);
            let r = r.zip_file(Blob::new(zip.clone())).send().await;
            r.settle(&what, "UpdateFunctionCode")
        })
        .await?;
        did.push(format!("{what}: new handler code"));
    }
    let drift = f.settings.drift(want);
    if !drift.is_empty() {
        // The code update may still run: Lambda refuses a second update
        // until it is done.
        until_settled(PATIENCE, &["ResourceConflictException"], || async {
            let r = configured!(c.lambda.update_function_configuration(), name, want);
            r.send().await.settle(&what, "UpdateFunctionConfiguration")
        })
        .await?;
        did.push(format!("{what}: configuration ({})", drift.join(", ")));
    }
    Ok((f.arn.clone(), did))
}

async fn create(c: &Clients, project: &str, name: &str, want: &Settings) -> anyhow::Result<String> {
    let what = format!("lambda function {name}");
    let tags: std::collections::HashMap<String, String> =
        aws::tags(project, PHASE, "stop-shop").into_iter().collect();
    let zip = handler_zip();
    // A role just created is not assumable by Lambda for a few seconds
    // (IAM is eventually consistent): retry that one error.
    let r = until_settled(PATIENCE, &["InvalidParameterValueException"], || async {
        let code = FunctionCode::builder().zip_file(Blob::new(zip.clone()));
        let r = configured!(c.lambda.create_function(), name, want)
            .code(code.build())
            .set_tags(Some(tags.clone()))
            .send()
            .await;
        match r {
            Ok(r) => Ok(Some(r.function_arn().unwrap_or_default().to_owned())),
            // Created by a run that crashed before recording it.
            Err(e) if aws::code(&e) == Some("ResourceConflictException") => Ok(None),
            Err(e) => Err(e).settle(&what, "CreateFunction"),
        }
    })
    .await?;
    if let Some(arn) = r {
        return Ok(arn);
    }
    let g = c.lambda.get_function().function_name(name).send();
    let g = g.await.call(&what, "GetFunction")?;
    Ok(g.configuration()
        .and_then(|c| c.function_arn())
        .unwrap_or_default()
        .to_owned())
}

/// Deletes the function; true when it existed.
pub(super) async fn delete(c: &Clients, name: &str) -> anyhow::Result<bool> {
    let r = c.lambda.delete_function().function_name(name).send().await;
    r.deleted(&format!("lambda function {name}"), "DeleteFunction")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_each_changed_field_and_variable_but_no_value() {
        let want = Settings::wanted("shop", "arn:role");
        assert!(want.drift(&want).is_empty());
        let mut have = want.clone();
        have.memory = 512;
        have.handler = "x.y".into();
        have.env.insert("TOKEN".into(), "s3cret".into());
        let d = have.drift(&want);
        assert_eq!(
            d,
            [
                "handler x.y → stop_shop.handler",
                "memory 512 → 128",
                "environment TOKEN"
            ]
        );
        assert!(!d.concat().contains("s3cret"));
    }
}
