//! AWS through the SDK for Rust: one shared configuration (region,
//! optional emulator endpoint, retries), the clients phases 3 (infra) and
//! 4 (schedule) use for apply, plan, status and their part of
//! `eshop destroy`, and the two things every call needs: eshop's tags and
//! errors that name the resource, the API call and AWS's own message.

use crate::config::aws::Aws as AwsConfig;
use crate::labels;
use crate::util::{poll_until, Pace};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use std::time::{Duration, Instant};

pub struct Clients {
    pub region: String,
    pub ec2: aws_sdk_ec2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub scheduler: aws_sdk_scheduler::Client,
}

impl Clients {
    /// Credentials come from the standard chain (env, profile, SSO, IMDS)
    /// and stay inside the SDK: nothing here prints or stores them.
    pub async fn connect(cfg: &AwsConfig) -> Self {
        // Throttling and 5xx are retried with jittered exponential backoff;
        // eight attempts ride out a burst without hiding a real outage.
        let retry = RetryConfig::standard()
            .with_max_attempts(8)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        // rustls on ring, as everywhere else in eshop (see Cargo.toml);
        // roots from the platform's store.
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https)
            .region(Region::new(cfg.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(e) = &cfg.endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        Clients {
            region: cfg.region.clone(),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            asg: aws_sdk_autoscaling::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            iam: aws_sdk_iam::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            scheduler: aws_sdk_scheduler::Client::new(&sdk),
        }
    }
}

/// eshop's ownership tags plus a Name, in a neutral form each service's
/// own tag type is built from.
pub fn tags(project: &str, phase: &str, role: &str) -> Vec<(String, String)> {
    vec![
        (labels::PROJECT.into(), project.into()),
        (labels::TARGET.into(), "aws".into()),
        (labels::PHASE.into(), phase.into()),
        (labels::ROLE.into(), role.into()),
        ("Name".into(), format!("eshop-{project}-{role}")),
    ]
}

/// True when `have` carries this project's ownership tags.
pub fn owned<'a>(project: &str, have: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let mut p = false;
    let mut t = false;
    for (k, v) in have {
        p |= k == labels::PROJECT && v == project;
        t |= k == labels::TARGET && v == "aws";
    }
    p && t
}

/// The AWS error code of a failed call, if AWS sent one.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.code()
}

/// Turns an SDK failure into "resource: Operation: Code: message".
pub trait Call<T> {
    fn call(self, resource: &str, op: &str) -> anyhow::Result<T>;
    /// For deletes and lookups: "already gone" is `None`, so destroy can
    /// be re-run; any other failure is [`Call::call`]'s error.
    fn call_or_gone(self, resource: &str, op: &str) -> anyhow::Result<Option<T>>;
    /// For deletes: true when there was something to delete.
    fn deleted(self, resource: &str, op: &str) -> anyhow::Result<bool>
    where
        Self: Sized,
    {
        Ok(self.call_or_gone(resource, op)?.is_some())
    }
    /// For [`until_settled`]: the error with its AWS code beside it.
    fn settle(self, resource: &str, op: &str) -> Result<T, Unsettled>;
}

impl<T, E, R> Call<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn call(self, resource: &str, op: &str) -> anyhow::Result<T> {
        self.map_err(|e| failure(&e, resource, op))
    }

    fn call_or_gone(self, resource: &str, op: &str) -> anyhow::Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(failure(&e, resource, op)),
        }
    }

    fn settle(self, resource: &str, op: &str) -> Result<T, Unsettled> {
        self.map_err(|e| Unsettled {
            code: e.code().map(str::to_owned),
            error: failure(&e, resource, op),
        })
    }
}

fn failure<E, R>(e: &SdkError<E, R>, resource: &str, op: &str) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let why = match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => aws_sdk_ec2::error::DisplayErrorContext(e).to_string(),
    };
    anyhow::anyhow!("{resource}: {op}: {why}")
}

/// For deletes: "already gone" is success, so destroy can be re-run.
pub fn gone<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code().is_some_and(|c| {
        c.ends_with(".NotFound")
            || c.ends_with("NotFound")
            || c == "NoSuchEntity"
            || c == "ResourceNotFoundException"
            || c == "InvalidGroup.NotFound"
    })
}

/// A failed call that [`until_settled`] may retry, by its AWS code.
pub struct Unsettled {
    pub code: Option<String>,
    pub error: anyhow::Error,
}

/// Retries `f` while AWS answers one of the `retryable` codes (ENIs being
/// released after instances terminate, IAM roles not yet visible to
/// Lambda): eventual consistency the SDK's own retries don't cover. Once
/// `patience` is spent, the last answer is the error.
pub async fn until_settled<T, F, Fut>(
    patience: Duration,
    retryable: &[&str],
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Unsettled>>,
{
    let start = Instant::now();
    // The outer deadline only backs up the inner one, which reports AWS's
    // own answer instead of a bare "gave up".
    let backstop = patience + Duration::from_secs(10);
    let pace = Pace::Backoff(Duration::from_millis(100), Duration::from_secs(5));
    poll_until(backstop, pace, "waiting for AWS to settle", || {
        let fut = f();
        async move {
            match fut.await {
                Ok(v) => Ok(Some(v)),
                Err(Unsettled { code: Some(c), .. })
                    if retryable.contains(&c.as_str()) && start.elapsed() < patience =>
                {
                    Ok(None)
                }
                Err(u) => Err(u.error),
            }
        }
    })
    .await
}

/// ELB and target group names: at most 32 characters of [A-Za-z0-9-].
pub fn elb_name(project: &str, suffix: &str) -> String {
    let n = format!("eshop-{project}-{suffix}");
    if n.len() <= 32 {
        n
    } else {
        format!(
            "eshop-{}-{suffix}",
            &crate::util::short_hash(&[project])[..10]
        )
    }
}
