//! Hash lists in PostgreSQL (`--database-url`), shared by every replica of a fleet.
//!
//! Each change to a list is one transaction. It writes the entries (`hashlist_entries`) and one
//! row per change in an ordered log (`hashlist_changes`): a put carries the new entry and the
//! one it replaced, a delete the entry removed, a drop the list's name. The transaction ends
//! with a `commit` row, then sends NOTIFY. Every replica, the writer included, applies the log
//! to its in-memory index in sequence order, a whole transaction at a time ([`super::feed`]).
//! So a replica's index is always the database as of some point in the log, and it can only
//! move forward. A full load happens at start only.
//!
//! Why one advisory lock for all writers. `bigserial` hands out numbers in the order
//! transactions ask for them, not the order they commit. With two writers at once, a follower
//! could see 12 committed while 11 was still open, move past 11, and never apply it. Writers
//! therefore take one transaction-scoped advisory lock before their first number and hold it
//! until commit, so the log's order is the commit order. Writes to lists are rare next to
//! reads, so serialising them costs little. An import of a million entries holds the lock for
//! its own duration, much as the embedded store's single writer does.
//!
//! Pruning. The log would grow by a row per change for ever, so [`PgStore::prune`] deletes
//! whole transactions older than a retention and records the last sequence number it removed
//! (`hashlist_log_horizon`). A follower reads the horizon in the same snapshot as the changes:
//! one whose position is behind it has missed changes for good and loads the lists afresh
//! instead ([`super::feed`]). Only transactions that have committed are pruned, and writers
//! commit in log order, so no change still being written can be removed.

use std::sync::Arc;

use postgres::{Client, IsolationLevel};

use super::entry::Entry;
use crate::datastore::{StorageError, TxnError};
pub use crate::pgstore::storage;
use crate::pgstore::Db;

/// The advisory lock every writer of lists holds until its commit (see the module's doc).
const WRITER_LOCK: i64 = 0x6466_7365_7276_0001;
/// The advisory lock a pruning holds, so replicas pruning on a timer do not queue up.
const PRUNE_LOCK: i64 = 0x6466_7365_7276_0003;
/// The channel NOTIFY wakes followers on.
pub const CHANNEL: &str = "dfserve_hashlists";
/// Entries a statement carries during an import.
const BATCH: usize = 2000;

/// One change as the log holds it.
pub enum Change {
    Put { list: String, entry: Entry, old: Option<Entry> },
    Delete { list: String, old: Entry },
    Drop { list: String },
    Commit,
}

pub struct PgStore {
    db: Arc<Db>,
}

fn parse(json: &str) -> Result<Entry, StorageError> {
    serde_json::from_str(json).map_err(|e| StorageError(format!("a stored hash-list entry is not valid JSON: {e}")))
}

impl PgStore {
    /// The lists' tables in `db` (whose schema `Db::connect` brought up to date).
    pub fn new(db: Arc<Db>) -> PgStore {
        PgStore { db }
    }

    /// The database, for the follower's own connection.
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    fn client(&self) -> Result<crate::pgstore::Conn, StorageError> {
        self.db.client()
    }

