//! The data directory's embedded database: one redb file, `dfserve.redb` under `--data-dir`,
//! holding everything that must outlast the process (hash lists, reviewers' decisions), each
//! concern in its own table.
//!
//! Why one file: a commit is atomic within one database, a backup is one file copy, and redb
//! takes an exclusive lock on the file, so two servers cannot share a data dir by accident.
//! Why redb: an embedded, pure-Rust, ACID key-value store whose commits are durable (fsync'd)
//! and crash-safe by design (copy-on-write B-trees, so a killed process leaves the last
//! committed state), with no C library to build and no server to run. SQLite would do as well
//! but brings a C build and SQL for what are sorted maps; sled is no longer maintained.
//!
//! Storage faults. After one failed write (a full disk, a file made read-only, an I/O error)
//! redb refuses every later operation ("Previous I/O error occurred") until the database is
//! closed and opened again. [`DataStore`] does that itself: a failed transaction marks the store
//! as failing and closes the database; the next operation, or a readiness probe, opens it again
//! and, once a write commits, the store is healthy again, with no restart. Meanwhile storage
//! errors are [`StorageError`]s (503 `storage_unavailable` with `Retry-After`), the metric
//! `dfserve_storage_writable` is 0 and readiness details say why; detection, which reads
//! in-memory indexes only, keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::{IntCounter, IntGauge};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

/// The database file's name under the data dir.
pub const FILE: &str = "dfserve.redb";
/// Its name before decisions joined the hash lists in it; renamed on first open.
const OLD_FILE: &str = "hashlists.redb";
/// The table a readiness probe writes to when the store is failing.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("storage_probe");
/// How often a failing store may be reopened and probed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The database file of `dir`, whichever name it has now.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Whether `dir` holds a database (under either name).
pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).is_file() || dir.join(OLD_FILE).is_file()
}

