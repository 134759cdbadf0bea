//! PostgreSQL for a fleet (`--database-url`): one connection pool, its TLS, and the schema's
//! migrations, shared by the stores that live there (hash lists in `hashlists::pg`, decisions
//! in `decisions::pg`). Those modules own their SQL; this one owns getting to the database.
//!
//! Why the sync `postgres` client with an r2d2 pool. The stores are called from blocking
//! threads, as the embedded store is, and the hash lists' follower is a thread that waits on
//! notifications. `postgres` is tokio-postgres behind a small blocking facade, from the same
//! maintainers; sqlx would bring its own runtime model and macros that are not needed here.
//! TLS is rustls (already the server's TLS stack), with libpq's `sslmode` ([`tls`]).

pub mod tls;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use postgres::Client;
use r2d2_postgres::{r2d2, PostgresConnectionManager};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::datastore::StorageError;

/// The schema, one migration a version, applied in order at start (and by `dfserve store
/// migrate`). Never edit a released migration: add the next one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE hashlist_entries (
             list text NOT NULL,
             id text NOT NULL,
             entry jsonb NOT NULL,
             PRIMARY KEY (list, id)
         );
         CREATE TABLE hashlist_changes (
             seq bigserial PRIMARY KEY,
             txn bigint NOT NULL,
             at timestamptz NOT NULL DEFAULT now(),
             list text NOT NULL,
             op text NOT NULL CHECK (op IN ('put', 'delete', 'drop', 'commit')),
             id text,
             entry jsonb,
             old jsonb
         );
         CREATE SEQUENCE hashlist_txn;",
    ),
    // Decisions, as the data dir keeps them: one a reviewer and item, in the export's order by
    // time (byte order, hence "C"), and each reviewer's stored bytes for the quota. `json`, not
    // `jsonb`, keeps the text as written, so its length is the bytes the quota counts.
    (
        2,
        "CREATE TABLE decisions (
             sha256 text COLLATE \"C\" NOT NULL,
             reviewer text COLLATE \"C\" NOT NULL,
             decided_at text COLLATE \"C\" NOT NULL,
             value json NOT NULL,
             PRIMARY KEY (sha256, reviewer)
         );
         CREATE INDEX decisions_by_time ON decisions (decided_at, sha256, reviewer);
         CREATE TABLE decision_bytes (
             reviewer text COLLATE \"C\" PRIMARY KEY,
             bytes bigint NOT NULL
         );",
    ),
    // How far the hash lists' change log has been pruned: a follower behind it reloads.
    (
        3,
        "CREATE TABLE hashlist_log_horizon (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             pruned_through bigint NOT NULL
         );
         INSERT INTO hashlist_log_horizon (pruned_through) VALUES (0);",
    ),
];

/// The schema version this build writes (the last migration's).
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock under which migrations run, so replicas starting together apply each once.
const MIGRATION_LOCK: i64 = 0x6466_7365_7276_0002;

type Manager = PostgresConnectionManager<MakeRustlsConnect>;
/// A connection from the pool.
pub type Conn = r2d2::PooledConnection<Manager>;

pub fn storage(e: impl std::fmt::Display) -> StorageError {
    StorageError(format!("PostgreSQL: {e}"))
}

/// A client error with its causes ("error performing TLS handshake: invalid peer certificate:
/// UnknownIssuer"), which the client's own message leaves out.
fn with_causes(e: &postgres::Error) -> StorageError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    storage(text)
}

/// The fleet's database: a pool of connections with one TLS policy.
pub struct Db {
    pool: r2d2::Pool<Manager>,
    config: postgres::Config,
    tls: MakeRustlsConnect,
    mode: tls::Mode,
}

impl Db {
    /// Connects to `url` (a libpq URL or key=value string, `sslmode` and `sslrootcert`
    /// included) and brings the schema up to date.
    pub fn connect(url: &str) -> Result<Arc<Db>, StorageError> {
        let conn = tls::parse(url).map_err(storage)?;
        let manager = PostgresConnectionManager::new(conn.config.clone(), conn.tls.clone());
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(3))
            .build_unchecked(manager);
        let db = Db { pool, config: conn.config, tls: conn.tls, mode: conn.mode };
        // The first connection outside the pool, whose errors keep their causes: a refused
        // certificate says why at start, where an operator looks.
        db.dedicated()?;
        let applied = db.migrate()?;
        if !applied.is_empty() {
            tracing::info!(?applied, "PostgreSQL schema migrated");
        }
        Ok(Arc::new(db))
    }

    /// A connection from the pool (waits up to 3 s for one).
    pub fn client(&self) -> Result<Conn, StorageError> {
        self.pool.get().map_err(storage)
    }

    /// A connection of the caller's own, outside the pool (one that stays on LISTEN).
    pub fn dedicated(&self) -> Result<Client, StorageError> {
        self.config.connect(self.tls.clone()).map_err(|e| with_causes(&e))
    }

    /// The `sslmode` in force.
    pub fn tls_mode(&self) -> tls::Mode {
        self.mode
    }

    /// Applies the migrations the database lacks; the versions applied now.
    pub fn migrate(&self) -> Result<Vec<i32>, StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction().map_err(storage)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(storage)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS dfserve_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(storage)?;
        let have: Vec<i32> = tx
            .query("SELECT version FROM dfserve_migrations", &[])
            .map_err(storage)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = have.iter().copied().filter(|v| *v > SCHEMA_VERSION).max() {
            // A newer replica of a rolling upgrade got there first; its migrations only add.
            tracing::warn!(newer, ours = SCHEMA_VERSION, "the database's schema is newer than this build's");
        }
        let mut applied = Vec::new();
        for (version, sql) in MIGRATIONS {
            if !have.contains(version) {
                tx.batch_execute(sql).map_err(storage)?;
                tx.execute("INSERT INTO dfserve_migrations (version) VALUES ($1)", &[version]).map_err(storage)?;
                applied.push(*version);
            }
        }
        tx.commit().map_err(storage)?;
        Ok(applied)
    }
}

/// Creates the database `name` on the server that `base` (libpq key=value, without `dbname`)
/// points at, and returns the connection string for it: each test, and each test fleet, gets a
/// database of its own.
pub fn create_database(base: &str, name: &str) -> Result<String, StorageError> {
    let conn = tls::parse(&format!("{base} dbname=postgres")).map_err(storage)?;
    let mut c = conn.config.connect(conn.tls).map_err(|e| with_causes(&e))?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\"")).map_err(storage)?;
    c.batch_execute(&format!("CREATE DATABASE \"{name}\"")).map_err(storage)?;
    Ok(format!("{base} dbname={name}"))
}

/// For conformance tests: a database of the test's own on the cluster the test scripts started
/// (`DFSERVE_TEST_DATABASE_URL`, libpq key=value without `dbname`), or `None` when there is
/// none. `DFSERVE_REQUIRE_POSTGRES=1` (scripts/test.sh sets it) makes its absence a failure
/// rather than a skip.
#[cfg(test)]
pub fn test_database(test: &str) -> Option<String> {
    match std::env::var("DFSERVE_TEST_DATABASE_URL") {
        Ok(base) => {
            let name = format!("dfserve_unit_{test}_{}", std::process::id());
            Some(create_database(&base, &name).unwrap())
        }
        Err(_) if std::env::var("DFSERVE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("DFSERVE_REQUIRE_POSTGRES=1 but DFSERVE_TEST_DATABASE_URL is not set")
        }
        Err(_) => {
            eprintln!("{test}: PostgreSQL not tested (DFSERVE_TEST_DATABASE_URL is not set)");
            None
        }
    }
}
