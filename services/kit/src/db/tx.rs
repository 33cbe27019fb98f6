//! One way to write a transaction's statements for both backends.
//!
//! A service writes each write transaction once, as an `async fn` generic
//! over [`Tx`]. On PostgreSQL it runs on a pooled sqlx connection; on
//! SQLite on the [`super::Writer`] thread, whose statements are plain
//! function calls (their futures are ready at once), so a hold or a charge
//! costs no thread hand-off per statement. Statements keep sqlx's `$N`
//! placeholders, which SQLite reads as named parameters.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _};
use std::future::Future;

/// A value bound to a `$N` placeholder: an integer or a text, either
/// possibly NULL. A NULL keeps its type, which PostgreSQL needs to plan
/// `COALESCE($1, column)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref())
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

/// `args![a, b, c]`: the `Arg`s of a statement's `$1`, `$2`, `$3`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::db::Arg::from($v)),*] };
}

/// A value read from a SQLite row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
    Null,
}

/// A result row, from either backend, read by column name.
pub enum Row {
    Any(AnyRow),
    Lite(LiteRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Row::Any(r) => f.debug_struct("Row").field("columns", &r.len()).finish(),
            Row::Lite(r) => r.fmt(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteRow {
    pub(crate) columns: Vec<(String, Value)>,
}

impl From<AnyRow> for Row {
    fn from(r: AnyRow) -> Self {
        Row::Any(r)
    }
}

/// A column type both backends decode the same way.
pub trait Col: Sized + for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> {
    fn from_lite(v: &Value) -> Option<Self>;
}

impl Col for i64 {
    fn from_lite(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl Col for String {
    fn from_lite(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: Col> Col for Option<T> {
    fn from_lite(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_lite(v).map(Some),
        }
    }
}

impl Row {
    pub fn get<T: Col>(&self, column: &str) -> Result<T, sqlx::Error> {
        match self {
            Row::Any(r) => r.try_get(column),
            Row::Lite(r) => {
                let (index, (_, v)) = r
                    .columns
                    .iter()
                    .enumerate()
                    .find(|(_, (name, _))| name == column)
                    .ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))?;
                T::from_lite(v).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: index.to_string(),
                    source: format!(
                        "column {column:?} holds {v:?}, not a {}",
                        std::any::type_name::<T>()
                    )
                    .into(),
                })
            }
        }
    }
}

/// The statements of a write transaction.
///
/// The futures are `Send` so a PostgreSQL transaction can run in a task;
/// the SQLite ones are ready when returned.
pub trait Tx {
    /// Rows changed.
    fn execute(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Row>, sqlx::Error>> + Send;

    fn fetch_all(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Row>, sqlx::Error>> + Send;
}

fn query<'q>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        };
    }
    q
}

impl Tx for AnyConnection {
    async fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, sqlx::Error> {
        Ok(query(sql, args).execute(self).await?.rows_affected())
    }

    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<Row>, sqlx::Error> {
        Ok(query(sql, args).fetch_optional(self).await?.map(Row::Any))
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, sqlx::Error> {
        Ok(query(sql, args)
            .fetch_all(self)
            .await?
            .into_iter()
            .map(Row::Any)
            .collect())
    }
}

/// Runs a future whose every await is ready at once: a write transaction's
/// body on the SQLite writer thread, where `Tx`'s statements are plain
/// calls. Anything else awaited there would stall every writer, so it is a
/// bug, and panics.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => {
            panic!("a SQLite write transaction awaited something other than its statements")
        }
    }
}
