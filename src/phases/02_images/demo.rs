//! Phase 2 on the local target, after the containers are up: the demo
//! catalogue an empty shop gets, and the warning when the shop is
//! published beyond this machine.

use super::NAME;
use crate::config::Target;
use crate::phases::local::display_host;
use crate::phases::Ctx;
use serde_json::json;

/// An access token of the local shop's administrator (signed up on first
/// use with the password eshop keeps), for the demo catalogue's writes;
/// None when the catalogue has no token issuer.
async fn admin_token(ctx: &Ctx, http: &reqwest::Client) -> anyhow::Result<Option<String>> {
    let cfg = &ctx.config;
    let Some(issuer) = cfg.shop.iter().find(|s| s.signing_key) else {
        return Ok(None);
    };
    let email = crate::phases::local::admin_email(cfg);
    let password = crate::phases::local::kept_password(
        ctx,
        NAME,
        "admin-password",
        &format!("the shop admin's password ({email})"),
        true,
    )?
    .expect("created");
    let base = format!("http://{}:{}", display_host(cfg), cfg.host_port(issuer));
    let body = json!({"email": email, "password": password.expose()});
    let fail = |what: &str, e: anyhow::Error| e.context(format!("the shop admin {email}: {what}"));
    let r = http
        .post(format!("{base}/users"))
        .json(&body)
        .send()
        .await
        .map_err(|e| fail("signing up", e.into()))?;
    // 409: made by an earlier run.
    if !matches!(r.status().as_u16(), 201 | 409) {
        return Err(fail("signing up", anyhow::anyhow!("HTTP {}", r.status())));
    }
    let r = http
        .post(format!("{base}/tokens"))
        .json(&body)
        .send()
        .await
        .map_err(|e| fail("logging in", e.into()))?;
    if r.status() == 401 {
        anyhow::bail!(
            "the shop admin {email} exists with a password other than the one in .eshop/{}-admin-password: put the right one there, or start over with `eshop destroy --purge-data`",
            cfg.project
        );
    }
    let t: serde_json::Value = r
        .error_for_status()
        .map_err(|e| fail("logging in", e.into()))?
        .json()
        .await?;
    Ok(t["access_token"].as_str().map(str::to_owned))
}

/// Loads each service's demo records (the catalogue's `demo`) into a
/// service that holds no record yet, so a new shop has something to show;
/// a service with any data of its own is left alone. Says which page to
/// try. Returns the number of records added.
pub(super) async fn load_demo(ctx: &Ctx) -> anyhow::Result<usize> {
    let cfg = &ctx.config;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let host = display_host(cfg);
    let token = admin_token(ctx, &http).await?;
    let mut added = 0;
    for svc in cfg.shop {
        let Some(demo) = svc.demo else { continue };
        let base = format!("http://{host}:{}{}", cfg.host_port(svc), demo.collection);
        // anyhow keeps the error's sources, printed with {:#}.
        let fail = |what: &str, e: anyhow::Error| {
            e.context(format!("demo data for {}: {what} {base}", svc.name))
        };
        let page: serde_json::Value = http
            .get(format!("{base}?limit=1"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| fail("listing", e.into()))?
            .json()
            .await
            .map_err(|e| fail("reading the list from", e.into()))?;
        let records: Vec<serde_json::Value> = serde_json::from_str(demo.records)?;
        let empty = page["items"].as_array().is_some_and(|i| i.is_empty());
        if empty {
            for r in &records {
                let mut req = http.post(&base).json(r);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| fail("adding a record to", e.into()))?;
                match resp.status().as_u16() {
                    200 | 201 => added += 1,
                    // Added meanwhile by someone else: theirs stays.
                    409 => {}
                    s => return Err(fail("adding a record to", anyhow::anyhow!("HTTP {s}"))),
                }
            }
            ctx.ui.info(
                NAME,
                &format!(
                    "loaded {} demo record(s) into {} (local.demo_data = false turns this off)",
                    records.len(),
                    svc.name
                ),
            );
        }
        let first = records.first().and_then(|r| r["id"].as_str());
        if let Some(id) = first {
            let shown = http
                .get(format!("{base}/{}", percent_encode(id)))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if shown {
                let page = demo.try_path.replace("{id}", &percent_encode(id));
                let url = format!(
                    "{}{}",
                    crate::phases::local::shop_url(cfg).trim_end_matches('/'),
                    page
                );
                ctx.ui.event(
                    "result",
                    Some(NAME),
                    &format!("try product {id}: {url}"),
                    json!({"try": url, "id": id}),
                );
            }
        }
    }
    Ok(added)
}

/// For a path segment or query value: everything but RFC 3986's
/// unreserved characters, so `SKU-MUG-001` stays readable.
fn percent_encode(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// The local shop has no login: its write APIs (e.g. stock
/// changes) are open to whoever reaches the published ports.
pub(super) fn warn_if_exposed(ctx: &Ctx) {
    let cfg = &ctx.config;
    if cfg.target == Target::Local && !cfg.bind.is_loopback() {
        ctx.ui.warn(
            NAME,
            &format!(
                "local.bind = {}: the shop's ports, its write APIs included, are open to every machine that can reach this one; 127.0.0.1 keeps them on this machine",
                cfg.bind
            ),
        );
    }
}
