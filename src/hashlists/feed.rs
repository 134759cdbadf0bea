//! The change feed: how every replica's in-memory index follows the PostgreSQL log.
//!
//! A follower thread per replica holds its own connection on LISTEN. When woken (or once a
//! second without a notification, which also catches a lost one), it reads the log after the
//! last change it fetched and applies each transaction whole, under the index's write lock,
//! when that transaction's `commit` row arrives. So a request never sees half of an import.
//! After a reconnect it goes on from the last transaction it applied. The position
//! ([`Feed::position`]) is the `commit` row's sequence number, and it only ever grows.
//!
//! Degraded, not down. While PostgreSQL is unreachable, the index stays as of the last applied
//! change, detection goes on matching against it, and writes fail with 503. The lag metric
//! grows meanwhile: seconds since the follower last confirmed that it had applied the whole
//! log. A replica stays ready through an outage. Its index is only as stale as the outage is
//! long, and refusing detection would send the whole fleet to 503 at once, which is worse for
//! the platforms than matching against a list a few seconds old.
//!
//! Pruning. Every few minutes a follower prunes the log of transactions older than the
//! retention (`--hashlist-log-retention`; one replica at a time does the work). A follower
//! whose position is behind the pruned horizon (a replica paused or cut off for longer than
//! the retention) can no longer replay, so it loads every list afresh from one snapshot and
//! swaps the new index in whole, going on from that snapshot's position. Matching goes on
//! against the old index meanwhile; memory holds both until the swap.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use prometheus::{Gauge, IntCounter, IntGauge};

use super::index::{Indexed, ListIndex};
use super::pg::{self, Change};
use crate::datastore::StorageError;

/// Changes read from the log per query.
const PAGE: i64 = 10_000;
/// How long a follower waits for a notification before it reads the log anyway.
const POLL: Duration = Duration::from_secs(1);

pub type Lists = Arc<RwLock<BTreeMap<String, ListIndex>>>;

/// How often a follower prunes the log.
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Where one replica's index stands in the log.
pub struct Feed {
    position: Mutex<i64>,
    advanced: Condvar,
    connected: AtomicBool,
    /// Set when the lists are dropped: the follower ends at its next wake-up.
    pub stop: AtomicBool,
    caught_up_at: Mutex<Instant>,
    pub position_metric: IntGauge,
    pub lag_metric: Gauge,
    /// Full loads after falling behind the pruned log.
    pub reloads_metric: IntCounter,
}

impl Feed {
    fn new(position: i64) -> Feed {
        let position_metric =
            IntGauge::new("dfserve_hashlist_feed_position", "Sequence number of the last hash-list change applied")
                .expect("a valid metric");
        let lag_metric = Gauge::new(
            "dfserve_hashlist_feed_lag_seconds",
            "Seconds since this replica last confirmed it had applied every hash-list change",
        )
        .expect("a valid metric");
        let reloads_metric = IntCounter::new(
            "dfserve_hashlist_feed_reloads_total",
            "Full loads of the hash lists after this replica fell behind the pruned change log",
        )
        .expect("a valid metric");
        position_metric.set(position);
        Feed {
            position: Mutex::new(position),
            advanced: Condvar::new(),
            connected: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            caught_up_at: Mutex::new(Instant::now()),
            position_metric,
            lag_metric,
            reloads_metric,
        }
    }

    pub fn position(&self) -> i64 {
        *self.position.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn lag_seconds(&self) -> f64 {
        self.caught_up_at.lock().unwrap_or_else(|e| e.into_inner()).elapsed().as_secs_f64()
    }

    /// Waits until the index has applied `seq` (a write's own commit), at most `timeout`;
    /// whether it has.
    pub fn wait_for(&self, seq: i64, timeout: Duration) -> bool {
        let guard = self.position.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) =
            self.advanced.wait_timeout_while(guard, timeout, |p| *p < seq).unwrap_or_else(|e| e.into_inner());
        *guard >= seq
    }

