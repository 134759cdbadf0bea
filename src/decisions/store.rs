//! Decisions on disk: table `decisions` of the data dir's database (`datastore`), key
//! `"<sha256>\0<reviewer>"`, value the decision as JSON. One item's decisions are one key
//! range, read with one scan. This layer moves bytes; `decisions` owns their meaning.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");

pub struct Store {
    db: Arc<Database>,
}

impl Store {
    /// The decisions table of `db` (created if new).
    pub fn new(db: Arc<Database>) -> anyhow::Result<Store> {
        let txn = db.begin_write()?;
        txn.open_table(DECISIONS)?;
        txn.commit()?;
        Ok(Store { db })
    }

    /// Adds or replaces one reviewer's decision on one item in one durable transaction.
    pub fn put(&self, sha256: &str, reviewer: &str, value: &[u8]) -> anyhow::Result<()> {
        let key = format!("{sha256}\0{reviewer}");
        let txn = self.db.begin_write()?;
        txn.open_table(DECISIONS)?.insert(key.as_str(), value)?;
        txn.commit()?;
        Ok(())
    }

    /// The stored values of one item's decisions.
    pub fn of(&self, sha256: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        let (from, to) = (format!("{sha256}\0"), format!("{sha256}\u{1}"));
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DECISIONS)?;
        t.range(from.as_str()..to.as_str())?.map(|row| Ok(row?.1.value().to_vec())).collect()
    }

    /// Every stored value, in key order.
    pub fn all(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(DECISIONS)?;
        t.iter()?.map(|row| Ok(row?.1.value().to_vec())).collect()
    }
}
