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
mod feed;
mod index;
mod matcher;
mod model;
pub mod pdq_index;
pub mod pg;
mod rng;
mod store;

pub use entry::{check_list_name, parse_entries, read_entries, Entry, HashKind, MAX_NOTE_CHARS};
use model::invalid;
pub use model::{FeedState, Ids, ImportReport, ListError, ListSummary, Match, MatchRules, Probe};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::datastore::{DataStore, StorageError};
use crate::error::CoreError;
use index::{Indexed, ListIndex};

/// Every list in the database, indexed.
fn load(store: &store::Store, min_quality: u8) -> Result<BTreeMap<String, ListIndex>, StorageError> {
    Ok(index::index_all(min_quality, |each| store.for_each(each))?.0)
}

/// The lists and their matcher; shared by every front end.
pub struct HashLists {
    backend: Backend,
    lists: feed::Lists,
    /// Held across each change's commit and its apply to `lists`, so changes reach the index in
    /// the order they were committed and the index is never behind or ahead of the database.
    /// (With PostgreSQL the database's own writer lock orders changes across replicas; this
    /// one only keeps a replica's writers from queuing there.)
    writer: Mutex<()>,
    /// Memory that imports being parsed and committed may take at once, as permits of
    /// bytes (`--max-import-memory-bytes`), and its size.
    imports: Arc<tokio::sync::Semaphore>,
    import_budget: usize,
    pub rules: MatchRules,
}

/// Where the lists are stored.
enum Backend {
    /// The data dir's database; a change is applied to the index by the call that made it.
    Embedded {
        store: store::Store,
        /// The datastore's reopen count when `lists` was last loaded whole (see `writer`).
        loaded_at: AtomicU64,
    },
    /// PostgreSQL; every change reaches the index through the change feed, on every replica.
    Postgres { store: pg::PgStore, feed: Arc<feed::Feed> },
}

