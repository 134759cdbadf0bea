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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use redb::Database;

/// The database file's name under the data dir.
pub const FILE: &str = "dfserve.redb";
/// Its name before decisions joined the hash lists in it; renamed on first open.
const OLD_FILE: &str = "hashlists.redb";

/// The database file of `dir`, whichever name it has now.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Whether `dir` holds a database (under either name).
pub fn exists(dir: &Path) -> bool {
    dir.join(FILE).is_file() || dir.join(OLD_FILE).is_file()
}

/// Opens (or creates) the database of `dir`.
pub fn open(dir: &Path) -> anyhow::Result<Arc<Database>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating --data-dir {}", dir.display()))?;
    let path = path(dir);
    let old = dir.join(OLD_FILE);
    if !path.exists() && old.is_file() {
        std::fs::rename(&old, &path).with_context(|| format!("renaming {} to {}", old.display(), path.display()))?;
        tracing::info!(from = %old.display(), to = %path.display(), "data dir database renamed");
    }
    // A small page cache: hash matching reads in-memory indexes, never the database, which is
    // read whole only at start and once per changed list.
    let db = redb::Builder::new()
        .set_cache_size(16 << 20)
        .create(&path)
        .with_context(|| format!("opening {} (is another dfserve using this --data-dir?)", path.display()))?;
    Ok(Arc::new(db))
}
