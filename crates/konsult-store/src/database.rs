//! How the store holds its database: pool limits, the guard that discards
//! an SQLite connection left inside a transaction, which errors mean "the
//! database is unavailable, try again", readiness, and a description of the
//! database that never shows a user name or password.
//!
//! Two failures shaped this module (issue 10, items 4 and 5):
//!
//! - On a full disk SQLite rolls a transaction back by itself; the ROLLBACK
//!   that sqlx then sends fails, and sqlx-sqlite keeps counting the
//!   transaction as open. The next transaction on that connection becomes a
//!   savepoint, and its rollback (`ROLLBACK TO`) leaves a real transaction
//!   open for good: later "commits" only release savepoints, hold the write
//!   lock (everyone else gets `database is locked`) and vanish at close.
//!   [`sqlite_release_check`] closes such a connection when it goes back to
//!   the pool, so every transaction starts on a clean one.
//! - An unreachable PostgreSQL made every request wait for the pool's 30 s.
//!   The wait is now [`PoolSettings::acquire_timeout`] (a few seconds), the
//!   error says so ([`StoreError::is_unavailable`]) and start-up names the
//!   database it could not reach ([`describe_url`]).
//!
//! The release check costs three round trips to sqlx's SQLite thread, and
//! sqlx's own test before an acquire one more; a hello's read needs only
//! one. Reads that are one statement outside any transaction therefore go
//! through [`Store::reader`]: on SQLite a second pool of `query_only`
//! connections without either check (issue 14). A query-only connection
//! cannot start a write, and one statement cannot leave a transaction
//! open (sqlx resets a statement when its rows are dropped), so there is
//! nothing for the checks to catch. With one round trip per hello instead
//! of five, the signaling benchmark's joins went from 0.28–0.34× to
//! 0.40–0.41× the bare forwarder's (docs/benchmarks.md, fourth round).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::error::DatabaseError;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{AnyConnection, Connection, Executor};

use crate::{Backend, Result, Store, StoreError};

/// How long the store waits for the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Longest wait for a connection, connecting included; past it the
    /// operation fails as unavailable ([`StoreError::is_unavailable`]).
    /// Also the limit for reaching the database at start-up.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Below this much free space on its file system an SQLite database is
/// reported not ready: a write may fail with "database or disk is full".
pub const SQLITE_MIN_FREE_BYTES: u64 = 1024 * 1024;

/// Why the database cannot serve now (see [`Store::readiness`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The database does not answer (PostgreSQL unreachable, pool
    /// exhausted, SQLite file unusable).
    #[error("the database does not answer: {0}")]
    Unavailable(String),
    /// The SQLite file or its file system cannot be written.
    #[error("the database cannot be written: {0}")]
    ReadOnly(String),
    /// The SQLite file system is (nearly) full.
    #[error("the database's disk is full: {available_bytes} bytes free")]
    DiskFull {
        /// Bytes an unprivileged writer may still use.
        available_bytes: u64,
    },
}

impl NotReady {
    /// A stable code for clients and monitoring.
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::Unavailable(_) => "database_unavailable",
            NotReady::ReadOnly(_) => "database_read_only",
            NotReady::DiskFull { .. } => "database_disk_full",
        }
    }
}

/// The pool options of a backend.
pub(crate) fn pool_options(backend: Backend, settings: &PoolSettings) -> AnyPoolOptions {
    let options = AnyPoolOptions::new().acquire_timeout(settings.acquire_timeout);
    match backend {
        Backend::Sqlite => options
            .max_connections(8)
            // sqlx pings an idle connection before handing it out, for
            // connections a network may have cut; an SQLite connection is
            // a thread of this process, and the release check already
            // looked at it when it came back.
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                        .await?;
                    Ok(())
                })
            })
            .after_release(sqlite_release_check),
        Backend::Postgres => options.max_connections(16),
    }
}

/// The pool options of the SQLite readers ([`Store::reader`]): connections
/// that refuse to write, used for one statement at a time, so neither the
/// test before an acquire nor [`sqlite_release_check`] has anything to find.
pub(crate) fn sqlite_reader_options(settings: &PoolSettings) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(settings.acquire_timeout)
        .max_connections(4)
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
                    .await?;
                Ok(())
            })
        })
}

/// Keeps an SQLite connection for the pool only when it is outside any
/// transaction, by sqlx's count and by SQLite's own state; closes it
/// otherwise (closing rolls back whatever SQLite still holds open).
fn sqlite_release_check(
    conn: &mut AnyConnection,
    _: PoolConnectionMetadata,
) -> Pin<Box<dyn Future<Output = std::result::Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        // A dropped transaction only queued its ROLLBACK; wait for it.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::warn!(
                "an SQLite connection is still inside a transaction after its rollback; closing it"
            );
            return Ok(false);
        }
        // SQLite refuses BEGIN inside a transaction: the check of its own
        // state (sqlite3_get_autocommit is not reachable through sqlx::Any).
        // A deferred BEGIN takes no lock and writes nothing.
        if let Err(error) = conn.execute("BEGIN").await {
            tracing::warn!(%error, "an SQLite connection is inside a transaction sqlx does not know of; closing it");
            return Ok(false);
        }
        conn.execute("ROLLBACK").await?;
        Ok(true)
    })
}

