//! Phase 2 on the local target: the container each service runs as,
//! wired to the services it calls, with its credentials as files.

use super::DATA_DIR;
use super::NAME;
use crate::engines::docker::{self, ContainerSpec};
use crate::labels;
use crate::phases::local::{container_name, network_name, volume_name};
use crate::phases::Ctx;
use crate::shop::Service;

/// The whole desired container for a service: it finds the services it
/// calls by container name on the shop's network.
/// `create` (apply) makes the service clients' secrets when missing; a
/// plan only reads them.
pub(crate) fn container_spec(
    ctx: &Ctx,
    svc: &Service,
    image_ref: &str,
    create: bool,
) -> anyhow::Result<ContainerSpec> {
    let cfg = &ctx.config;
    let mut env: Vec<String> = svc
        .callees(cfg.shop)
        .map(|c| {
            format!(
                "{}=http://{}:{}",
                c.url_env(),
                container_name(cfg, c.name),
                c.port
            )
        })
        .collect();
    // Phase 10's trace export: the endpoint, and its credentials as a
    // file (the environment is what `docker inspect` prints).
    let mut secrets = Vec::new();
    if let Some((endpoint, headers)) = cfg.apm.otlp() {
        env.push(format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}"));
        env.push(format!("OTEL_SERVICE_NAME={}", svc.name));
        if let Some(h) = headers {
            let f = docker::SecretFile {
                name: "otlp-headers".into(),
                content: h,
            };
            env.push(format!("OTEL_EXPORTER_OTLP_HEADERS_FILE={}", f.path()));
            secrets.push(f);
        }
    }
    // The token issuer makes the local shop's administrator an admin
    // (eshop signs it up to load the demo catalogue).
    let mut extra = cfg.service_env.get(svc.name).cloned().unwrap_or_default();
    if svc.signing_key {
        // Beside any admins the configuration names.
        let mut admins = crate::phases::local::admin_email(cfg);
        if let Some(more) = extra.remove("ADMIN_EMAILS") {
            admins = format!("{admins},{more}");
        }
        env.push(format!("ADMIN_EMAILS={admins}"));
    }
    env.extend(extra.iter().map(|(k, v)| format!("{k}={v}")));
    client_secrets(ctx, svc, create, &mut env, &mut secrets)?;
    let mut labels = docker::labels(&cfg.project, cfg.target.as_str(), NAME);
    labels.insert(labels::SERVICE.into(), svc.name.into());
    Ok(ContainerSpec {
        image: image_ref.to_owned(),
        env,
        labels,
        network: network_name(cfg),
        ports: vec![(svc.port, cfg.bind.to_string(), cfg.host_port(svc))],
        volumes: if svc.database {
            vec![(volume_name(cfg, svc), DATA_DIR.to_owned())]
        } else {
            Vec::new()
        },
        // Idle RSS is under 10 MB; 256 MiB leaves room for load and caches.
        memory_mib: 256,
        secrets,
    })
}

/// The shop's service clients (e.g. orders): each gets its own secret
/// (`SERVICE_SECRET_FILE`), the token issuer all of them, one file per
/// client named after it (`SERVICE_CLIENTS_DIR`). Generated once and kept
/// in `.eshop/<project>-<client>-client-secret` (0600).
fn client_secrets(
    ctx: &Ctx,
    svc: &Service,
    create: bool,
    env: &mut Vec<String>,
    secrets: &mut Vec<docker::SecretFile>,
) -> anyhow::Result<()> {
    let cfg = &ctx.config;
    let mut any = false;
    for client in cfg.shop.iter().filter(|c| c.service_client) {
        if !(svc.signing_key || client.name == svc.name) {
            continue;
        }
        let kept = crate::phases::local::kept_password(
            ctx,
            NAME,
            &format!("{}-client-secret", client.name),
            &format!("{}'s client secret", client.name),
            create,
        )?;
        let Some(secret) = kept else { continue };
        if svc.signing_key {
            secrets.push(docker::SecretFile {
                name: format!("clients/{}", client.name),
                content: secret,
            });
            any = true;
        } else {
            let f = docker::SecretFile {
                name: "service-secret".into(),
                content: secret,
            };
            env.push(format!("SERVICE_SECRET_FILE={}", f.path()));
            secrets.push(f);
        }
    }
    if any {
        env.push(format!(
            "SERVICE_CLIENTS_DIR={}/clients",
            docker::SECRETS_DIR
        ));
    }
    Ok(())
}
