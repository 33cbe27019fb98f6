//! Phase 10, apm: application performance monitoring.
//!
//! Two independent halves, both from `[apm]`:
//! - Traces: the services export OpenTelemetry spans over OTLP/HTTP to
//!   `apm.otlp_endpoint`, or to the Dynatrace tenant's OTLP ingest when
//!   only a tenant is configured. Phases 2 and 5 put the OTEL_* settings
//!   into the containers (credentials from a Secret file on Kubernetes);
//!   this phase checks that the receiver answers.
//! - Dynatrace on Kubernetes: the Dynatrace Operator (its release
//!   manifest, pinned), the tenant's tokens in a Secret and a DynaKube,
//!   applied like every other Kubernetes phase (server-side apply as
//!   eshop, labelled, pruned, destroyed by label).
//!
//! With nothing configured the phase says so and touches nothing.

use super::{manifests, Action, Change, Ctx, Info, Outcome, Phase, Status, EVERYWHERE};
use crate::config::apm::{header_pairs, Dynatrace, Secret};
use crate::config::kube::Mode;
use crate::config::Config;
use crate::render::render_pairs as render;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Apm;

pub const PHASE: &str = "apm";
/// The operator's manifests expect this namespace.
const NAMESPACE: &str = "dynatrace";

const DYNATRACE: &str = include_str!("../../templates/apm/00-dynatrace.yaml");
const DYNAKUBE: &str = include_str!("../../templates/apm/90-dynakube.yaml");

fn dynakube_name(cfg: &Config) -> String {
    format!("eshop-{}", cfg.project)
}

/// eshop's own objects. Without `tokens` (a render for review) the
/// Secret carries placeholders. The tokens go in as data.
fn own_objects(cfg: &Config, d: &Dynatrace, with_tokens: bool) -> anyhow::Result<Vec<Value>> {
    let labels = manifests::owner_labels(cfg, PHASE);
    let name = dynakube_name(cfg);
    let token = |s: &Secret, placeholder: &str| -> Value {
        if with_tokens {
            s.expose().into()
        } else {
            placeholder.into()
        }
    };
    let head = render(
        DYNATRACE,
        &[("namespace", NAMESPACE.to_owned()), ("name", name.clone())],
        &[],
    )?;
    let kube = render(
        DYNAKUBE,
        &[
            ("namespace", NAMESPACE.into()),
            ("name", name),
            ("api_url", format!("{}/api", d.url)),
        ],
        &[],
    )?;
    let mut out = manifests::parse(&head, "00-dynatrace.yaml", &labels)?;
    for o in out.iter_mut().filter(|o| o["kind"] == "Secret") {
        o["stringData"]["apiToken"] = token(&d.api_token, "FROM-ESHOP_DYNATRACE_API_TOKEN");
        o["stringData"]["dataIngestToken"] =
            token(&d.ingest_token, "FROM-ESHOP_DYNATRACE_DATA_INGEST_TOKEN");
    }
    out.extend(manifests::parse(&kube, "90-dynakube.yaml", &labels)?);
    Ok(out)
}

/// The operator's objects, stamped with eshop's labels so that prune and
/// destroy find them like anything else eshop applied. The manifest must
/// match its sha256 pin (`record`: apply writes a first-use pin to
/// eshop.lock; plan and status only look).
async fn operator_objects(ctx: &Ctx, d: &Dynatrace, record: bool) -> anyhow::Result<Vec<Value>> {
    let cfg = &ctx.config;
    let src = d.operator.source.clone();
    let text = crate::pins::fetch(cfg, &ctx.ui, PHASE, &d.operator, record)
        .await?
        .text;
    let labels = manifests::owner_labels(cfg, PHASE);
    let objects = manifests::parse(&text, &src, &labels)?;
    for o in &objects {
        let kind = crate::engines::kube::kind_of(o)?;
        if kind.namespaced && o["metadata"]["namespace"] != NAMESPACE {
            anyhow::bail!(
                "{src}: {} is not in namespace {NAMESPACE}: not the operator's kubernetes.yaml?",
                crate::engines::kube::describe(o)
            );
        }
    }
    Ok(objects)
}

