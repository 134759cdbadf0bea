//! Known-content matching: named lists of hashes (PDQ, vPDQ, MD5, SHA-256) that uploads are checked
//! against, stored durably under `--data-dir` and held in memory for matching.
//!
//! A platform blocks content it already knows by hash: a regulator names an image, it is
//! removed, and it comes back re-encoded or resized. PDQ survives that (a Hamming distance of
//! at most `--pdq-max-distance`, 31 by default, as Meta's reference suggests); MD5 and SHA-256
//! find the very same file. Hashes of quality below `--pdq-min-quality` (50, Meta's default)
//! are not matched: flat or tiny images give hashes that match too much. Videos are matched by
//! vPDQ (`hashing::vpdq`): a listed video matches when at least `--vpdq-query-match` percent of
//! the upload's distinct frame hashes, and `--vpdq-list-match` percent of the listed video's,
//! have a counterpart within the PDQ distance (ThreatExchange's defaults: 80 and 0).
//!
//! Changes (import, delete) commit to disk first, then replace the list's in-memory index, so
//! they apply to the next request without a restart and survive one.

mod bench;
pub mod cli;
mod entry;
mod index;
pub mod pdq_index;
mod store;

pub use entry::{check_list_name, parse_entries, read_entries, Entry, HashKind, MAX_NOTE_CHARS};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::datastore::{DataStore, StorageError, TxnError};
use crate::error::CoreError;
use crate::hashing::pdq::Pdq;
use crate::hashing::vpdq;
use index::{Indexed, ListIndex};

/// Why a list change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The request itself: a bad entry, list name or body (400).
    #[error("{0}")]
    Invalid(String),
    /// Storage failed (503, retry later); nothing was applied.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TxnError for ListError {
    fn is_storage(&self) -> bool {
        matches!(self, ListError::Storage(_))
    }
}

impl From<ListError> for CoreError {
    fn from(e: ListError) -> CoreError {
        match e {
            ListError::Invalid(m) => CoreError::BadRequest(m),
            ListError::Storage(s) => s.into(),
        }
    }
}

fn invalid(e: anyhow::Error) -> ListError {
    ListError::Invalid(format!("{e:#}"))
}

/// Ids and kinds of a list's entries, sorted.
pub type Ids = Vec<(String, HashKind)>;

/// What an import did, counted against what the list holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    pub list: String,
    /// Ids new to the list.
    pub added: usize,
    /// Ids the list held already, now replaced.
    pub replaced: usize,
    /// Lines whose id came earlier in the same import (the last one counts).
    pub duplicates: usize,
    /// Entries in the list after the import.
    pub entries: usize,
}

/// One match of an upload against a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    pub list: String,
    pub id: String,
    pub kind: HashKind,
    /// PDQ: Hamming distance in bits; vPDQ: the smallest distance between two frames; exact
    /// digests: 0.
    pub distance: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// vPDQ: percent of the upload's frames matched, and of the listed video's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_match_pct: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_match_pct: Option<f32>,
}

/// When an upload matches (`--pdq-*`, `--vpdq-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchRules {
    pub pdq_max_distance: u32,
    pub pdq_min_quality: u8,
    pub vpdq_query_pct: f32,
    pub vpdq_list_pct: f32,
}

impl Default for MatchRules {
    /// Meta's and ThreatExchange's defaults.
    fn default() -> MatchRules {
        MatchRules { pdq_max_distance: 31, pdq_min_quality: 50, vpdq_query_pct: 80.0, vpdq_list_pct: 0.0 }
    }
}

/// Counts of one list, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub name: String,
    pub entries: usize,
    pub by_kind: BTreeMap<HashKind, usize>,
}

/// Every list in the database, indexed.
fn load(store: &store::Store, min_quality: u8) -> Result<BTreeMap<String, ListIndex>, StorageError> {
    let mut lists: BTreeMap<String, ListIndex> = BTreeMap::new();
    store.for_each(|list, e| {
        if !lists.contains_key(list) {
            lists.insert(list.to_string(), ListIndex::default());
        }
        lists.get_mut(list).expect("just inserted").insert(Indexed::of(e, min_quality));
    })?;
    lists.values_mut().for_each(ListIndex::settle);
    Ok(lists)
}

/// The lists and their matcher; shared by every front end.
pub struct HashLists {
    store: store::Store,
    lists: RwLock<BTreeMap<String, ListIndex>>,
    /// Held across each change's commit and its apply to `lists`, so changes reach the index in
    /// the order they were committed and the index is never behind or ahead of the database.
    writer: Mutex<()>,
    /// The datastore's reopen count when `lists` was last loaded whole (see `writer`).
    loaded_at: AtomicU64,
    /// Memory that imports being parsed and committed may take at once, as permits of
    /// bytes (`--max-import-memory-bytes`), and its size.
    imports: Arc<tokio::sync::Semaphore>,
    import_budget: usize,
    pub rules: MatchRules,
}

