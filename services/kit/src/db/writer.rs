//! SQLite's one writer, on a thread of its own, committing in groups.
//!
//! SQLite lets one transaction write at a time. Through sqlx every
//! statement is a round trip to the connection's worker thread and back to
//! the async task (measured: about half of a hold's CPU went to those
//! hand-offs, and a hold took 5 of them while holding the write lock).
//! Here the transactions run on one thread with a synchronous connection
//! and cached prepared statements, and whatever queued while one batch ran
//! is the next batch: one `BEGIN IMMEDIATE … COMMIT` around many requests,
//! each in its own SAVEPOINT, so a request that fails rolls back alone and
//! the others still commit together. Nobody hears an answer before its
//! batch has committed; if the COMMIT fails, every request in the batch
//! gets that error and nothing of the batch stays.
//!
//! The work runs to its end even if the request that asked for it is gone
//! (a client hanging up), so no transaction is ever left half-done.
//!
//! Checkpoints (copying the WAL back into the database file, with an
//! fsync) run on a second thread and connection, never inside a COMMIT:
//! SQLite's automatic checkpoint ran in whichever COMMIT crossed 1000 WAL
//! pages and stalled every queued writer behind its fsync (hold p99 190 ms
//! in a 10 s run). A PASSIVE checkpoint beside the writer blocks nobody.

use super::tx::{Arg, LiteRow, Row, Tx, Value};
use rusqlite::{ffi, Connection};
use sqlx::error::{DatabaseError, ErrorKind};
use std::borrow::Cow;
use std::sync::mpsc;

/// Requests one transaction may carry. Bounded so one COMMIT's latency
/// stays small however long the queue grows.
const MAX_BATCH: usize = 256;

/// Committed transactions between two checkpoints: about SQLite's own
/// 1000-page automatic threshold for transactions of a few pages.
const CHECKPOINT_EVERY: u32 = 256;
/// And once the writer has been idle this long after a write.
const CHECKPOINT_WHEN_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The SQLite side of [`Tx`]: the writer thread's connection, inside its
/// open transaction.
pub struct LiteTx<'c> {
    conn: &'c Connection,
}

/// Sends work to the writer thread. Cheap to clone; the thread ends, and
/// closes its connection, when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

trait Job: Send {
    /// Runs the work; whether to keep what it wrote.
    fn run(&mut self, tx: &mut LiteTx<'_>) -> bool;
    /// Called once the batch's fate is known: `Ok` committed, else the
    /// error every request of the batch answers.
    fn finish(self: Box<Self>, batch: Result<(), &rusqlite::Error>);
}

struct Work<F, T, E, A> {
    work: Option<F>,
    result: Option<Result<T, E>>,
    on_commit: A,
    reply: tokio::sync::oneshot::Sender<Result<T, E>>,
}

impl<F, T, E, A> Job for Work<F, T, E, A>
where
    F: FnOnce(&mut LiteTx<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<sqlx::Error> + Send,
    A: FnOnce(&T) + Send,
{
    fn run(&mut self, tx: &mut LiteTx<'_>) -> bool {
        let work = self.work.take().expect("a job runs once");
        let r = work(tx);
        let keep = r.is_ok();
        self.result = Some(r);
        keep
    }

    fn finish(self: Box<Self>, batch: Result<(), &rusqlite::Error>) {
        let r = match (batch, self.result) {
            (Ok(()), Some(r)) => {
                if let Ok(v) = &r {
                    (self.on_commit)(v);
                }
                r
            }
            (Err(e), _) => Err(E::from(to_sqlx(e))),
            (Ok(()), None) => Err(E::from(sqlx::Error::WorkerCrashed)),
        };
        // The requester may have gone (hung up): the work is done anyway.
        let _ = self.reply.send(r);
    }
}

impl Writer {
    /// Opens the database file (already migrated through sqlx) for writing
    /// and starts the thread.
    pub fn open(path: &str) -> Result<Self, String> {
        let open = || {
            let conn = Connection::open(path)
                .map_err(|e| format!("cannot open the database {path} for writing: {e}"))?;
            // The pool's connections have the same settings (kit::db::connect):
            // NORMAL in WAL mode makes a COMMIT durable against a crash of
            // the process (not of the machine) without an fsync per commit.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA wal_autocheckpoint = 0;",
            )
            .map_err(|e| format!("cannot set up the database {path}: {e}"))?;
            Ok::<_, String>(conn)
        };
        let conn = open()?;
        conn.set_prepared_statement_cache_capacity(128);
        let checkpointer = open()?;
        // One pending request is enough: a checkpoint copies everything.
        let (due, wake) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(checkpointer, wake))
            .map_err(|e| format!("cannot start the database checkpoint thread: {e}"))?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || serve(conn, queue, due))
            .map_err(|e| format!("cannot start the database writer thread: {e}"))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in a write transaction and answers once it committed.
    /// `work` keeps its writes by returning `Ok`; an `Err` undoes them.
    /// `on_commit` runs on the writer thread right after the COMMIT, in
    /// commit order: the place to publish what the transaction changed to
    /// an in-process cache.
    pub async fn run<T, E, F, A>(&self, work: F, on_commit: A) -> Result<T, E>
    where
        F: FnOnce(&mut LiteTx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Box::new(Work {
            work: Some(work),
            result: None,
            on_commit,
            reply,
        });
        self.jobs
            .send(job)
            .map_err(|_| E::from(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(sqlx::Error::WorkerCrashed)))
    }
}

