//! The services' databases, written once: SQLite (embedded, the default, a
//! file under DATA_DIR) or PostgreSQL, through sqlx's `Any` driver so one
//! set of statements serves both (`$N` placeholders work on both; schemas
//! differ only where they must, in per-backend migrations).

mod tx;
mod writer;

pub use tx::{ready, Arg, Col, Row, Tx, Value};
pub use writer::{LiteTx, Writer};

use crate::config::{ConfigError, Reader};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// Where a service's data lives and how many connections it may hold.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `sqlite://…` or `postgres://…` (may carry a password: never printed).
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered
    /// 503: a database that went away fails fast instead of hanging.
    pub acquire_timeout: Duration,
}

impl DbConfig {
    /// `DATABASE_URL_FILE` (the URL in a file, e.g. a mounted Secret, so
    /// the password is in no environment `ps e` shows), else
    /// `DATABASE_URL`, else SQLite at `$DATA_DIR/<service>.db`;
    /// `DB_MAX_CONNECTIONS`, `DB_ACQUIRE_TIMEOUT_MS`.
    pub fn from_source(r: &Reader, service: &str) -> Result<Self, ConfigError> {
        let from_file = match r.raw("DATABASE_URL_FILE") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map(|s| s.trim_end().to_owned())
                    .map_err(|e| ConfigError::new("DATABASE_URL_FILE", &path, e))?,
            ),
            None => None,
        };
        let url = match from_file.or_else(|| r.raw("DATABASE_URL")) {
            Some(url) => {
                if Backend::from_url(&url).is_none() {
                    // Never echo the URL: it may carry a password.
                    return Err(ConfigError::new(
                        "DATABASE_URL",
                        "<redacted>",
                        "must start with sqlite: or postgres:",
                    ));
                }
                url
            }
            None => {
                let dir = r.string_or("DATA_DIR", "./data");
                format!(
                    "sqlite://{}/{service}.db?mode=rwc",
                    dir.trim_end_matches('/')
                )
            }
        };
        Ok(Self {
            url,
            max_connections: r.int_in("DB_MAX_CONNECTIONS", 8, 1..=256)? as u32,
            acquire_timeout: Duration::from_millis(r.int_in(
                "DB_ACQUIRE_TIMEOUT_MS",
                3_000,
                10..=60_000,
            )?),
        })
    }
}

/// The file a `sqlite://DIR/file.db?…` URL names; None for an in-memory
/// database (which a second connection, such as the [`Writer`]'s, would
/// not see).
pub fn sqlite_file(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://")?;
    let path = path.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The directory a `sqlite://DIR/file.db` URL lives in, to create it first.
pub fn sqlite_dir(url: &str) -> Option<String> {
    let path = sqlite_file(url)?;
    let dir = std::path::Path::new(path).parent()?;
    let s = dir.to_string_lossy().into_owned();
    (!s.is_empty()).then_some(s)
}

/// Opens the pool and brings the schema up to date with the backend's
/// migrations. Fails early, with the cause, when the database cannot be
/// reached or migrated.
pub async fn connect(
    c: &DbConfig,
    sqlite: &'static Migrator,
    postgres: &'static Migrator,
) -> Result<(AnyPool, Backend), String> {
    sqlx::any::install_default_drivers();
    let backend = Backend::from_url(&c.url)
        .ok_or_else(|| "DATABASE_URL must start with sqlite: or postgres:".to_owned())?;
    if let Some(dir) = sqlite_dir(&c.url) {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create data directory {dir}: {e}"))?;
    }
    let pool = AnyPoolOptions::new()
        .max_connections(c.max_connections)
        .min_connections(0)
        .acquire_timeout(c.acquire_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers run beside the single writer;
                    // busy_timeout makes writers queue instead of failing.
                    sqlx::Executor::execute(
                        &mut *conn,
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(&c.url)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let migrator = match backend {
        Backend::Sqlite => sqlite,
        Backend::Postgres => postgres,
    };
    migrator
        .run(&pool)
        .await
        .map_err(|e| format!("cannot migrate the database: {e}"))?;
    Ok((pool, backend))
}

/// sqlx errors that mean "the database is not answering" (answered 503
/// with Retry-After), as opposed to faults (500): no pooled connection in
/// time, a broken connection, SQLite's worker gone, and the PostgreSQL
/// SQLSTATEs of a server going, gone or not letting us in yet.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| pg_unavailable(&c)),
        _ => false,
    }
}

/// Worth running the whole transaction again: PostgreSQL serialization
/// failures (40001) and deadlocks (40P01).
pub fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01")))
}

/// The database answered but gave up waiting: PostgreSQL's 55P03
/// lock_not_available (lock_timeout) and 57014 query_canceled
/// (statement_timeout); SQLite BUSY and LOCKED (primary codes 5 and 6,
/// after busy_timeout, whatever the extended code: 517 BUSY_SNAPSHOT, 261
/// BUSY_RECOVERY…). SQLSTATEs are always five characters, SQLite's
/// numeric codes fewer.
pub fn is_busy(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    match d.code().as_deref() {
        Some("55P03" | "57014") => true,
        Some(c) if c.len() < 5 => c.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)),
        _ => false,
    }
}

/// What a database error means for the request that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not answering (503, Retry-After): see [`is_unavailable`].
    Unavailable,
    /// Answering but busy or colliding (503, Retry-After): [`is_busy`],
    /// [`is_retryable`] once retries ran out.
    Busy,
    /// Anything else: a fault (500), logged, never shown.
    Fault,
}

pub fn classify(e: &sqlx::Error) -> Failure {
    if is_unavailable(e) {
        Failure::Unavailable
    } else if is_busy(e) || is_retryable(e) {
        Failure::Busy
    } else {
        Failure::Fault
    }
}

/// The connection exceptions (class 08), shutdowns (57P01 admin, 57P02
/// crash, 57P03 starting up or shutting down), too many connections, and a
/// database closed to connections (55000 is what `ALLOW_CONNECTIONS false`
/// answers at connect time).
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
}

/// Now as RFC 3339 UTC text, the timestamp format of every table.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Map;

    #[test]
    fn database_url_file_wins_over_the_variable_and_is_never_echoed() {
        let dir = tempfile_dir();
        let file = dir.join("database-url");
        std::fs::write(&file, "postgres://u:s3cret@db/users\n").unwrap();
        let path = file.to_str().unwrap();
        let m = Map::new([
            ("DATABASE_URL_FILE", path),
            ("DATABASE_URL", "sqlite://x.db"),
        ]);
        let c = DbConfig::from_source(&Reader::new(&m), "users").unwrap();
        assert_eq!(c.url, "postgres://u:s3cret@db/users");
        std::fs::write(&file, "mysql://u:s3cret@db/x").unwrap();
        let e = DbConfig::from_source(&Reader::new(&m), "users").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let m = Map::new([("DATA_DIR", "/var/lib/x/")]);
        let c = DbConfig::from_source(&Reader::new(&m), "users").unwrap();
        assert_eq!(c.url, "sqlite:///var/lib/x/users.db?mode=rwc");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kit-db-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