/// Peak memory of an import, as a multiple of its body: the body itself, the transaction's
/// pages and the index delta (measured: see README, "Hash lists").
pub const IMPORT_MEMORY_FACTOR: usize = 7;

/// What an upload is matched on.
pub struct Probe<'a> {
    pub bytes: &'a [u8],
    /// The image's PDQ (none for videos and undecodable uploads).
    pub pdq: Option<Pdq>,
    /// The video's vPDQ frames (none for images).
    pub vpdq: Option<&'a [vpdq::Feature]>,
}

impl HashLists {
    /// Opens the lists under `dir`, loading every one into memory.
    pub fn open(dir: &Path, rules: MatchRules) -> anyhow::Result<HashLists> {
        Ok(HashLists::from_db(DataStore::open(dir)?, rules)?)
    }

    /// The lists in `db`, loaded into memory.
    pub fn from_db(db: Arc<DataStore>, rules: MatchRules) -> Result<HashLists, StorageError> {
        let store = store::Store::new(db)?;
        let loaded_at = AtomicU64::new(store.datastore().reopens());
        let lists = RwLock::new(load(&store, rules.pdq_min_quality)?);
        let budget = u32::MAX as usize;
        Ok(HashLists {
            store,
            lists,
            writer: Mutex::new(()),
            loaded_at,
            imports: Arc::new(tokio::sync::Semaphore::new(budget)),
            import_budget: budget,
            rules,
        })
    }

    /// Bounds the memory of imports in progress to `bytes` (see [`Self::admit_import`]).
    pub fn with_import_budget(mut self, bytes: usize) -> HashLists {
        let bytes = bytes.clamp(1, u32::MAX as usize);
        self.imports = Arc::new(tokio::sync::Semaphore::new(bytes));
        self.import_budget = bytes;
        self
    }

