//! Konsult storage on sqlx: SQLite (one file, the embedded default) or
//! PostgreSQL (production and scale-out), chosen by the database URL.
//!
//! One code path serves both through `sqlx::Any`: queries use `$n`
//! placeholders, which both dialects accept, and only the portable column
//! types (TEXT, BIGINT, BLOB/BYTEA). Each dialect has its own migration
//! folder with the same schema; both run embedded at [`Store::connect`].
//!
//! Every query of tenant data is filtered by the clinic id of the caller,
//! every read or write of a patient's data appends to the tamper-evident
//! audit chain ([`audit`]) in the same transaction, and personal fields are
//! sealed with the data-at-rest key ([`crypto`]).
#![warn(missing_docs)]

pub mod access_log;
pub mod audit;
pub mod billing;

pub mod clinical;
pub mod clinics;
pub mod consultations;

pub mod crypto;
pub mod database;
pub mod export;
pub mod fees;
pub mod patients;
pub mod retention;
pub mod therapists;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use konsult_domain::ClinicId;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use crypto::{Cipher, CryptoError};
pub use database::{NotReady, PoolSettings};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (WAL mode); one writer at a time.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or belongs to another clinic (never told apart).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change conflicts with the current state (a duplicate, a state
    /// that does not allow it); nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// A conflict with a stable code for clients (e.g. `patient_inactive`,
    /// `speciale_not_offered`); nothing was changed.
    #[error("{message}")]
    Refused {
        /// Stable code.
        code: &'static str,
        /// What is wrong, for people.
        message: String,
    },
    /// A patient with the same CPR number already exists in the clinic.
    #[error("a patient with this CPR number already exists")]
    DuplicatePatient {
        /// The patient who has the CPR number.
        existing: konsult_domain::PatientId,
    },
    /// The billing period has not ended yet, so lines can still be posted in it.
    #[error("the period is not over: lines can still be posted until {last_day} (today is {today}); export it from the day after")]
    PeriodOpen {
        /// The period's last day.
        last_day: NaiveDate,
        /// Today, Danish time.
        today: NaiveDate,
    },
    /// A stored value could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A stored value does not parse into its domain type.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// The database URL is not supported.
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// The database could not be reached (at start-up).
    #[error("cannot reach {database}: {reason}")]
    Unreachable {
        /// Which database, without user name or password
        /// ([`database::describe_url`]).
        database: String,
        /// Why.
        reason: String,
    },
    /// Running the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique-constraint violation of one statement to a domain error,
/// in one place rather than by matching strings in handlers.
pub(crate) trait ResultExt<T> {
    /// Turns a unique violation into `StoreError::Conflict(message)`.
    fn on_unique(self, message: &str) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn on_unique(self, message: &str) -> Result<T> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(message.to_owned())
            }
            _ => StoreError::Database(e),
        })
    }
}

/// How many change notices a slow subscriber may fall behind before it
/// is told it lagged.
const CHANGE_BACKLOG: usize = 1024;

/// One connection pool's size at a moment ([`Store::pool_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// `main` or `reader`.
    pub pool: &'static str,
    /// Connections open.
    pub size: usize,
    /// Of those, idle.
    pub idle: usize,
}

/// The storage handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// For reads of one statement outside a transaction (see
    /// [`Store::reader`]); on PostgreSQL the same pool.
    read_pool: AnyPool,
    backend: Backend,
    cipher: Cipher,
    /// SQLite allows one writer; taking this before a write transaction
    /// avoids `SQLITE_BUSY` on lock upgrades inside one process.
    writer: Arc<Mutex<()>>,
    /// The SQLite file, whose file system readiness checks.
    sqlite_file: Option<std::path::PathBuf>,
    /// Clinics whose consultations changed, sent after each commit.
    changes: tokio::sync::broadcast::Sender<ClinicId>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// A write transaction; dropped without [`Tx::commit`] it rolls back.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
    /// For the audit entries appended in this transaction (keyed chain).
    cipher: Cipher,
    /// Clinics whose consultations this transaction changed.
    touched: Vec<ClinicId>,
    changes: tokio::sync::broadcast::Sender<ClinicId>,
}

impl Tx {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<()> {
        self.inner.commit().await?;
        // Durable first: only now may anyone hear of the change. Nobody
        // listening is not an error.
        for clinic in self.touched {
            let _ = self.changes.send(clinic);
        }
        Ok(())
    }

    /// Notes that a consultation of `clinic` was added or changed state
    /// (see [`Store::subscribe_changes`]).
    pub(crate) fn touch(&mut self, clinic: ClinicId) {
        if !self.touched.contains(&clinic) {
            self.touched.push(clinic);
        }
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }

    pub(crate) fn cipher(&self) -> &Cipher {
        &self.cipher
    }
}

impl Store {
    /// Connects, creating an SQLite file if needed, and runs the embedded
    /// migrations.
    pub async fn connect(url: &str, cipher: Cipher) -> Result<Self> {
        Self::connect_with(url, cipher, &PoolSettings::default()).await
    }

    /// [`Store::connect`] with the given waits; an unreachable database is
    /// [`StoreError::Unreachable`], named.
    pub async fn connect_with(url: &str, cipher: Cipher, settings: &PoolSettings) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = database::pool_options(backend, settings);
        let pool = database::connect_pool(options, &url, settings).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        // After the migrations: a reader must not see a half-made schema.
        let read_pool = match backend {
            Backend::Sqlite => {
                let options = database::sqlite_reader_options(settings);
                database::connect_pool(options, &url, settings).await?
            }
            Backend::Postgres => pool.clone(),
        };
        let store = Self {
            pool,
            read_pool,
            backend,
            cipher,
            writer: Arc::new(Mutex::new(())),
            sqlite_file: match backend {
                Backend::Sqlite => database::sqlite_file(&url),
                Backend::Postgres => None,
            },
            changes: tokio::sync::broadcast::channel(CHANGE_BACKLOG).0,
        };
        // What migrations cannot fill in SQL: keyed CPR lookups (the key is not in the
        // database) and the Danish posting day of reversals.
        let duplicates = store.backfill_cpr_lookups().await?;
        if duplicates > 0 {
            tracing::warn!(
                duplicates,
                "patients share a CPR number with an earlier patient; merge them in the dashboard"
            );
        }
        store.backfill_posting_days().await?;
        Ok(store)
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The data-at-rest cipher.
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }

    /// The pool for a read that is one statement outside any transaction
    /// (a single statement is a consistent snapshot by itself). On SQLite
    /// its connections are `query_only` and skip the checks that guard
    /// transactions (see `database.rs`), so it must never run BEGIN or
    /// several statements that belong together.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read_pool
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        let writer = match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        Ok(Tx {
            inner: self.pool.begin().await?,
            _writer: writer,
            cipher: self.cipher.clone(),
            touched: Vec::new(),
            changes: self.changes.clone(),
        })
    }

    /// Starts a transaction that only reads: one consistent snapshot,
    /// without the writer lock (SQLite's write-ahead log lets readers run
    /// beside the one writer). Nothing may be written through it.
    pub async fn begin_read(&self) -> Result<Tx> {
        Ok(Tx {
            inner: self.pool.begin().await?,
            _writer: None,
            cipher: self.cipher.clone(),
            touched: Vec::new(),
            changes: self.changes.clone(),
        })
    }

    /// The clinics whose consultations are added or change state in this
    /// process, each sent once its transaction is committed. A receiver
    /// that falls behind gets `Lagged` and should re-read what it shows;
    /// changes made by another node are not seen here.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<ClinicId> {
        self.changes.subscribe()
    }

    /// Checks that the database answers (used by `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The connection pools' sizes now (for operators' metrics): `main`,
    /// and on SQLite the query-only `reader`.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let stats = |pool: &'static str, p: &AnyPool| PoolStats {
            pool,
            size: p.size() as usize,
            idle: p.num_idle(),
        };
        let mut all = vec![stats("main", &self.pool)];
        if self.backend == Backend::Sqlite {
            all.push(stats("reader", &self.read_pool));
        }
        all
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.read_pool.close().await;
        self.pool.close().await;
    }
}

/// Milliseconds since the epoch, the stored form of an instant.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant of stored milliseconds.
pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

pub(crate) fn opt_from_ms(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(from_ms).transpose()
}

pub(crate) fn parse_day(text: &str) -> Result<NaiveDate> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("calendar day {text:?}")))
}

pub(crate) fn parse_uuid(text: &str) -> Result<uuid::Uuid> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

/// Reads a uuid column.
pub(crate) fn get_uuid(row: &AnyRow, col: &str) -> Result<uuid::Uuid> {
    parse_uuid(&row.try_get::<String, _>(col)?)
}

/// Reads a speciale column (51 or 62).
pub(crate) fn get_speciale(row: &AnyRow, col: &str) -> Result<konsult_domain::Speciale> {
    let code: i64 = row.try_get(col)?;
    u16::try_from(code)
        .ok()
        .and_then(|c| konsult_domain::Speciale::try_from(c).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("speciale {code}")))
}

/// Reads a 0/1 flag column.
pub(crate) fn get_flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}