fn serve(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>, checkpoint: mpsc::SyncSender<()>) {
    let mut since_checkpoint = 0;
    loop {
        let first = if since_checkpoint == 0 {
            match queue.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        } else {
            match queue.recv_timeout(CHECKPOINT_WHEN_IDLE) {
                Ok(job) => job,
                // Quiet for a while: merge what the WAL holds now, so it
                // does not sit unmerged until the next burst.
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = checkpoint.try_send(());
                    since_checkpoint = 0;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, batch);
        since_checkpoint += 1;
        if since_checkpoint >= CHECKPOINT_EVERY {
            // Full: one is pending already, and it will copy this too.
            let _ = checkpoint.try_send(());
            since_checkpoint = 0;
        }
    }
    // Writes are over: merge the WAL before the connection closes.
    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

fn checkpoints(conn: Connection, wake: mpsc::Receiver<()>) {
    while wake.recv().is_ok() {
        // PASSIVE: copies what no reader still needs, waits for nobody.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "a WAL checkpoint failed; the next one retries");
        }
    }
}

fn run_batch(conn: &Connection, jobs: Vec<Box<dyn Job>>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        for job in jobs {
            job.finish(Err(&e));
        }
        return;
    }
    let mut ran: Vec<Box<dyn Job>> = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        if let Err(e) = step(conn, "SAVEPOINT job") {
            job.finish(Err(&e));
            continue;
        }
        let keep = job.run(&mut LiteTx { conn });
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (it does on
            // some errors, e.g. a full disk): what ran before is gone too.
            let e = rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_ABORT),
                Some("the transaction was rolled back".into()),
            );
            for done in ran.drain(..) {
                done.finish(Err(&e));
            }
            job.finish(Err(&e));
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                // Nothing left in this batch can run; the next one retries.
                tracing::error!(error = %e, "cannot begin a write transaction");
                return;
            }
            continue;
        }
        let end = if keep {
            step(conn, "RELEASE job")
        } else {
            step(conn, "ROLLBACK TO job").and_then(|()| step(conn, "RELEASE job"))
        };
        match end {
            Ok(()) => ran.push(job),
            Err(e) => job.finish(Err(&e)),
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for job in ran {
                job.finish(Ok(()));
            }
        }
        Err(e) => {
            // A failed COMMIT (e.g. busy) leaves the transaction open.
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!(error = %e, requests = ran.len(), "a write transaction did not commit");
            for job in ran {
                job.finish(Err(&e));
            }
        }
    }
}

fn step(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

impl LiteTx<'_> {
    fn statement(
        &self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        // By name: `$2` may come before `$1` in the text, and SQLite
        // numbers parameters in the order they first appear.
        for (i, a) in args.iter().enumerate() {
            let Some(index) = stmt.parameter_index(&format!("${}", i + 1))? else {
                continue;
            };
            match *a {
                Arg::Int(v) => stmt.raw_bind_parameter(index, v)?,
                Arg::Text(v) => stmt.raw_bind_parameter(index, v)?,
            }
        }
        Ok(stmt)
    }

    fn rows(&self, sql: &str, args: &[Arg<'_>], limit: usize) -> rusqlite::Result<Vec<Row>> {
        let mut stmt = self.statement(sql, args)?;
        let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next()? else { break };
            let mut columns = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                use rusqlite::types::ValueRef;
                let v = match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Real(_) | ValueRef::Blob(_) => {
                        return Err(rusqlite::Error::InvalidColumnType(
                            i,
                            name.clone(),
                            r.get_ref(i)?.data_type(),
                        ))
                    }
                };
                columns.push((name.clone(), v));
            }
            out.push(Row::Lite(LiteRow { columns }));
        }
        Ok(out)
    }
}

