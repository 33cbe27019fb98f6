//! `[local]` and the ports the local target publishes: one
//! `local.<name>_port` (env `ESHOP_LOCAL_<NAME>_PORT`) per catalogue entry,
//! plus Prometheus's and Grafana's, all distinct.

use super::layer::{port, within, Layer, Origin};
use super::{ConfigError, FileMonitoring};
use crate::shop::Service;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[local]` as written. Its keys follow the catalogue, which serde's
/// `deny_unknown_fields` cannot know, so it arrives as a map and is
/// checked here the same way: an unknown key is an error at its line.
struct FileLocal {
    bind: Option<Spanned<String>>,
    ready_timeout_secs: Option<Spanned<i64>>,
    demo_data: Option<Spanned<bool>>,
    /// One per catalogue entry, in its order.
    ports: Vec<Option<Spanned<i64>>>,
}

pub(super) struct Local {
    pub bind: std::net::IpAddr,
    pub ready_timeout: std::time::Duration,
    pub demo_data: bool,
    pub ports: BTreeMap<&'static str, u16>,
    pub prometheus_port: u16,
    pub grafana_port: u16,
}

/// `pricing_port`: the key of a service's published port in `[local]`.
fn port_key(s: &Service) -> String {
    format!("{}_port", s.name)
}

fn file_local(
    o: &Origin,
    raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    shop: &[Service],
) -> Result<FileLocal, ConfigError> {
    let mut f = FileLocal {
        bind: None,
        ready_timeout_secs: None,
        demo_data: None,
        ports: vec![None; shop.len()],
    };
    for (key, value) in raw {
        match key.get_ref().as_str() {
            "bind" => f.bind = Some(typed(o, value)?),
            "ready_timeout_secs" => f.ready_timeout_secs = Some(typed(o, value)?),
            "demo_data" => f.demo_data = Some(typed(o, value)?),
            k => match shop.iter().position(|s| port_key(s) == k) {
                Some(i) => f.ports[i] = Some(typed(o, value)?),
                None => {
                    let known: Vec<String> = ["bind", "ready_timeout_secs", "demo_data"]
                        .into_iter()
                        .map(str::to_owned)
                        .chain(shop.iter().map(port_key))
                        .map(|k| format!("`{k}`"))
                        .collect();
                    return Err(ConfigError(format!(
                        "{}: unknown field `{k}`, expected one of {}",
                        o.at(key.span()),
                        known.join(", ")
                    )));
                }
            },
        }
    }
    Ok(f)
}

/// A value of the map as the type its key wants, with serde's message for
/// the wrong type (what a typed field would have said).
fn typed<T: serde::de::DeserializeOwned>(
    o: &Origin,
    v: &Spanned<toml::Value>,
) -> Result<Spanned<T>, ConfigError> {
    T::deserialize(v.get_ref().clone())
        .map(|t| Spanned::new(v.span(), t))
        .map_err(|e| ConfigError(format!("{}: {}", o.at(v.span()), e.message().trim())))
}

pub(super) fn local(
    o: &Origin,
    raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    monitoring: &FileMonitoring,
    shop: &'static [Service],
) -> Result<Local, ConfigError> {
    let f = file_local(o, raw, shop)?;
    let bind = o
        .key("local.bind", &f.bind)
        .or(std::net::IpAddr::from([127, 0, 0, 1]), |b| {
            b.parse()
                .map_err(|_| "must be an IP address such as 127.0.0.1".to_owned())
        })?;
    let ready_timeout = o
        .key("local.ready_timeout_secs", &f.ready_timeout_secs)
        .or(60, within(1..=600))?;
    let demo_data = o
        .key("local.demo_data", &f.demo_data)
        .env("ESHOP_LOCAL_DEMO_DATA")
        .or(true, |b| Ok(*b))?;

    // (key, variable) per service; the layers borrow them.
    let names: Vec<(String, String)> = shop
        .iter()
        .map(|s| {
            let var = s.name.to_ascii_uppercase().replace('-', "_");
            (
                format!("local.{}", port_key(s)),
                format!("ESHOP_LOCAL_{var}_PORT"),
            )
        })
        .collect();
    let mut published: Vec<(u16, Layer<i64>)> = Vec::new();
    for ((s, file), (key, var)) in shop.iter().zip(&f.ports).zip(&names) {
        let layer = o.key(key, file).env(var);
        published.push((layer.or(s.port, port)?, layer));
    }
    for (key, var, file, default) in [
        (
            "monitoring.prometheus_port",
            "ESHOP_MONITORING_PROMETHEUS_PORT",
            &monitoring.prometheus_port,
            9090,
        ),
        (
            "monitoring.grafana_port",
            "ESHOP_MONITORING_GRAFANA_PORT",
            &monitoring.grafana_port,
            3000,
        ),
    ] {
        let layer = o.key(key, file).env(var);
        published.push((layer.or(default, port)?, layer));
    }
    distinct(&published)?;

    let ports = shop
        .iter()
        .zip(&published)
        .map(|(s, (p, _))| (s.name, *p))
        .collect();
    let n = shop.len();
    Ok(Local {
        bind,
        ready_timeout: std::time::Duration::from_secs(ready_timeout),
        demo_data,
        ports,
        prometheus_port: published[n].0,
        grafana_port: published[n + 1].0,
    })
}

/// Two published ports cannot share a host port. The error names the more
/// deliberate of the two keys (a variable over the file, a key written
/// later in the file over an earlier one, either over a default), else the
/// later in the list, and the key it clashes with.
fn distinct(published: &[(u16, Layer<i64>)]) -> Result<(), ConfigError> {
    for (i, (p, l)) in published.iter().enumerate() {
        if let Some((_, m)) = published[..i].iter().find(|(q, _)| q == p) {
            let (later, earlier) = if m.set_by() > l.set_by() {
                (m, l)
            } else {
                (l, m)
            };
            return Err(later.blame(format!("must differ from {}", earlier.key_name())));
        }
    }
    Ok(())
}