    fn advance(&self, seq: i64) {
        let mut p = self.position.lock().unwrap_or_else(|e| e.into_inner());
        *p = seq;
        self.position_metric.set(seq);
        self.advanced.notify_all();
    }

    fn caught_up(&self) {
        *self.caught_up_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.lag_metric.set(0.0);
    }
}

/// Loads every list from `store` and starts the follower thread that keeps them current
/// (and prunes the log of transactions older than `retention`, if given).
pub fn start(
    store: &pg::PgStore,
    min_quality: u8,
    retention: Option<Duration>,
) -> Result<(Lists, Arc<Feed>), StorageError> {
    let (lists, seq) = super::index::index_all(min_quality, |each| store.snapshot(each))?;
    let lists: Lists = Arc::new(RwLock::new(lists));
    let feed = Arc::new(Feed::new(seq));
    feed.caught_up();
    let (store, l, f) = (pg::PgStore::new(store.db().clone()), lists.clone(), feed.clone());
    std::thread::Builder::new()
        .name("hashlist-feed".into())
        .spawn(move || follow(&store, &l, min_quality, retention, &f))
        .map_err(|e| StorageError(format!("starting the change-feed thread: {e}")))?;
    Ok((lists, feed))
}

fn follow(store: &pg::PgStore, lists: &Lists, min_quality: u8, retention: Option<Duration>, feed: &Feed) {
    let mut warned = false;
    let mut pruned_at = Instant::now();
    while !feed.stop.load(Ordering::SeqCst) {
        let mut c = match store.db().dedicated().and_then(|mut c| pg::listen(&mut c).map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                feed.connected.store(false, Ordering::SeqCst);
                feed.lag_metric.set(feed.lag_seconds());
                if !warned {
                    tracing::warn!(error = %e, "hash-list feed: cannot reach PostgreSQL; matching goes on with the index as it is, retrying every second");
                    warned = true;
                }
                std::thread::sleep(POLL);
                continue;
            }
        };
        if warned {
            tracing::info!(position = feed.position(), "hash-list feed: connected again; catching up");
        }
        warned = false;
        feed.connected.store(true, Ordering::SeqCst);
        // Each (re)connect goes on from the last transaction applied whole.
        let mut fetched = feed.position();
        let mut pending: Vec<Change> = Vec::new();
        while !feed.stop.load(Ordering::SeqCst) {
            match catch_up(&mut c, &mut fetched, &mut pending, lists, min_quality, feed) {
                Ok(CaughtUp::Yes) => {}
                Ok(CaughtUp::BehindHorizon(horizon)) => {
                    tracing::warn!(
                        position = feed.position(),
                        horizon,
                        "hash-list feed: behind the pruned change log; loading every list afresh"
                    );
                    match reload(store, lists, min_quality, feed) {
                        Ok(seq) => (fetched, pending) = (seq, Vec::new()),
                        Err(e) => {
                            tracing::warn!(error = %e, "hash-list feed: reloading failed; retrying");
                            break;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hash-list feed: reading the log failed; reconnecting");
                    break;
                }
            }
            if let Some(keep) = retention.filter(|_| pruned_at.elapsed() >= PRUNE_EVERY) {
                pruned_at = Instant::now();
                match store.prune(keep) {
                    Ok((0, _)) => {}
                    Ok((rows, horizon)) => tracing::info!(rows, horizon, "hash-list feed: pruned the change log"),
                    Err(e) => tracing::warn!(error = %e, "hash-list feed: pruning the change log failed"),
                }
            }
            let woke = {
                let mut n = c.notifications();
                let first = n.timeout_iter(POLL).next();
                // Notifications already received are covered by the next read of the log.
                while let Ok(Some(_)) = n.iter().next() {}
                first
            };
            if woke.is_err() || c.is_closed() {
                break;
            }
        }
        feed.connected.store(false, Ordering::SeqCst);
    }
}

/// Loads every list afresh from one snapshot and swaps the new index in, at that snapshot's
/// position; the position.
fn reload(store: &pg::PgStore, lists: &Lists, min_quality: u8, feed: &Feed) -> Result<i64, StorageError> {
    let t = Instant::now();
    let (fresh, seq) = super::index::index_all(min_quality, |each| store.snapshot(each))?;
    let old = {
        let mut held = lists.write().unwrap_or_else(|e| e.into_inner());
        let old = std::mem::replace(&mut *held, fresh);
        feed.advance(seq);
        old
    };
    drop(old);
    crate::datastore::release_freed_memory();
    feed.reloads_metric.inc();
    tracing::info!(position = seq, load_s = t.elapsed().as_secs_f64(), "hash-list feed: lists loaded afresh");
    Ok(seq)
}

enum CaughtUp {
    Yes,
    /// The log was pruned past this replica's position (to the horizon given).
    BehindHorizon(i64),
}

/// Reads and applies the log after `fetched`, a transaction at a time, in one snapshot that
/// also shows how far the log has been pruned.
fn catch_up(
    c: &mut postgres::Client,
    fetched: &mut i64,
    pending: &mut Vec<Change>,
    lists: &Lists,
    min_quality: u8,
    feed: &Feed,
) -> Result<CaughtUp, StorageError> {
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg::storage)?;
    let horizon = pg::horizon(&mut tx)?;
    if horizon > feed.position() {
        return Ok(CaughtUp::BehindHorizon(horizon));
    }
    loop {
        let page = pg::changes_after(&mut tx, *fetched, PAGE)?;
        let n = page.len() as i64;
        for (seq, change) in page {
            *fetched = seq;
            if let Change::Commit = change {
                let (n, t) = (pending.len(), Instant::now());
                apply(std::mem::take(pending), lists, min_quality, || feed.advance(seq));
                if n >= 10_000 {
                    tracing::info!(
                        changes = n,
                        seq,
                        apply_s = t.elapsed().as_secs_f64(),
                        "hash-list feed: applied a large change"
                    );
                }
            } else {
                pending.push(change);
            }
        }
        if n < PAGE {
            break;
        }
    }
    tx.commit().map_err(pg::storage)?;
    if pending.is_empty() {
        feed.caught_up();
    }
    Ok(CaughtUp::Yes)
}