    /// Opens a writer's transaction: the writer lock, and the transaction's number.
    fn begin<'c>(c: &'c mut Client) -> Result<(postgres::Transaction<'c>, i64), StorageError> {
        let mut tx = c.transaction().map_err(storage)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK]).map_err(storage)?;
        let txn: i64 = tx.query_one("SELECT nextval('hashlist_txn')", &[]).map_err(storage)?.get(0);
        Ok((tx, txn))
    }

    /// Ends a writer's transaction: its `commit` row, the notification, the commit. The
    /// `commit` row's sequence number, which followers reach once they have applied it all.
    fn finish(mut tx: postgres::Transaction<'_>, txn: i64, list: &str) -> Result<i64, StorageError> {
        let seq: i64 = tx
            .query_one(
                "INSERT INTO hashlist_changes (txn, list, op) VALUES ($1, $2, 'commit') RETURNING seq",
                &[&txn, &list],
            )
            .map_err(storage)?
            .get(0);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()]).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(seq)
    }

    /// Adds (or replaces, by id) every entry of `entries` in `list` in one transaction,
    /// handing each to `each` with the entry it replaced, if any (for a line whose id came
    /// earlier in the same import, `None`). The commit's sequence number, or an error after
    /// which nothing was applied.
    pub fn put_all<E: TxnError>(
        &self,
        list: &str,
        entries: impl Iterator<Item = Result<Entry, E>>,
        mut each: impl FnMut(Entry, Option<Entry>) -> Result<(), E>,
    ) -> Result<i64, E> {
        let mut c = self.client()?;
        let (mut tx, txn) = Self::begin(&mut c)?;
        // The statistics of a list's rows are those from before this transaction (none, for a
        // new list): the lookups below must not be planned as scans of the growing table.
        tx.batch_execute("SET LOCAL enable_seqscan = off").map_err(storage)?;
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        let mut entries = entries.peekable();
        while entries.peek().is_some() {
            batch.clear();
            for e in entries.by_ref().take(BATCH) {
                batch.push(e?);
            }
            // One line per id in a statement (the last wins), since an upsert cannot touch a
            // row twice; the log gets one put per id and batch, in order.
            let mut last: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for (i, e) in batch.iter().enumerate() {
                last.insert(e.id.as_str(), i);
            }
            let mut ids: Vec<&str> = Vec::with_capacity(last.len());
            let mut json: Vec<String> = Vec::with_capacity(last.len());
            for (i, e) in batch.iter().enumerate() {
                if last[e.id.as_str()] == i {
                    ids.push(&e.id);
                    json.push(serde_json::to_string(e).map_err(|e| StorageError(e.to_string()))?);
                }
            }
            // One primary-key lookup per id (LATERAL, kept apart by OFFSET 0). Without it the
            // planner, going by statistics from before this transaction, read every row of the
            // list for each batch: a million-entry import took 55 s instead of a few.
            let rows = tx
                .query(
                    "SELECT n.id, e.entry::text FROM unnest($2::text[]) AS n(id),
                     LATERAL (SELECT entry FROM hashlist_entries WHERE list = $1 AND id = n.id OFFSET 0) AS e",
                    &[&list, &ids],
                )
                .map_err(storage)?;
            let mut old: std::collections::HashMap<String, String> =
                rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect();
            let olds: Vec<Option<&str>> = ids.iter().map(|id| old.get(*id).map(String::as_str)).collect();
            tx.execute(
                "INSERT INTO hashlist_entries (list, id, entry)
                 SELECT $1, n.id, n.entry::jsonb FROM unnest($2::text[], $3::text[]) AS n(id, entry)
                 ON CONFLICT (list, id) DO UPDATE SET entry = EXCLUDED.entry",
                &[&list, &ids, &json],
            )
            .map_err(storage)?;
            tx.execute(
                "INSERT INTO hashlist_changes (txn, list, op, id, entry, old)
                 SELECT $1, $2, 'put', n.id, n.entry::jsonb, n.old::jsonb
                 FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS n(id, entry, old, ord) ORDER BY n.ord",
                &[&txn, &list, &ids, &json, &olds],
            )
            .map_err(storage)?;
            drop(olds);
            drop((ids, json, last));
            for e in batch.drain(..) {
                let replaced = old.remove(&e.id).map(|j| parse(&j)).transpose()?;
                each(e, replaced)?;
            }
        }
        Ok(Self::finish(tx, txn, list)?)
    }

    /// Removes one entry: it and the commit's sequence number, if it was there.
    pub fn delete(&self, list: &str, id: &str) -> Result<Option<(Entry, i64)>, StorageError> {
        let mut c = self.client()?;
        let (mut tx, txn) = Self::begin(&mut c)?;
        let row = tx
            .query_opt("DELETE FROM hashlist_entries WHERE list = $1 AND id = $2 RETURNING entry::text", &[&list, &id])
            .map_err(storage)?;
        let Some(row) = row else { return Ok(None) };
        let json: String = row.get(0);
        tx.execute(
            "INSERT INTO hashlist_changes (txn, list, op, id, old) VALUES ($1, $2, 'delete', $3, $4::text::jsonb)",
            &[&txn, &list, &id, &json],
        )
        .map_err(storage)?;
        Ok(Some((parse(&json)?, Self::finish(tx, txn, list)?)))
    }

    /// Removes a whole list: how many entries it had, and the commit's sequence number.
    pub fn delete_list(&self, list: &str) -> Result<(usize, Option<i64>), StorageError> {
        let mut c = self.client()?;
        let (mut tx, txn) = Self::begin(&mut c)?;
        let n = tx.execute("DELETE FROM hashlist_entries WHERE list = $1", &[&list]).map_err(storage)?;
        if n == 0 {
            return Ok((0, None));
        }
        tx.execute("INSERT INTO hashlist_changes (txn, list, op) VALUES ($1, $2, 'drop')", &[&txn, &list])
            .map_err(storage)?;
        Ok((n as usize, Some(Self::finish(tx, txn, list)?)))
    }

    /// One list's entries in id order, and the log position they are as of.
    pub fn load_list(&self, list: &str) -> Result<(Vec<Entry>, i64), StorageError> {
        let mut c = self.client()?;
        let (mut tx, seq) = read_snapshot(&mut c)?;
        let rows = tx
            .query("SELECT entry::text FROM hashlist_entries WHERE list = $1 ORDER BY id", &[&list])
            .map_err(storage)?;
        let entries = rows.iter().map(|r| parse(r.get(0))).collect::<Result<_, _>>()?;
        tx.commit().map_err(storage)?;
        Ok((entries, seq))
    }

    /// Every entry with its list, one at a time, as of one snapshot; the log position of that
    /// snapshot, from which a follower goes on.
    pub fn snapshot(&self, mut f: impl FnMut(&str, Entry)) -> Result<i64, StorageError> {
        let mut c = self.client()?;
        let (mut tx, seq) = read_snapshot(&mut c)?;
        let portal = tx.bind("SELECT list, entry::text FROM hashlist_entries", &[]).map_err(storage)?;
        loop {
            let rows = tx.query_portal(&portal, 10_000).map_err(storage)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                f(r.get(0), parse(r.get(1))?);
            }
        }
        tx.commit().map_err(storage)?;
        Ok(seq)
    }
}

