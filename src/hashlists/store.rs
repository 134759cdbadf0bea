//! Hash lists on disk: a table of the data dir's database (`datastore`).
//!
//! Layout: table `entries`, key `"<list>\0<id>"`, value the entry as JSON. One list's entries
//! are one key range, so a list is read, exported or deleted with one range scan.

use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};

use super::entry::Entry;
use crate::datastore::{DataStore, StorageError, TxnError};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

pub struct Store {
    db: Arc<DataStore>,
}

fn key(list: &str, id: &str) -> String {
    format!("{list}\0{id}")
}

/// The key range of one list: `"<list>\0"` up to (not including) `"<list>\u{1}"`.
fn range(list: &str) -> (String, String) {
    (format!("{list}\0"), format!("{list}\u{1}"))
}

fn decode(v: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(v).map_err(|e| StorageError(format!("a stored hash-list entry is not valid JSON: {e}")))
}

impl Store {
    /// The hash-list table of `db` (created if new).
    pub fn new(db: Arc<DataStore>) -> Result<Store, StorageError> {
        db.write(|txn| -> Result<(), StorageError> {
            txn.open_table(ENTRIES)?;
            Ok(())
        })?;
        Ok(Store { db })
    }

    pub fn datastore(&self) -> &Arc<DataStore> {
        &self.db
    }

    /// Adds (or replaces, by id) every entry of `entries` in `list` in one transaction, handing
    /// each to `each` with the entry it replaced, if any; durable when it returns. Any error (a
    /// bad entry from the iterator, or from `each`) leaves the database unchanged.
    pub fn put_all<E: TxnError>(
        &self,
        list: &str,
        entries: impl Iterator<Item = Result<Entry, E>>,
        mut each: impl FnMut(Entry, Option<Entry>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.db.write(|txn| {
            let mut t = txn.open_table(ENTRIES).map_err(StorageError::from)?;
            for e in entries {
                let e = e?;
                let value = serde_json::to_vec(&e).map_err(|e| StorageError(e.to_string()))?;
                let old = t.insert(key(list, &e.id).as_str(), value.as_slice()).map_err(StorageError::from)?;
                let old = old.map(|v| decode(v.value())).transpose()?;
                each(e, old)?;
            }
            Ok(())
        })
    }

    /// Removes one entry, returning it if it was there.
    pub fn delete(&self, list: &str, id: &str) -> Result<Option<Entry>, StorageError> {
        self.db.write(|txn| {
            let mut t = txn.open_table(ENTRIES)?;
            let old = t.remove(key(list, id).as_str())?;
            old.map(|v| decode(v.value())).transpose()
        })
    }

    /// Removes a whole list; how many entries it had.
    pub fn delete_list(&self, list: &str) -> Result<usize, StorageError> {
        let (from, to) = range(list);
        self.db.write(|txn| {
            let mut t = txn.open_table(ENTRIES)?;
            let mut n = 0;
            t.retain_in(from.as_str()..to.as_str(), |_, _| {
                n += 1;
                false
            })?;
            Ok(n)
        })
    }

    /// One list's entries, in id order.
    pub fn load_list(&self, list: &str) -> Result<Vec<Entry>, StorageError> {
        let (from, to) = range(list);
        self.db.read(|txn| {
            let t = txn.open_table(ENTRIES)?;
            let mut out = Vec::new();
            for row in t.range(from.as_str()..to.as_str())? {
                out.push(decode(row?.1.value())?);
            }
            Ok(out)
        })
    }

    /// Every entry, with its list, one at a time (a full load never holds every entry parsed).
    pub fn for_each(&self, mut f: impl FnMut(&str, Entry)) -> Result<(), StorageError> {
        self.db.read(|txn| {
            let t = txn.open_table(ENTRIES)?;
            for row in t.iter()? {
                let (k, v) = row?;
                let list = k.value().split('\0').next().unwrap_or_default().to_string();
                f(&list, decode(v.value())?);
            }
            Ok(())
        })
    }
}
