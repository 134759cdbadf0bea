//! Hash lists on disk: a table of the data dir's database (`datastore`).
//!
//! Layout: table `entries`, key `"<list>\0<id>"`, value the entry as JSON. One list's entries
//! are one key range, so a list is read, exported or deleted with one range scan.

use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::entry::Entry;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

pub struct Store {
    db: Arc<Database>,
}

fn key(list: &str, id: &str) -> String {
    format!("{list}\0{id}")
}

/// The key range of one list: `"<list>\0"` up to (not including) `"<list>\u{1}"`.
fn range(list: &str) -> (String, String) {
    (format!("{list}\0"), format!("{list}\u{1}"))
}

impl Store {
    /// The hash-list table of `db` (created if new).
    pub fn new(db: Arc<Database>) -> anyhow::Result<Store> {
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