    /// Admits an import of a `body_len`-byte body, or refuses it (429 `busy`) when the imports
    /// in progress already take the budget. One import is always admitted alone, whatever its
    /// size within --max-body-bytes.
    pub fn admit_import(&self, body_len: usize) -> Result<tokio::sync::OwnedSemaphorePermit, CoreError> {
        let need = body_len.saturating_mul(IMPORT_MEMORY_FACTOR).clamp(1, self.import_budget);
        self.imports.clone().try_acquire_many_owned(need as u32).map_err(|_| {
            CoreError::Busy(format!(
                "hash-list imports in progress are at the server's limit of {} bytes of memory \
                 (--max-import-memory-bytes; an import takes about {IMPORT_MEMORY_FACTOR}x its body); retry later",
                self.import_budget
            ))
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ListIndex>> {
        self.lists.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ListIndex>> {
        self.lists.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the writer lock. After a storage fault the database was reopened, and a commit
    /// that reported failure may still have reached the disk: the index is then loaded whole
    /// again, so it shows what the database holds, not what the failed call said.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, ()>, StorageError> {
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let reopens = self.store.datastore().reopens();
        if self.loaded_at.load(Ordering::SeqCst) != reopens {
            let fresh = load(&self.store, self.rules.pdq_min_quality)?;
            *self.write() = fresh;
            self.loaded_at.store(reopens, Ordering::SeqCst);
            tracing::info!("hash-list index reloaded after the database was reopened");
        }
        Ok(w)
    }

    /// Imports the entries in `text` (JSON Lines or CSV, see [`read_entries`]) into `list`, all
    /// or nothing.
    pub fn import_text(&self, list: &str, text: &str) -> Result<ImportReport, ListError> {
        let entries = read_entries(text).map_err(invalid)?;
        self.import_from(list, entries.map(|r| r.map_err(invalid)))
    }

    /// Adds entries to `list` (created if new; an existing id is replaced); durable when it
    /// returns, and matched by the next request.
    pub fn import(&self, list: &str, entries: Vec<Entry>) -> Result<ImportReport, ListError> {
        self.import_from(list, entries.into_iter().map(|e| e.normalise().map_err(invalid)))
    }

    fn import_from(
        &self,
        list: &str,
        entries: impl Iterator<Item = Result<Entry, ListError>>,
    ) -> Result<ImportReport, ListError> {
        check_list_name(list).map_err(invalid)?;
        let q = self.rules.pdq_min_quality;
        let _w = self.writer()?;
        let mut report = ImportReport { list: list.to_string(), ..Default::default() };
        // What the index will get once the commit is durable: each id's new entry (its last
        // line wins) and the entry it replaced in the database, if any.
        let mut delta: Vec<(Indexed, Option<Entry>)> = Vec::new();
        let mut at: HashMap<Arc<str>, usize> = HashMap::new();
        let mut lines = 0usize;
        self.store.put_all(list, entries.inspect(|_| lines += 1), |e, old| {
            let ix = Indexed::of(e, q);
            match at.get(&ix.id) {
                // What this line replaced is the same import's earlier line, never indexed.
                Some(&i) => {
                    report.duplicates += 1;
                    delta[i].0 = ix;
                }
                None => {
                    if old.is_some() {
                        report.replaced += 1;
                    } else {
                        report.added += 1;
                    }
                    at.insert(ix.id.clone(), delta.len());
                    delta.push((ix, old));
                }
            }
            Ok(())
        })?;
        if lines == 0 {
            return Err(ListError::Invalid("there are no entries to import".into()));
        }
        drop(at);
        let mut lists = self.write();
        let index = lists.entry(list.to_string()).or_default();
        for (ix, old) in delta {
            if let Some(old) = old {
                index.remove(&old);
            }
            index.insert(ix);
        }
        index.settle();
        report.entries = index.len();
        Ok(report)
    }

    /// Removes one entry; whether it existed.
    pub fn delete(&self, list: &str, id: &str) -> Result<bool, ListError> {
        let _w = self.writer()?;
        let Some(old) = self.store.delete(list, id)? else { return Ok(false) };
        let mut lists = self.write();
        if let Some(index) = lists.get_mut(list) {
            index.remove(&old);
            index.settle();
            if index.is_empty() {
                lists.remove(list);
            }
        }
        Ok(true)
    }

    /// Removes a list; how many entries it had.
    pub fn delete_list(&self, list: &str) -> Result<usize, ListError> {
        let _w = self.writer()?;
        let n = self.store.delete_list(list)?;
        self.write().remove(list);
        drop(_w);
        crate::datastore::release_freed_memory();
        Ok(n)
    }

    pub fn summaries(&self) -> Vec<ListSummary> {
        self.read()
            .iter()
            .map(|(name, l)| ListSummary { name: name.clone(), entries: l.len(), by_kind: l.by_kind.clone() })
            .collect()
    }

    /// A list's entries, or `None` when there is no such list.
    pub fn export(&self, list: &str) -> Result<Option<Vec<Entry>>, StorageError> {
        if !self.read().contains_key(list) {
            return Ok(None);
        }
        self.store.load_list(list).map(Some)
    }

    /// The ids and kinds the index holds for `list`, and those the database holds, read under
    /// the writer lock so no change falls between them: the two must always be equal.
    pub fn index_and_database(&self, list: &str) -> Result<(Ids, Ids), ListError> {
        let _w = self.writer()?;
        let indexed = self.read().get(list).map(ListIndex::ids).unwrap_or_default();
        let mut stored: Vec<(String, HashKind)> =
            self.store.load_list(list)?.into_iter().map(|e| (e.id, e.kind)).collect();
        stored.sort();
        Ok((indexed, stored))
    }

    /// Whether there are no lists at all (then nothing is hashed for matching).
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether any list holds PDQ hashes (then uploads need theirs computed).
    pub fn wants_pdq(&self) -> bool {
        self.read().values().any(|l| !l.pdq.is_empty())
    }

    /// Whether any list holds vPDQ hashes (then videos need theirs computed).
    pub fn wants_vpdq(&self) -> bool {
        self.read().values().any(|l| !l.vpdq.is_empty())
    }

    /// Every match of an upload, by list then distance.
    pub fn matches(&self, probe: &Probe) -> Vec<Match> {
        let lists = self.read();
        if lists.is_empty() {
            return Vec::new();
        }
        let wants_exact = lists.values().any(|l| !l.exact.is_empty());
        let digests = wants_exact.then(|| {
            let mut md5 = [0u8; 32];
            md5[..16].copy_from_slice(&Md5::digest(probe.bytes));
            [(HashKind::Md5, md5), (HashKind::Sha256, Sha256::digest(probe.bytes).into())]
        });
        let r = self.rules;
        let pdq = probe.pdq.filter(|p| p.quality >= r.pdq_min_quality).map(|p| Pdq::lanes(&p.words));
        let frames = probe.vpdq.map(|f| vpdq::prepare(f, r.pdq_min_quality)).unwrap_or_default();
        let mut out = Vec::new();
        for (name, l) in lists.iter() {
            let mut found = Vec::new();
            if let Some(q) = &pdq {
                for (i, d) in l.pdq.within(q, r.pdq_max_distance) {
                    found.push((&*l.pdq_ids[i], HashKind::Pdq, d, None));
                }
            }
            for (id, listed) in &l.vpdq {
                let Some(c) = vpdq::compare(&frames, listed, r.pdq_max_distance) else { continue };
                if c.query_pct >= r.vpdq_query_pct && c.other_pct >= r.vpdq_list_pct && c.query_pct > 0.0 {
                    found.push((&**id, HashKind::Vpdq, c.min_distance, Some(c)));
                }
            }
            for d in digests.iter().flatten() {
                for id in l.exact.get(d).into_iter().flatten() {
                    found.push((&**id, d.0, 0, None));
                }
            }
            found.sort_by_key(|(id, _, d, _)| (*d, *id));
            out.extend(found.into_iter().map(|(id, kind, distance, c)| Match {
                list: name.clone(),
                id: id.to_string(),
                kind,
                distance,
                label: l.labels.get(id).map(|s| s.to_string()),
                query_match_pct: c.map(|c| c.query_pct),
                list_match_pct: c.map(|c| c.other_pct),
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests;