/// Applies one transaction's changes to the index, whole, under its write lock, and moves the
/// position (`advance`) before letting go of it: a reader that holds the read lock sees an
/// index and a position that agree, so a result can say which change it was matched as of.
fn apply(changes: Vec<Change>, lists: &Lists, min_quality: u8, advance: impl FnOnce()) {
    if changes.is_empty() {
        let _held = lists.write().unwrap_or_else(|e| e.into_inner());
        advance();
        return;
    }
    let mut dropped = false;
    let mut lists = lists.write().unwrap_or_else(|e| e.into_inner());
    let mut touched: Vec<String> = Vec::new();
    for change in changes {
        match change {
            Change::Put { list, entry, old } => {
                let index = lists.entry(list.clone()).or_default();
                if let Some(old) = old {
                    index.remove(&old);
                }
                index.insert(Indexed::of(entry, min_quality));
                touched.push(list);
            }
            Change::Delete { list, old } => {
                if let Some(index) = lists.get_mut(&list) {
                    index.remove(&old);
                }
                touched.push(list);
            }
            Change::Drop { list } => {
                lists.remove(&list);
                dropped = true;
            }
            Change::Commit => {}
        }
    }
    touched.sort();
    touched.dedup();
    for list in touched {
        if let Some(index) = lists.get_mut(&list) {
            index.settle();
            if index.is_empty() {
                lists.remove(&list);
            }
        }
    }
    advance();
    drop(lists);
    if dropped {
        crate::datastore::release_freed_memory();
    }
}