impl Drop for HashLists {
    fn drop(&mut self) {
        if let Backend::Postgres { feed, .. } = &self.backend {
            feed.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// How long a write waits for its own change to reach this replica's index before answering
/// (it is durable either way; the feed applies it as soon as it can).
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// Peak memory of an import, as a multiple of its body: the body itself, the transaction's
/// pages and the index delta (measured: see README, "Hash lists").
pub const IMPORT_MEMORY_FACTOR: usize = 7;
/// The same into PostgreSQL, where the writer's own follower also holds the transaction's
/// changes, read back from the log, until its commit row (measured +744 MB for a 48 MB body).
pub const PG_IMPORT_MEMORY_FACTOR: usize = 16;

impl HashLists {
    /// Opens the lists under `dir`, loading every one into memory.
    pub fn open(dir: &Path, rules: MatchRules) -> anyhow::Result<HashLists> {
        Ok(HashLists::from_db(DataStore::open(dir)?, rules)?)
    }

    /// The lists in `db`, loaded into memory.
    pub fn from_db(db: Arc<DataStore>, rules: MatchRules) -> Result<HashLists, StorageError> {
        let store = store::Store::new(db)?;
        let loaded_at = AtomicU64::new(store.datastore().reopens());
        let lists = Arc::new(std::sync::RwLock::new(load(&store, rules.pdq_min_quality)?));
        Ok(HashLists::with_backend(Backend::Embedded { store, loaded_at }, lists, rules))
    }

    /// The lists in the fleet's database, loaded into memory and kept current by the change
    /// feed.
    /// `log_retention`: how long the change log keeps a change (`None`: for ever).
    pub fn from_postgres(
        db: Arc<crate::pgstore::Db>,
        rules: MatchRules,
        log_retention: Option<std::time::Duration>,
    ) -> Result<HashLists, StorageError> {
        let store = pg::PgStore::new(db);
        let (lists, feed) = feed::start(&store, rules.pdq_min_quality, log_retention)?;
        Ok(HashLists::with_backend(Backend::Postgres { store, feed }, lists, rules))
    }

    fn with_backend(backend: Backend, lists: feed::Lists, rules: MatchRules) -> HashLists {
        let budget = u32::MAX as usize;
        HashLists {
            backend,
            lists,
            writer: Mutex::new(()),
            imports: Arc::new(tokio::sync::Semaphore::new(budget)),
            import_budget: budget,
            rules,
        }
    }

    /// Where this replica's index stands in the change feed (PostgreSQL only).
    pub fn feed_state(&self) -> Option<FeedState> {
        match &self.backend {
            Backend::Postgres { feed, .. } => Some(FeedState {
                store: "postgres",
                position: feed.position(),
                connected: feed.connected(),
                lag_seconds: feed.lag_seconds(),
            }),
            Backend::Embedded { .. } => None,
        }
    }

    /// Registers the feed's metrics (PostgreSQL only).
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        if let Backend::Postgres { feed, .. } = &self.backend {
            registry.register(Box::new(feed.position_metric.clone()))?;
            registry.register(Box::new(feed.lag_metric.clone()))?;
            registry.register(Box::new(feed.reloads_metric.clone()))?;
        }
        Ok(())
    }

    /// Waits for this replica's index to apply the change committed at `seq`.
    fn applied(feed: &feed::Feed, seq: i64) {
        if !feed.wait_for(seq, APPLY_WAIT) {
            tracing::warn!(
                seq,
                position = feed.position(),
                "a hash-list change is committed but not yet in this replica's index"
            );
        }
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
        let factor = match self.backend {
            Backend::Embedded { .. } => IMPORT_MEMORY_FACTOR,
            Backend::Postgres { .. } => PG_IMPORT_MEMORY_FACTOR,
        };
        let need = body_len.saturating_mul(factor).clamp(1, self.import_budget);
        self.imports.clone().try_acquire_many_owned(need as u32).map_err(|_| {
            CoreError::Busy(format!(
                "hash-list imports in progress are at the server's limit of {} bytes of memory \
                 (--max-import-memory-bytes; an import takes about {factor}x its body); retry later",
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
        if let Backend::Embedded { store, loaded_at } = &self.backend {
            let reopens = store.datastore().reopens();
            if loaded_at.load(Ordering::SeqCst) != reopens {
                let fresh = load(store, self.rules.pdq_min_quality)?;
                *self.write() = fresh;
                loaded_at.store(reopens, Ordering::SeqCst);
                tracing::info!("hash-list index reloaded after the database was reopened");
            }
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
        let mut entries = entries.peekable();
        if entries.peek().is_none() {
            return Err(ListError::Invalid("there are no entries to import".into()));
        }
        let _w = self.writer()?;
        let mut report = ImportReport { list: list.to_string(), ..Default::default() };
        match &self.backend {
            Backend::Embedded { store, .. } => self.import_embedded(store, list, entries, &mut report)?,
            Backend::Postgres { store, feed } => {
                let mut seen: HashSet<String> = HashSet::new();
                let t = std::time::Instant::now();
                let seq = store.put_all(list, entries, |e, old| {
                    if !seen.insert(e.id) {
                        report.duplicates += 1;
                    } else if old.is_some() {
                        report.replaced += 1;
                    } else {
                        report.added += 1;
                    }
                    Ok(())
                })?;
                let committed = t.elapsed().as_secs_f64();
                Self::applied(feed, seq);
                if report.added + report.replaced >= 10_000 {
                    let applied = t.elapsed().as_secs_f64() - committed;
                    tracing::info!(
                        list,
                        seq,
                        committed_s = committed,
                        applied_s = applied,
                        "hash-list import committed to PostgreSQL"
                    );
                }
            }
        }
        report.entries = self.read().get(list).map_or(0, ListIndex::len);
        Ok(report)
    }

    fn import_embedded(
        &self,
        store: &store::Store,
        list: &str,
        entries: impl Iterator<Item = Result<Entry, ListError>>,
        report: &mut ImportReport,
    ) -> Result<(), ListError> {
        let q = self.rules.pdq_min_quality;
        // What the index will get once the commit is durable: each id's new entry (its last
        // line wins) and the entry it replaced in the database, if any.
        let mut delta: Vec<(Indexed, Option<Entry>)> = Vec::new();
        let mut at: HashMap<Arc<str>, usize> = HashMap::new();
        store.put_all(list, entries, |e, old| {
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
        Ok(())
    }

    /// Removes one entry; whether it existed.
    pub fn delete(&self, list: &str, id: &str) -> Result<bool, ListError> {
        let _w = self.writer()?;
        match &self.backend {
            Backend::Embedded { store, .. } => {
                let Some(old) = store.delete(list, id)? else { return Ok(false) };
                let mut lists = self.write();
                if let Some(index) = lists.get_mut(list) {
                    index.remove(&old);
                    index.settle();
                    if index.is_empty() {
                        lists.remove(list);
                    }
                }
            }
            Backend::Postgres { store, feed } => {
                let Some((_, seq)) = store.delete(list, id)? else { return Ok(false) };
                Self::applied(feed, seq);
            }
        }
        Ok(true)
    }

    /// Removes a list; how many entries it had.
    pub fn delete_list(&self, list: &str) -> Result<usize, ListError> {
        let _w = self.writer()?;
        let n = match &self.backend {
            Backend::Embedded { store, .. } => {
                let n = store.delete_list(list)?;
                self.write().remove(list);
                n
            }
            Backend::Postgres { store, feed } => {
                let (n, seq) = store.delete_list(list)?;
                if let Some(seq) = seq {
                    Self::applied(feed, seq);
                }
                n
            }
        };
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
        let entries = match &self.backend {
            Backend::Embedded { store, .. } => {
                if !self.read().contains_key(list) {
                    return Ok(None);
                }
                store.load_list(list)?
            }
            Backend::Postgres { store, .. } => store.load_list(list)?.0,
        };
        Ok((!entries.is_empty() || self.read().contains_key(list)).then_some(entries))
    }

    /// The ids and kinds the index holds for `list`, and those the database holds, as of the
    /// same change: the two must always be equal. (Embedded: read under the writer lock, so
    /// no change falls between them. PostgreSQL: the database's list and its log position
    /// are read in one snapshot, and the index is read once it stands at that position; with
    /// writers on other replicas still going, this retries until the two meet.)
    pub fn index_and_database(&self, list: &str) -> Result<(Ids, Ids), ListError> {
        let ids = |entries: Vec<Entry>| {
            let mut stored: Ids = entries.into_iter().map(|e| (e.id, e.kind)).collect();
            stored.sort();
            stored
        };
        match &self.backend {
            Backend::Embedded { store, .. } => {
                let _w = self.writer()?;
                let indexed = self.read().get(list).map(ListIndex::ids).unwrap_or_default();
                Ok((indexed, ids(store.load_list(list)?)))
            }
            Backend::Postgres { store, feed } => loop {
                let (entries, seq) = store.load_list(list)?;
                feed.wait_for(seq, APPLY_WAIT);
                let lists = self.read();
                if feed.position() == seq {
                    let indexed = lists.get(list).map(ListIndex::ids).unwrap_or_default();
                    return Ok((indexed, ids(entries)));
                }
                if feed.position() < seq {
                    return Err(StorageError(format!(
                        "the index is at {} behind the database's {seq}",
                        feed.position()
                    ))
                    .into());
                }
            },
        }
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
}

#[cfg(test)]
mod tests;
