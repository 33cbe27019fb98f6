//! `[apm]` (phase 10, and the services' trace export in phases 2 and 5):
//! where traces go over OTLP and, optionally, a Dynatrace tenant. Tokens
//! never come from the file: only from the environment, and they are kept
//! in [`Secret`]s that print as `<redacted>`.

use super::layer::{optional, Origin};
use super::ConfigError;
pub use super::Secret;
use serde::Deserialize;
use toml::Spanned;

/// The operator release eshop installs unless told otherwise; DynaKube
/// `dynatrace.com/v1beta3` is served from 1.4.0 on.
pub const DEFAULT_OPERATOR_VERSION: &str = "v1.4.0";

pub const API_TOKEN_ENV: &str = "ESHOP_DYNATRACE_API_TOKEN";
pub const INGEST_TOKEN_ENV: &str = "ESHOP_DYNATRACE_DATA_INGEST_TOKEN";
pub const OTLP_HEADERS_ENV: &str = "ESHOP_OTLP_HEADERS";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileApm {
    otlp_endpoint: Option<Spanned<String>>,
    dynatrace_url: Option<Spanned<String>>,
    dynatrace_operator_version: Option<Spanned<String>>,
    dynatrace_operator_manifest: Option<Spanned<String>>,
    dynatrace_operator_sha256: Option<Spanned<String>>,
}

#[derive(Debug, Clone)]
pub struct Dynatrace {
    /// Tenant URL without a trailing slash, e.g. https://abc12345.live.dynatrace.com
    pub url: String,
    pub api_token: Secret,
    pub ingest_token: Secret,
    /// The operator's kubernetes.yaml: the release asset for
    /// `dynatrace_operator_version` or `dynatrace_operator_manifest`,
    /// pinned by sha256.
    pub operator: super::Pinned,
}

#[derive(Debug, Clone, Default)]
pub struct Apm {
    /// Base URL of an OTLP/HTTP receiver (`/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
    /// `k=v,k2=v2`, sent with every export (often an Authorization header).
    pub otlp_headers: Option<Secret>,
    pub dynatrace: Option<Dynatrace>,
}

impl Apm {
    /// Where the services send traces, and with which headers: the
    /// configured endpoint, else the Dynatrace tenant's OTLP ingest with
    /// the data-ingest token.
    pub fn otlp(&self) -> Option<(String, Option<Secret>)> {
        if let Some(e) = &self.otlp_endpoint {
            return Some((e.clone(), self.otlp_headers.clone()));
        }
        self.dynatrace.as_ref().map(|d| {
            (
                format!("{}/api/v2/otlp", d.url),
                Some(Secret(format!(
                    "Authorization=Api-Token%20{}",
                    d.ingest_token.expose()
                ))),
            )
        })
    }

    /// A warning when credentials would travel in clear: headers (or the
    /// Dynatrace token) sent to an `http://` receiver that is not on this
    /// machine's loopback.
    pub fn cleartext_credentials(&self) -> Option<String> {
        let (url, headers) = self.otlp()?;
        headers.as_ref()?;
        let (host, ip) = self.otlp_host()?;
        let loopback = host == "localhost" || ip.is_some_and(|a| a.is_loopback());
        (url.starts_with("http://") && !loopback).then(|| {
            format!(
                "the OTLP headers (credentials) go to {url} over plain http: anyone on the path can read them; use https://"
            )
        })
    }

    /// The receiver's host, and its address when the host is an IP.
    pub fn otlp_host(&self) -> Option<(String, Option<std::net::IpAddr>)> {
        let (url, _) = self.otlp()?;
        let u = reqwest::Url::parse(&url).ok()?;
        let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
        Some((host.to_owned(), host.parse().ok()))
    }

    pub fn configured(&self) -> bool {
        self.otlp_endpoint.is_some() || self.dynatrace.is_some()
    }

    /// The TCP port traces leave on (for NetworkPolicy egress).
    pub fn otlp_port(&self) -> Option<u16> {
        let (url, _) = self.otlp()?;
        let u = reqwest::Url::parse(&url).ok()?;
        u.port_or_known_default()
    }
}

/// OTLP headers as `OTEL_EXPORTER_OTLP_HEADERS` writes them: `k=v,k2=v2`,
/// values percent-encoded (`Api-Token%20…`). None when malformed.
pub fn header_pairs(h: &Secret) -> Option<Vec<(String, String)>> {
    h.expose()
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| {
                let v = percent_encoding::percent_decode_str(v.trim()).decode_utf8_lossy();
                (k.to_owned(), v.into_owned())
            })
        })
        .collect()
}

/// Parses a URL and returns it re-serialised by the parser, never the raw
/// input: the URL parser silently drops tabs and newlines, so a raw value
/// that "parsed" could still carry a line break into what it is rendered
/// into. Whitespace and control characters are refused outright.
pub(super) fn check_url(s: &str, https_only: bool) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{s:?}: a URL holds no spaces, line breaks or control characters"
        ));
    }
    let u = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if !https_only => {}
        other => {
            return Err(format!(
                "scheme {other:?}: use {}",
                if https_only { "https" } else { "http or https" }
            ))
        }
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    // The URL parser lets braces, quotes and parentheses through in a name;
    // a host name is letters, digits, dots and dashes (after IDNA), so none
    // of them reaches a template or a script. (IP addresses are not domains.)
    if let Some(d) = u.domain() {
        if !d
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(format!(
                "{s:?}: the host must be a name (letters, digits, dots, dashes) or an IP address"
            ));
        }
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{s:?}: no query or fragment"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{s:?}: no credentials in the URL (they come from the environment)"
        ));
    }
    Ok(u.as_str().trim_end_matches('/').to_owned())
}

