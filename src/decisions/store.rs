//! Where decisions are kept: one trait, [`DecisionStore`], for the data dir's database
//! (`datastore`, here) and PostgreSQL ([`super::pg`]). This layer moves bytes; `decisions` owns
//! their meaning. The embedded store's tables:
//!
//! - `decisions`: key `"<sha256>\0<reviewer>"`, value the decision as JSON. One item's
//!   decisions are one key range, read with one scan.
//! - `decisions_by_time`: key `"<decided_at>\0<sha256>\0<reviewer>"`, so the export pages
//!   through decisions oldest first without loading them all; kept in the same transaction.
//! - `decision_bytes`: bytes stored per reviewer, for the per-key quota.
//!
//! Data dirs from before the time index get it built on first open.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::datastore::{DataStore, StorageError};

const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
const BY_TIME: TableDefinition<&str, ()> = TableDefinition::new("decisions_by_time");
const BYTES: TableDefinition<&str, u64> = TableDefinition::new("decision_bytes");

/// A store of decisions. Both kinds pass the same tests (`decisions::tests`).
pub trait DecisionStore: Send + Sync {
    /// Adds or replaces one reviewer's decision on one item in one durable transaction, unless
    /// that reviewer's stored decisions would then exceed `quota` bytes.
    fn put(&self, d: &Put, quota: u64) -> Result<Result<(), Refused>, StorageError>;
    /// The stored values of one item's decisions, by reviewer.
    fn of(&self, sha256: &str) -> Result<Vec<Vec<u8>>, StorageError>;
    /// Up to `limit` decisions after the position `after` (none: from the oldest), oldest
    /// first, each with its position: `"<decided_at>\0<sha256>\0<reviewer>"` in both stores,
    /// so a client's cursor survives `dfserve store copy`.
    fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Every stored value, one at a time.
    fn for_each(&self, f: &mut dyn FnMut(&[u8])) -> Result<(), StorageError>;
}

/// Reads a stored value's `decided_at`.
pub type TimeOf = fn(&[u8]) -> Option<String>;

/// The data dir's decisions.
pub struct Store {
    db: Arc<DataStore>,
    time_of: TimeOf,
}

/// A decision to store: its item, reviewer, time and JSON.
pub struct Put<'a> {
    pub sha256: &'a str,
    pub reviewer: &'a str,
    pub decided_at: &'a str,
    pub value: &'a [u8],
}

/// Why a put was refused without a storage fault.
pub enum Refused {
    /// The reviewer's stored decisions would exceed the quota: bytes stored now.
    Quota(u64),
}

fn item_key(sha256: &str, reviewer: &str) -> String {
    format!("{sha256}\0{reviewer}")
}

impl Store {
    /// The decision tables of `db` (created if new; the time index built if missing).
    pub fn new(db: Arc<DataStore>, time_of: TimeOf) -> Result<Store, StorageError> {
        db.write(|txn| -> Result<(), StorageError> {
            let t = txn.open_table(DECISIONS)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut bytes = txn.open_table(BYTES)?;
            if by_time.len()? == 0 && t.len()? > 0 {
                for row in t.iter()? {
                    let (k, v) = row?;
                    let reviewer = k.value().split('\0').nth(1).unwrap_or_default().to_string();
                    let at = time_of(v.value()).unwrap_or_default();
                    by_time.insert(format!("{at}\0{}", k.value()).as_str(), ())?;
                    let n = bytes.get(reviewer.as_str())?.map_or(0, |g| g.value());
                    bytes.insert(reviewer.as_str(), n + v.value().len() as u64)?;
                }
                tracing::info!(decisions = t.len()?, "decision time index built");
            }
            Ok(())
        })?;
        Ok(Store { db, time_of })
    }
}

impl DecisionStore for Store {
    fn put(&self, d: &Put, quota: u64) -> Result<Result<(), Refused>, StorageError> {
        let time_of = self.time_of;
        let key = item_key(d.sha256, d.reviewer);
        self.db.write(|txn| {
            let mut t = txn.open_table(DECISIONS)?;
            let mut by_time = txn.open_table(BY_TIME)?;
            let mut bytes = txn.open_table(BYTES)?;
            let stored = bytes.get(d.reviewer)?.map_or(0, |g| g.value());
            let old = t.get(key.as_str())?.map(|g| g.value().to_vec());
            let old_len = old.as_ref().map_or(0, |v| v.len() as u64);
            let after = stored.saturating_sub(old_len) + d.value.len() as u64;
            if after > quota && after > stored {
                return Ok(Err(Refused::Quota(stored)));
            }
            if let Some(old) = &old {
                let at = time_of(old).unwrap_or_default();
                by_time.remove(format!("{at}\0{key}").as_str())?;
            }
            t.insert(key.as_str(), d.value)?;
            by_time.insert(format!("{}\0{key}", d.decided_at).as_str(), ())?;
            bytes.insert(d.reviewer, after)?;
            Ok(Ok(()))
        })
    }

    fn of(&self, sha256: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let (from, to) = (format!("{sha256}\0"), format!("{sha256}\u{1}"));
        self.db.read(|txn| {
            let t = txn.open_table(DECISIONS)?;
            t.range(from.as_str()..to.as_str())?.map(|row| Ok(row?.1.value().to_vec())).collect()
        })
    }

    fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.db.read(|txn| {
            let t = txn.open_table(DECISIONS)?;
            let by_time = txn.open_table(BY_TIME)?;
            let rows = match after {
                Some(a) => by_time.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?,
                None => by_time.range::<&str>(..)?,
            };
            let mut out = Vec::new();
            for row in rows.take(limit) {
                let (k, _) = row?;
                let pos = k.value().to_string();
                let item = pos.split_once('\0').map_or("", |(_, rest)| rest);
                if let Some(v) = t.get(item)? {
                    out.push((pos, v.value().to_vec()));
                }
            }
            Ok(out)
        })
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8])) -> Result<(), StorageError> {
        self.db.read(|txn| {
            let t = txn.open_table(DECISIONS)?;
            for row in t.iter()? {
                f(row?.1.value());
            }
            Ok(())
        })
    }
}