impl Tx for LiteTx<'_> {
    fn execute(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send {
        let r = self
            .statement(sql, args)
            .and_then(|mut s| s.raw_execute())
            .map(|n| n as u64)
            .map_err(|e| to_sqlx(&e));
        std::future::ready(r)
    }

    fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl std::future::Future<Output = Result<Option<Row>, sqlx::Error>> + Send {
        let r = self
            .rows(sql, args, 1)
            .map(|rows| rows.into_iter().next())
            .map_err(|e| to_sqlx(&e));
        std::future::ready(r)
    }

    fn fetch_all(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl std::future::Future<Output = Result<Vec<Row>, sqlx::Error>> + Send {
        std::future::ready(self.rows(sql, args, usize::MAX).map_err(|e| to_sqlx(&e)))
    }
}

/// A SQLite error as sqlx reports SQLite's own, so the services' error
/// mapping (unique and CHECK violations, …) is the same on both paths.
#[derive(Debug)]
struct LiteError {
    message: String,
    code: i32,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn to_sqlx(e: &rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => sqlx::Error::Database(Box::new(LiteError {
            message: message.clone().unwrap_or_else(|| f.to_string()),
            code: f.extended_code,
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args;
    use crate::db::ready;

    fn temp_db() -> (String, Writer) {
        let dir = std::env::temp_dir().join(format!(
            "kit-writer-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db").to_string_lossy().into_owned();
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0), note TEXT)",
        )
        .unwrap();
        drop(c);
        let w = Writer::open(&path).unwrap();
        (path, w)
    }

    async fn insert(w: &Writer, id: &'static str, n: i64) -> Result<u64, sqlx::Error> {
        w.run(
            move |tx| {
                ready(tx.execute(
                    "INSERT INTO t (id, n, note) VALUES ($1, $2, $3)",
                    &args![id, n, None::<&str>],
                ))
            },
            |_| {},
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_request_rolls_back_alone_and_the_batch_commits() {
        let (path, w) = temp_db();
        // Many at once, so they share batches; every second one breaks the
        // CHECK after its first statement.
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                w.run(
                    move |tx| {
                        ready(async {
                            let id = format!("k{i}");
                            tx.execute("INSERT INTO t (id, n) VALUES ($1, 1)", &args![&id])
                                .await?;
                            let delta = if i % 2 == 0 { -5 } else { 1 };
                            tx.execute("UPDATE t SET n = n + $2 WHERE id = $1", &args![&id, delta])
                                .await
                        })
                    },
                    |_| {},
                )
                .await
            }));
        }
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(1) => {}
                Err(sqlx::Error::Database(d)) if d.is_check_violation() => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 100);
        let c = Connection::open(&path).unwrap();
        let (rows, total): (i64, i64) = c
            .query_row("SELECT COUNT(*), SUM(n) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((rows, total), (100, 200), "only the good ones, whole");
    }

    #[tokio::test]
    async fn parameters_bind_by_name_and_rows_read_by_column() {
        let (_path, w) = temp_db();
        insert(&w, "a", 3).await.unwrap();
        let e = insert(&w, "a", 4).await.unwrap_err();
        assert!(
            matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()),
            "{e:?}"
        );
        let row = w
            .run(
                |tx| {
                    ready(tx.fetch_optional(
                        // $2 first in the text: bound by name, not position.
                        "UPDATE t SET n = n + $2, note = $3 WHERE id = $1 RETURNING id, n, note",
                        &args!["a", 10, "ten more"],
                    ))
                },
                |_| {},
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.get::<i64>("n").unwrap(), 13);
        assert_eq!(row.get::<String>("id").unwrap(), "a");
        assert_eq!(
            row.get::<Option<String>>("note").unwrap().as_deref(),
            Some("ten more")
        );
        assert!(row.get::<i64>("note").is_err());
        assert!(row.get::<i64>("nope").is_err());
    }

    #[tokio::test]
    async fn the_wal_is_merged_beside_the_writer_not_in_its_commits() {
        let (path, w) = temp_db();
        for i in 0..(CHECKPOINT_EVERY as i64 + 10) {
            let id: &'static str = Box::leak(format!("c{i}").into_boxed_str());
            insert(&w, id, 1).await.unwrap();
        }
        // Checkpointed rows are in the database file itself: a reader that
        // ignores the WAL (immutable) sees them.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let c = Connection::open(format!("file:{path}?immutable=1")).unwrap();
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .unwrap_or(0);
            if n >= CHECKPOINT_EVERY as i64 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint: {n} rows in the file"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[tokio::test]
    async fn on_commit_runs_after_the_commit_only_for_kept_work() {
        let (_path, w) = temp_db();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for (id, n) in [("x", 1), ("y", -1)] {
            let s = seen.clone();
            let _ = w
                .run(
                    move |tx| {
                        ready(tx.execute("INSERT INTO t (id, n) VALUES ($1, $2)", &args![id, n]))
                    },
                    move |_| s.lock().unwrap().push(id),
                )
                .await;
        }
        assert_eq!(*seen.lock().unwrap(), vec!["x"]);
    }
}
