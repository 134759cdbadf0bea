//! Hash lists on disk: one redb database file under `--data-dir`.
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store whose commits are durable (fsync'd)
//! and crash-safe by design (copy-on-write B-trees, so a killed process leaves the last
//! committed state), with no C library to build and no server to run. SQLite would do as well
//! but brings a C build and SQL for what is a sorted map; sled is no longer maintained.
//!
//! Layout: table `entries`, key `"<list>\0<id>"`, value the entry as JSON. One list's entries
//! are one key range, so a list is read, exported or deleted with one range scan.

use std::path::Path;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::entry::Entry;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

pub struct Store {
    db: Database,
}

fn key(list: &str, id: &str) -> String {
    format!("{list}\0{id}")
}

/// The key range of one list: `"<list>\0"` up to (not including) `"<list>\u{1}"`.
fn range(list: &str) -> (String, String) {
    (format!("{list}\0"), format!("{list}\u{1}"))
}

impl Store {
    /// Opens (or creates) `dir/hashlists.redb`.
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating --data-dir {}", dir.display()))?;
        let path = dir.join("hashlists.redb");
        // A small page cache: matching reads the in-memory index, never the database, which is
        // read whole only at start and once per changed list.
        let db = redb::Builder::new()
            .set_cache_size(16 << 20)
            .create(&path)
            .with_context(|| format!("opening {} (is another dfserve using this --data-dir?)", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.commit()?;
        Ok(Store { db })
    }

    /// Adds (or replaces, by id) entries of `list` in one transaction; durable when it returns.
    pub fn put(&self, list: &str, entries: &[Entry]) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(ENTRIES)?;
            for e in entries {
                t.insert(key(list, &e.id).as_str(), serde_json::to_vec(e)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes one entry; whether it was there.
    pub fn delete(&self, list: &str, id: &str) -> anyhow::Result<bool> {
        let txn = self.db.begin_write()?;
        let found = txn.open_table(ENTRIES)?.remove(key(list, id).as_str())?.is_some();
        txn.commit()?;
        Ok(found)
    }

    /// Removes a whole list; how many entries it had.
    pub fn delete_list(&self, list: &str) -> anyhow::Result<usize> {
        let (from, to) = range(list);
        let txn = self.db.begin_write()?;
        let n = {
            let mut t = txn.open_table(ENTRIES)?;
            let keys: Vec<String> = t
                .range(from.as_str()..to.as_str())?
                .map(|r| r.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()?;
            for k in &keys {
                t.remove(k.as_str())?;
            }
            keys.len()
        };
        txn.commit()?;
        Ok(n)
    }

    /// One list's entries, in id order.
    pub fn load_list(&self, list: &str) -> anyhow::Result<Vec<Entry>> {
        let (from, to) = range(list);
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for row in t.range(from.as_str()..to.as_str())? {
            let (_, v) = row?;
            out.push(serde_json::from_slice(v.value()).context("a stored hash-list entry is not valid JSON")?);
        }
        Ok(out)
    }

    /// Every entry, by list.
    pub fn load_all(&self) -> anyhow::Result<std::collections::BTreeMap<String, Vec<Entry>>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(ENTRIES)?;
        let mut out: std::collections::BTreeMap<String, Vec<Entry>> = Default::default();
        for row in t.iter()? {
            let (k, v) = row?;
            let list = k.value().split('\0').next().unwrap_or_default().to_string();
            let entry: Entry =
                serde_json::from_slice(v.value()).context("a stored hash-list entry is not valid JSON")?;
            out.entry(list).or_default().push(entry);
        }
        Ok(out)
    }
}