/// Storage did not do what was asked: the caller should retry later; what was asked was not
/// applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageError(pub String);

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> StorageError {
                StorageError(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// Errors of work done inside a transaction: either storage's own or the caller's (a bad
/// entry in an import). Only the first kind marks the store as failing.
pub trait TxnError: From<StorageError> + std::fmt::Display {
    fn is_storage(&self) -> bool;
}

impl TxnError for StorageError {
    fn is_storage(&self) -> bool {
        true
    }
}

/// Whether writes are working, for readiness and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StorageState {
    pub writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The data dir's database, reopened after a fault.
pub struct DataStore {
    path: PathBuf,
    /// `None` while closed after a fault and not yet reopened. Every transaction runs under
    /// the read lock, so a reopen (under the write lock) never drops a database in use.
    db: RwLock<Option<Database>>,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    last_retry: Mutex<Option<Instant>>,
    /// How many times the database was reopened after a fault.
    reopens: AtomicU64,
    writable: IntGauge,
    failures: IntCounter,
}

fn open_file(path: &Path) -> Result<Database, redb::DatabaseError> {
    // A small page cache: hash matching reads in-memory indexes, never the database, which is
    // read whole only at start.
    redb::Builder::new().set_cache_size(16 << 20).create(path)
}

impl DataStore {
    /// Opens (or creates) the database of `dir`; a fault here is an error at start.
    pub fn open(dir: &Path) -> anyhow::Result<Arc<DataStore>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating --data-dir {}", dir.display()))?;
        let path = path(dir);
        let old = dir.join(OLD_FILE);
        if !path.exists() && old.is_file() {
            std::fs::rename(&old, &path)
                .with_context(|| format!("renaming {} to {}", old.display(), path.display()))?;
            tracing::info!(from = %old.display(), to = %path.display(), "data dir database renamed");
        }
        let db = open_file(&path)
            .with_context(|| format!("opening {} (is another dfserve using this --data-dir?)", path.display()))?;
        let writable = IntGauge::new("dfserve_storage_writable", "1 while the data dir's database accepts writes")
            .expect("metric");
        writable.set(1);
        let failures =
            IntCounter::new("dfserve_storage_failures_total", "Database transactions that failed on storage")
                .expect("metric");
        Ok(Arc::new(DataStore {
            path,
            db: RwLock::new(Some(db)),
            failing: AtomicBool::new(false),
            last_error: Mutex::new(None),
            last_retry: Mutex::new(None),
            reopens: AtomicU64::new(0),
            writable,
            failures,
        }))
    }

    /// Adds this store's metrics to `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> anyhow::Result<()> {
        registry.register(Box::new(self.writable.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it (durable when this returns). On an
    /// error nothing of `f` is applied.
    pub fn write<T, E: TxnError>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, E>) -> Result<T, E> {
        let out = self.with_db(|db| {
            let txn = db.begin_write().map_err(StorageError::from)?;
            let value = f(&txn)?;
            txn.commit().map_err(StorageError::from)?;
            Ok(value)
        });
        if out.is_ok() {
            self.healthy();
        }
        out
    }

    /// Runs `f` in one read transaction.
    pub fn read<T, E: TxnError>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, E>) -> Result<T, E> {
        self.with_db(|db| f(&db.begin_read().map_err(StorageError::from)?))
    }

    /// Runs `f` on the open database, reopening it first if a fault closed it; a storage
    /// failure in `f` closes it.
    fn with_db<T, E: TxnError>(&self, f: impl FnOnce(&Database) -> Result<T, E>) -> Result<T, E> {
        {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            if let Some(db) = guard.as_ref() {
                let out = f(db);
                drop(guard);
                if let Err(e) = &out {
                    if e.is_storage() {
                        self.fault(e);
                    }
                }
                return out;
            }
        }
        self.reopen().map_err(E::from)?;
        self.with_db_open(f)
    }

    /// `with_db` once reopened: no second reopen in one call.
    fn with_db_open<T, E: TxnError>(&self, f: impl FnOnce(&Database) -> Result<T, E>) -> Result<T, E> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or_else(|| E::from(self.unavailable()))?;
        let out = f(db);
        drop(guard);
        if let Err(e) = &out {
            if e.is_storage() {
                self.fault(e);
            }
        }
        out
    }

    fn unavailable(&self) -> StorageError {
        let why = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        StorageError(format!("the database {} is closed after a fault ({why}); retry later", self.path.display()))
    }

    /// Records a storage failure and closes the database, so the next use opens it afresh.
    fn fault<E: std::fmt::Display>(&self, e: &E) {
        let msg = e.to_string();
        tracing::error!(path = %self.path.display(), error = %msg, "storage failed; the database will be reopened");
        self.failures.inc();
        self.writable.set(0);
        self.failing.store(true, Ordering::SeqCst);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        *db = None;
    }

    fn healthy(&self) {
        if self.failing.swap(false, Ordering::SeqCst) {
            tracing::info!(path = %self.path.display(), "storage writes work again");
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.writable.set(1);
    }

    /// Opens the database again if it is closed (at most once per [`RETRY_EVERY`]).
    fn reopen(&self) -> Result<(), StorageError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        if db.is_some() {
            return Ok(());
        }
        {
            let mut last = self.last_retry.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return Err(self.unavailable());
            }
            *last = Some(Instant::now());
        }
        match open_file(&self.path) {
            Ok(opened) => {
                tracing::info!(path = %self.path.display(), "database reopened after a fault");
                *db = Some(opened);
                self.reopens.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => {
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                Err(self.unavailable())
            }
        }
    }

    /// How many times the database was reopened after a fault: whoever keeps state derived
    /// from it (the hash-list index) reloads it when this changes.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::SeqCst)
    }

    /// Whether writes work. A failing store is reopened and probed with a one-row write (at
    /// most once per second), so recovery shows without waiting for a client's write.
    pub fn state(&self) -> StorageState {
        if self.failing.load(Ordering::SeqCst) {
            let due =
                self.last_retry.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|t| t.elapsed() >= RETRY_EVERY);
            if due {
                let _ = self.write(|txn| -> Result<(), StorageError> {
                    let mut t = txn.open_table(PROBE)?;
                    let n = t.get("writes")?.map_or(0, |v| v.value());
                    t.insert("writes", n + 1)?;
                    Ok(())
                });
            }
        }
        let failing = self.failing.load(Ordering::SeqCst);
        StorageState {
            writable: !failing,
            error: if failing { self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone() } else { None },
        }
    }
}

/// Gives memory freed by a large change (a deleted list, a finished import) back to the
/// system. glibc keeps freed heap in per-thread arenas, so without this a server's resident
/// size stays at its peak after the data is gone.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