/// Everything phase 10 applies on a cluster, in file order.
async fn cluster_objects(ctx: &Ctx, d: &Dynatrace, record: bool) -> anyhow::Result<Vec<Value>> {
    let own = own_objects(&ctx.config, d, true)?;
    let (head, dynakube) = own.split_at(own.len() - 1);
    let mut all = head.to_vec();
    all.extend(operator_objects(ctx, d, record).await?);
    all.extend(dynakube.iter().cloned());
    Ok(all)
}

fn on_kubernetes(cfg: &Config) -> bool {
    cfg.kube.mode != Mode::Off
}

const NOT_CONFIGURED: &str = "not configured, nothing to do: set [apm] otlp_endpoint (any OTLP/HTTP receiver) or dynatrace_url with ESHOP_DYNATRACE_API_TOKEN and ESHOP_DYNATRACE_DATA_INGEST_TOKEN";

/// Sends an empty export (zero spans: a valid, empty protobuf message) to
/// the receiver with the configured headers; Ok(status) if it answered.
async fn probe(endpoint: &str, headers: Option<&Secret>) -> anyhow::Result<reqwest::StatusCode> {
    let url = format!("{endpoint}/v1/traces");
    let mut req = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(Vec::<u8>::new());
    // Checked when the configuration was read.
    for (k, v) in headers.and_then(header_pairs).unwrap_or_default() {
        req = req.header(k, v);
    }
    // The error names the URL, never the headers, and keeps its sources
    // (printed with {:#}): "error sending request" alone hides whether the
    // port was closed or the certificate untrusted.
    let r = req
        .send()
        .await
        .map_err(|e| anyhow::Error::new(e.without_url()).context(url))?;
    Ok(r.status())
}

async fn trace_status(cfg: &Config) -> Option<Status> {
    let (endpoint, headers) = cfg.apm.otlp()?;
    let (state, healthy) = match probe(&endpoint, headers.as_ref()).await {
        Ok(s) if s.is_success() => (format!("accepts traces (HTTP {})", s.as_u16()), true),
        Ok(s) => (
            format!(
                "refuses traces: HTTP {} (check the headers/token)",
                s.as_u16()
            ),
            false,
        ),
        Err(e) => (format!("not reachable from here: {e:#}"), false),
    };
    Some(Status {
        resource: format!("OTLP receiver {endpoint}"),
        state,
        healthy,
    })
}

fn trace_change(cfg: &Config) -> Option<Change> {
    let (endpoint, _) = cfg.apm.otlp()?;
    Some(Change::new(
        format!("trace export to {endpoint}"),
        Action::NoOp,
        "set in the services' configuration by phases 2 and 5",
    ))
}

async fn plan(ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
    let cfg = &ctx.config;
    if let Some(w) = cfg.apm.cleartext_credentials() {
        ctx.ui.warn(PHASE, &w);
    }
    let mut out: Vec<Change> = trace_change(cfg).into_iter().collect();
    let Some(d) = cfg.apm.dynatrace.as_ref().filter(|_| on_kubernetes(cfg)) else {
        return Ok(out);
    };
    out.push(Change::new(
        format!("add-on {} {}", d.operator.name, d.operator.version),
        if crate::pins::pin(cfg, &d.operator)?.0.is_some() {
            Action::NoOp
        } else {
            Action::Create
        },
        crate::pins::describe(cfg, &d.operator)?,
    ));
    let objects = cluster_objects(ctx, d, false).await?;
    out.extend(manifests::plan_on_cluster(ctx, PHASE, &objects).await?);
    Ok(out)
}

