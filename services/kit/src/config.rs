//! Typed configuration from environment variables.
//!
//! Values are read through a [`Source`] so tests inject a map instead of
//! mutating the process environment (which is racy across test threads).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// Where settings come from.
pub trait Source: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Env;

impl Source for Env {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

/// A fixed set of values, for tests and for embedding.
#[derive(Debug, Default, Clone)]
pub struct Map(pub HashMap<String, String>);

impl Map {
    pub fn new<const N: usize>(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl Source for Map {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// A setting that could not be used; names the variable and the value.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {key}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: &str, value: &str, reason: impl Display) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Reads typed settings from a [`Source`].
pub struct Reader<'a> {
    source: &'a dyn Source,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Self { source }
    }

    /// The raw value, with empty strings treated as unset so `FOO=` in a
    /// compose file or a shell falls back to the default.
    pub fn raw(&self, key: &str) -> Option<String> {
        self.source.get(key).filter(|v| !v.trim().is_empty())
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e| ConfigError::new(key, &v, e)),
        }
    }

    /// A value parsed by `f`, or `default` when unset.
    pub fn with_or<T>(
        &self,
        key: &str,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => f(v.trim()).map_err(|e| ConfigError::new(key, &v, e)),
        }
    }

    pub fn string_or(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    /// Where another service of the shop answers: an `http://host[:port]`
    /// base URL, without a trailing slash (TLS ends in front of the
    /// services, so a service never calls another over https).
    pub fn service_url(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        self.with_or(key, default.to_owned(), |v| {
            let rest = v
                .strip_prefix("http://")
                .ok_or("must be an http:// URL (TLS is terminated in front of the services)")?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err("must name a host".into());
            }
            Ok(v.trim_end_matches('/').to_owned())
        })
    }

    /// An integer within `range`, so a typo like `DB_MAX_CONNECTIONS=0`
    /// fails at start instead of deadlocking later.
    pub fn int_in(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let v: u64 = self.parse_or(key, default)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::new(
                key,
                &v.to_string(),
                format!("must be between {} and {}", range.start(), range.end()),
            ))
        }
    }
}

/// Creates `path` (and its directory) holding `make()`'s bytes, readable
/// by this user only (0600), unless it exists: a generated key is never
/// replaced, since replacing it would end every session it signed.
/// Whether it was created.
pub fn create_secret_file(
    path: &std::path::Path,
    make: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<bool, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let bytes = make()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(true)
}

/// Settings every service has.
#[derive(Debug, Clone)]
pub struct Common {
    pub listen_addr: std::net::SocketAddr,
    pub log_level: String,
    pub log_format: crate::telemetry::LogFormat,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: std::time::Duration,
    /// What one HTTP client may hold (see [`crate::server::Limits`]):
    /// `HTTP_HEADER_TIMEOUT_MS` (default 10000, also the keep-alive idle
    /// limit) and `HTTP_MAX_CONNECTIONS` (default 512). Passed to
    /// [`crate::server::serve_with`].
    pub http: crate::server::Limits,
}

impl Common {
    pub fn from_source(r: &Reader<'_>, default_listen: &str) -> Result<Self, ConfigError> {
        let listen_addr = r.parse_or(
            "LISTEN_ADDR",
            default_listen.parse().expect("valid default"),
        )?;
        let log_level = r.string_or("LOG_LEVEL", "info");
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| ConfigError::new("LOG_LEVEL", &log_level, e))?;
        let log_format = r.parse_or("LOG_FORMAT", crate::telemetry::LogFormat::Json)?;
        let shutdown_timeout = std::time::Duration::from_millis(r.int_in(
            "SHUTDOWN_TIMEOUT_MS",
            10_000,
            0..=600_000,
        )?);
        let default = crate::server::Limits::default();
        let http = crate::server::Limits {
            header_read_timeout: std::time::Duration::from_millis(r.int_in(
                "HTTP_HEADER_TIMEOUT_MS",
                default.header_read_timeout.as_millis() as u64,
                100..=600_000,
            )?),
            max_connections: r.int_in(
                "HTTP_MAX_CONNECTIONS",
                default.max_connections as u64,
                1..=65_536,
            )? as usize,
        };
        Ok(Self {
            listen_addr,
            log_level,
            log_format,
            shutdown_timeout,
            http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_integer_names_the_variable_and_value() {
        let src = Map::new([("SHUTDOWN_TIMEOUT_MS", "ten")]);
        let err = Common::from_source(&Reader::new(&src), "127.0.0.1:1").unwrap_err();
        assert_eq!(err.key, "SHUTDOWN_TIMEOUT_MS");
        assert!(err.to_string().contains("\"ten\""), "{err}");
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let src = Map::new([("N", "0")]);
        let err = Reader::new(&src).int_in("N", 4, 1..=64).unwrap_err();
        assert!(err.reason.contains("between 1 and 64"));
    }

    #[test]
    fn empty_values_fall_back_to_defaults() {
        let src = Map::new([("LISTEN_ADDR", " "), ("LOG_FORMAT", "text")]);
        let c = Common::from_source(&Reader::new(&src), "127.0.0.1:9").unwrap();
        assert_eq!(c.listen_addr.port(), 9);
        assert_eq!(c.log_format, crate::telemetry::LogFormat::Text);
    }

    #[test]
    fn http_limits_default_and_can_be_set() {
        let empty = Map::new([]);
        let c = Common::from_source(&Reader::new(&empty), "127.0.0.1:9").unwrap();
        assert_eq!(c.http, crate::server::Limits::default());
        let src = Map::new([
            ("HTTP_HEADER_TIMEOUT_MS", "1500"),
            ("HTTP_MAX_CONNECTIONS", "64"),
        ]);
        let c = Common::from_source(&Reader::new(&src), "127.0.0.1:9").unwrap();
        assert_eq!(c.http.header_read_timeout.as_millis(), 1500);
        assert_eq!(c.http.max_connections, 64);
        let zero = Map::new([("HTTP_MAX_CONNECTIONS", "0")]);
        let err = Common::from_source(&Reader::new(&zero), "127.0.0.1:9").unwrap_err();
        assert_eq!(err.key, "HTTP_MAX_CONNECTIONS");
    }

    #[test]
    fn a_bad_log_filter_is_refused() {
        let src = Map::new([("LOG_LEVEL", "info,[[[")]);
        let err = Common::from_source(&Reader::new(&src), "127.0.0.1:9").unwrap_err();
        assert_eq!(err.key, "LOG_LEVEL");
    }
}