/// A Dynatrace operator release tag: `v1.4.0`.
fn operator_version(s: &str) -> Result<String, String> {
    let ok = s.strip_prefix('v').is_some_and(|r| {
        let parts: Vec<&str> = r.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    ok.then(|| s.to_owned())
        .ok_or_else(|| "must look like v1.4.0".into())
}

pub(super) fn apm(o: &Origin, f: &FileApm) -> Result<Apm, ConfigError> {
    let otlp_endpoint = o
        .key("apm.otlp_endpoint", &f.otlp_endpoint)
        .env("ESHOP_APM_OTLP_ENDPOINT")
        .get(optional(|e| {
            let e = check_url(e, false)?;
            if e.ends_with("/v1/traces") {
                return Err("give the base URL: the services append /v1/traces".into());
            }
            Ok(e)
        }))?
        .flatten();
    // The values are credentials: errors name the variable, not its text.
    let otlp_headers = o
        .secret(OTLP_HEADERS_ENV)
        .get(optional(|h| {
            let h = Secret(h.to_owned());
            match header_pairs(&h) {
                Some(_) => Ok(h),
                None => Err("must be key=value pairs separated by commas".to_owned()),
            }
        }))?
        .flatten();
    let dynatrace = dynatrace(o, f)?;
    Ok(Apm {
        otlp_endpoint,
        otlp_headers,
        dynatrace,
    })
}

/// `apm.dynatrace_url` and its tokens (from the environment only), its
/// operator release and manifest.
fn dynatrace(o: &Origin, f: &FileApm) -> Result<Option<Dynatrace>, ConfigError> {
    let url = o.key("apm.dynatrace_url", &f.dynatrace_url);
    let Some(tenant) = url.get(|u| {
        let u = check_url(u, true)?;
        if u.ends_with("/api") {
            return Err(
                "give the tenant URL without /api (eshop adds /api and /api/v2/otlp)".into(),
            );
        }
        Ok(u)
    })?
    else {
        return Ok(None);
    };
    let token = |var| {
        o.secret(var)
            .get(optional(|t| Ok(Secret(t.to_owned()))))
            .map(Option::flatten)
    };
    let (Some(api_token), Some(ingest_token)) = (token(API_TOKEN_ENV)?, token(INGEST_TOKEN_ENV)?)
    else {
        return Err(url.blame(format!("needs the tokens in the environment: {API_TOKEN_ENV} (operator) and {INGEST_TOKEN_ENV} (data ingest); they are never read from the file")));
    };
    let operator_version = o
        .key(
            "apm.dynatrace_operator_version",
            &f.dynatrace_operator_version,
        )
        .or(DEFAULT_OPERATOR_VERSION.to_owned(), operator_version)?;
    let operator = super::pinned::pinned(
        o,
        "dynatrace-operator",
        operator_version.clone(),
        format!("https://github.com/Dynatrace/dynatrace-operator/releases/download/{operator_version}/kubernetes.yaml"),
        o.key(
            "apm.dynatrace_operator_manifest",
            &f.dynatrace_operator_manifest,
        ),
        o.key("apm.dynatrace_operator_sha256", &f.dynatrace_operator_sha256),
    )?;
    Ok(Some(Dynatrace {
        url: tenant,
        api_token,
        ingest_token,
        operator,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_dynatrace_becomes_the_otlp_endpoint() {
        let apm = Apm {
            otlp_endpoint: None,
            otlp_headers: None,
            dynatrace: Some(Dynatrace {
                url: "https://abc12345.live.dynatrace.com".into(),
                api_token: Secret("dt0c01.API".into()),
                ingest_token: Secret("dt0c01.INGEST".into()),
                operator: super::super::Pinned {
                    name: "dynatrace-operator",
                    version: DEFAULT_OPERATOR_VERSION.into(),
                    source: "https://example.com/kubernetes.yaml".into(),
                    sha256: None,
                    sha256_key: "apm.dynatrace_operator_sha256".into(),
                },
            }),
        };
        assert!(!format!("{apm:?}").contains("dt0c01"));
        let (url, headers) = apm.otlp().unwrap();
        assert_eq!(url, "https://abc12345.live.dynatrace.com/api/v2/otlp");
        assert_eq!(
            headers.unwrap().expose(),
            "Authorization=Api-Token%20dt0c01.INGEST"
        );
        assert_eq!(apm.otlp_port(), Some(443));
        assert_eq!(
            header_pairs(&Secret("a=x%20y, b = 2,,".into())),
            Some(vec![("a".into(), "x y".into()), ("b".into(), "2".into())])
        );
        assert_eq!(header_pairs(&Secret("a=1,=2".into())), None);
        assert_eq!(header_pairs(&Secret("token".into())), None);
        let plain = Apm {
            otlp_endpoint: Some("http://collector.observability:4318".into()),
            ..Apm::default()
        };
        assert_eq!(plain.otlp_port(), Some(4318));
        assert!(check_url("ftp://x", false).is_err() && check_url("http://x", true).is_err());
    }
}