async fn apply(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let cfg = &ctx.config;
    let mut changed = 0;
    if let Some(d) = &cfg.apm.dynatrace {
        if on_kubernetes(cfg) {
            let objects = cluster_objects(ctx, d, true).await?;
            let cluster = ctx.kube().await?;
            changed += manifests::apply(ctx, cluster, PHASE, &objects).await?;
            ctx.ui.event(
                "result",
                Some(PHASE),
                &format!(
                    "Dynatrace: {}/ui/apps/dynatrace.kubernetes (cluster {}), traces: Distributed traces",
                    d.url,
                    dynakube_name(cfg)
                ),
                json!({"dynatrace": d.url, "dynakube": dynakube_name(cfg)}),
            );
        } else {
            ctx.ui.info(
                PHASE,
                "the Dynatrace Operator needs a cluster (kubernetes.mode = \"off\"): only the services' traces go to the tenant",
            );
        }
    }
    if let Some(s) = trace_status(cfg).await {
        // A receiver only the cluster can reach is not an error here.
        let line = format!("{}: {}", s.resource, s.state);
        if s.healthy {
            ctx.ui.info(PHASE, &line);
        } else {
            ctx.ui.warn(PHASE, &line);
        }
    }
    Ok(Outcome { changed })
}

async fn destroy(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let cfg = &ctx.config;
    // Found by label: what an earlier configuration applied goes too.
    if !on_kubernetes(cfg) || manifests::cluster_pending(cfg) {
        return Ok(Outcome::default());
    }
    let cluster = ctx.kube().await?;
    Ok(Outcome {
        changed: manifests::destroy(ctx, cluster, PHASE).await?,
    })
}

async fn status(ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
    let cfg = &ctx.config;
    let mut out: Vec<Status> = trace_status(cfg).await.into_iter().collect();
    if let Some(d) = cfg.apm.dynatrace.as_ref().filter(|_| on_kubernetes(cfg)) {
        let cluster = ctx.kube().await?;
        let objects = cluster_objects(ctx, d, false).await?;
        out.extend(manifests::status(cluster, &objects).await?);
        let dynakube = objects.last().expect("rendered");
        out.push(match cluster.get(dynakube).await? {
            None => Status {
                resource: crate::engines::kube::describe(dynakube),
                state: "absent".into(),
                healthy: false,
            },
            Some(live) => {
                let phase = live["status"]["phase"].as_str().unwrap_or("no status yet");
                Status {
                    resource: crate::engines::kube::describe(dynakube),
                    state: phase.to_owned(),
                    healthy: phase == "Running",
                }
            }
        });
    }
    Ok(out)
}

/// What `eshop phases` says this phase does.
const ABOUT: &str = "OpenTelemetry traces to an OTLP receiver; with a Dynatrace tenant, the Dynatrace Operator and a DynaKube on the cluster";

impl Phase for Apm {
    const INFO: Info = Info::new(10, PHASE, ABOUT, EVERYWHERE);

    fn skip(&self, cfg: &Config) -> Option<String> {
        (!cfg.apm.configured()).then(|| NOT_CONFIGURED.to_owned())
    }
    async fn plan(&self, ctx: &Ctx) -> anyhow::Result<Vec<Change>> {
        plan(ctx).await
    }
    async fn apply(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        apply(ctx).await
    }
    async fn destroy(&self, ctx: &Ctx) -> anyhow::Result<Outcome> {
        destroy(ctx).await
    }
    async fn status(&self, ctx: &Ctx) -> anyhow::Result<Vec<Status>> {
        status(ctx).await
    }
    /// eshop's own objects, with placeholders for the tokens; the
    /// operator's manifest is named, not fetched.
    fn render(&self, ctx: &Ctx, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let cfg = &ctx.config;
        let Some(d) = &cfg.apm.dynatrace else {
            anyhow::bail!("nothing to render: apm.dynatrace_url is not set");
        };
        let own = own_objects(cfg, d, false)?;
        let (head, dynakube) = own.split_at(own.len() - 1);
        let mut written = manifests::write(
            out,
            &[
                ("00-dynatrace.yaml".into(), head.to_vec()),
                ("90-dynakube.yaml".into(), dynakube.to_vec()),
            ],
        )?;
        let p = out.join("50-operator.txt");
        std::fs::write(
            &p,
            format!(
                "Applied between the two files above: the Dynatrace Operator's manifest\n{}\n{}\n",
                d.operator.source,
                crate::pins::describe(cfg, &d.operator)?
            ),
        )?;
        written.push(p);
        Ok(written)
    }
}