/// Connects the pool; when the database cannot be reached, says which one
/// and why instead of sqlx's "pool timed out".
pub(crate) async fn connect_pool(
    options: AnyPoolOptions,
    url: &str,
    settings: &PoolSettings,
) -> Result<sqlx::AnyPool> {
    match options.connect(url).await {
        Ok(pool) => Ok(pool),
        Err(sqlx::Error::PoolTimedOut) => {
            // The pool retried a refused connection until its deadline and
            // kept no reason: one more attempt, to tell the operator why.
            let reason =
                match tokio::time::timeout(settings.acquire_timeout, AnyConnection::connect(url))
                    .await
                {
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(conn)) => {
                        let _ = conn.close().await;
                        "it answered only after the connection timeout".to_owned()
                    }
                    Err(_) => format!(
                        "no answer within {} s",
                        settings.acquire_timeout.as_secs_f32()
                    ),
                };
            Err(StoreError::Unreachable {
                database: describe_url(url),
                reason,
            })
        }
        Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Tls(_))) => Err(StoreError::Unreachable {
            database: describe_url(url),
            reason: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The database of a URL for people and logs: "PostgreSQL at
/// host:port/name" or "SQLite at path", never a user name or password.
pub fn describe_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
            Ok(o) => format!("SQLite at {}", o.get_filename().display()),
            Err(_) => "SQLite (unreadable URL)".to_owned(),
        }
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        match sqlx::postgres::PgConnectOptions::from_str(url) {
            Ok(o) => {
                let name = o.get_database().unwrap_or("(default database)");
                match o.get_socket() {
                    Some(socket) => format!(
                        "PostgreSQL at {}/{name} (user and password not shown)",
                        socket.display()
                    ),
                    None => format!(
                        "PostgreSQL at {}:{}/{name} (user and password not shown)",
                        o.get_host(),
                        o.get_port()
                    ),
                }
            }
            Err(_) => "PostgreSQL (unreadable URL)".to_owned(),
        }
    } else {
        "an unsupported database".to_owned()
    }
}

/// The SQLite file of a URL.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .ok()
        .map(|o| o.get_filename().to_path_buf())
        .filter(|p| p.as_os_str() != ":memory:")
}

impl StoreError {
    /// The database cannot serve now, through no fault of the request:
    /// unreachable, no connection free in time, locked, out of disk space,
    /// read-only, shutting down. Trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Database(e) => sqlx_unavailable(e),
            _ => false,
        }
    }
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(e) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                // Primary result codes: BUSY, LOCKED, READONLY, IOERR, FULL.
                let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
                matches!(code, 5 | 6 | 8 | 10 | 13)
            } else if let Some(e) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // Connection exceptions, insufficient resources (disk full,
                // out of memory, too many connections), operator
                // intervention (shutdown, cannot connect now), read-only.
                let code = e.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
            } else {
                false
            }
        }
        _ => false,
    }
}

impl Store {
    /// Whether the database can serve now, within `within`: it answers a
    /// query, and an SQLite file can be written and has room.
    pub async fn readiness(&self, within: Duration) -> std::result::Result<(), NotReady> {
        match tokio::time::timeout(within, self.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(NotReady::Unavailable(unavailable_reason(&e))),
            Err(_) => {
                return Err(NotReady::Unavailable(format!(
                    "no answer within {} ms",
                    within.as_millis()
                )))
            }
        }
        match &self.sqlite_file {
            Some(file) => sqlite_file_writable(file),
            None => Ok(()),
        }
    }
}

fn unavailable_reason(e: &StoreError) -> String {
    match e {
        StoreError::Database(sqlx::Error::PoolTimedOut) => "no connection in time".to_owned(),
        StoreError::Database(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// The SQLite file opens for writing and its file system is writable and
/// has [`SQLITE_MIN_FREE_BYTES`].
fn sqlite_file_writable(file: &Path) -> std::result::Result<(), NotReady> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| NotReady::ReadOnly(e.to_string()))?;
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(file).map_err(|e| NotReady::ReadOnly(e.to_string()))?;
        if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
            return Err(NotReady::ReadOnly("read-only file system".to_owned()));
        }
        let available_bytes = stat.f_bavail.saturating_mul(stat.f_frsize);
        if available_bytes < SQLITE_MIN_FREE_BYTES {
            return Err(NotReady::DiskFull { available_bytes });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Cipher;

    /// The SQLite readers skip the checks that guard transactions, which
    /// holds only while they cannot write and see each commit at once.
    #[tokio::test]
    async fn sqlite_readers_refuse_writes_and_see_each_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = Store::connect(&url, Cipher::from_key(&[7u8; 32]).unwrap())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE probe (n INTEGER)")
            .execute(&store.pool)
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO probe (n) VALUES (1)")
            .execute(store.reader())
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("readonly"),
            "a reader wrote: {refused}"
        );
        for n in 1..=3_i64 {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("INSERT INTO probe (n) VALUES ($1)")
                .bind(n)
                .execute(tx.conn())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            // Every reader connection, not only the one that read last.
            for _ in 0..4 {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM probe")
                    .fetch_one(store.reader())
                    .await
                    .unwrap();
                assert_eq!(count, n);
            }
        }
        store.close().await;
    }

    #[test]
    fn a_described_url_shows_no_credentials() {
        let d = describe_url("postgres://konsult:hemmelig@db.example:6543/klinik");
        assert_eq!(
            d,
            "PostgreSQL at db.example:6543/klinik (user and password not shown)"
        );
        assert!(!d.contains("hemmelig") && !d.contains("konsult:"));
        assert_eq!(
            describe_url("sqlite:///var/lib/konsult/konsult.db?mode=rwc"),
            "SQLite at /var/lib/konsult/konsult.db"
        );
    }
}