impl PgStore {
    /// Deletes the log's transactions that committed more than `older_than` ago (unless
    /// another replica is pruning now); the rows deleted and the horizon after.
    pub fn prune(&self, older_than: std::time::Duration) -> Result<(u64, i64), StorageError> {
        let mut c = self.client()?;
        let mut tx = c.transaction().map_err(storage)?;
        let horizon = |tx: &mut postgres::Transaction| horizon(tx);
        if !tx.query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK]).map_err(storage)?.get::<_, bool>(0) {
            return Ok((0, horizon(&mut tx)?));
        }
        let through: Option<i64> = tx
            .query_one(
                "SELECT max(seq) FROM hashlist_changes WHERE op = 'commit' AND at < now() - make_interval(secs => $1)",
                &[&older_than.as_secs_f64()],
            )
            .map_err(storage)?
            .get(0);
        let Some(through) = through else { return Ok((0, horizon(&mut tx)?)) };
        let n = tx.execute("DELETE FROM hashlist_changes WHERE seq <= $1", &[&through]).map_err(storage)?;
        tx.execute("UPDATE hashlist_log_horizon SET pruned_through = greatest(pruned_through, $1)", &[&through])
            .map_err(storage)?;
        let h = horizon(&mut tx)?;
        tx.commit().map_err(storage)?;
        Ok((n, h))
    }
}

/// The last sequence number pruned from the log (0: none).
pub fn horizon(c: &mut impl postgres::GenericClient) -> Result<i64, StorageError> {
    Ok(c.query_one("SELECT pruned_through FROM hashlist_log_horizon", &[]).map_err(storage)?.get(0))
}

/// A read-only transaction on one snapshot, and the log position that snapshot is at (the
/// last `commit` row it sees: writers commit in log order, so the entries it sees are exactly
/// the state after that change; or the horizon, if the log has been pruned to nothing).
pub fn read_snapshot(c: &mut Client) -> Result<(postgres::Transaction<'_>, i64), StorageError> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(storage)?;
    let seq: i64 = tx
        .query_one(
            "SELECT greatest(coalesce(max(seq), 0), (SELECT pruned_through FROM hashlist_log_horizon)) FROM hashlist_changes",
            &[],
        )
        .map_err(storage)?
        .get(0);
    Ok((tx, seq))
}

/// Up to `limit` changes after `seq`, in order, with their sequence numbers.
pub fn changes_after(
    c: &mut impl postgres::GenericClient,
    seq: i64,
    limit: i64,
) -> Result<Vec<(i64, Change)>, StorageError> {
    let rows = c
        .query(
            "SELECT seq, op, list, entry::text, old::text FROM hashlist_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&seq, &limit],
        )
        .map_err(storage)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (seq, op, list): (i64, &str, String) = (r.get(0), r.get(1), r.get(2));
        let entry: Option<&str> = r.get(3);
        let old: Option<&str> = r.get(4);
        let old = old.map(parse).transpose()?;
        let change = match op {
            "put" => Change::Put { list, entry: parse(entry.unwrap_or("null"))?, old },
            "delete" => {
                Change::Delete { list, old: old.ok_or_else(|| StorageError("a delete without its entry".into()))? }
            }
            "drop" => Change::Drop { list },
            _ => Change::Commit,
        };
        out.push((seq, change));
    }
    Ok(out)
}

/// Starts listening on `c` (the follower's own connection, outside the pool).
pub fn listen(c: &mut Client) -> Result<(), StorageError> {
    c.batch_execute(&format!("LISTEN {CHANNEL}")).map_err(storage)
}
