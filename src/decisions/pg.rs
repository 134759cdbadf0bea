//! Decisions in PostgreSQL (`--database-url`): every replica reads and writes the same rows,
//! so a decision recorded through one pod is in every pod's export at once. No change feed is
//! needed: unlike the hash lists, decisions are not held in memory.
//!
//! Tables (migration 2 in `pgstore`): `decisions` keyed by item and reviewer, with an index in
//! the export's order, and `decision_bytes` per reviewer. A put locks its reviewer's row of
//! `decision_bytes` first, so two replicas recording for one key at once cannot both slip
//! under the quota.

use std::sync::Arc;

use super::store::{DecisionStore, Put, Refused};
use crate::datastore::StorageError;
use crate::pgstore::{storage, Db};

pub struct PgDecisions {
    db: Arc<Db>,
}

impl PgDecisions {
    pub fn new(db: Arc<Db>) -> PgDecisions {
        PgDecisions { db }
    }
}

fn text(value: &[u8]) -> Result<&str, StorageError> {
    std::str::from_utf8(value).map_err(|e| StorageError(format!("a decision is not UTF-8: {e}")))
}

impl DecisionStore for PgDecisions {
    fn put(&self, d: &Put, quota: u64) -> Result<Result<(), Refused>, StorageError> {
        let value = text(d.value)?;
        let mut c = self.db.client()?;
        let mut tx = c.transaction().map_err(storage)?;
        tx.execute(
            "INSERT INTO decision_bytes (reviewer, bytes) VALUES ($1, 0) ON CONFLICT (reviewer) DO NOTHING",
            &[&d.reviewer],
        )
        .map_err(storage)?;
        let stored: i64 = tx
            .query_one("SELECT bytes FROM decision_bytes WHERE reviewer = $1 FOR UPDATE", &[&d.reviewer])
            .map_err(storage)?
            .get(0);
        let old: Option<i32> = tx
            .query_opt(
                "SELECT octet_length(value::text) FROM decisions WHERE sha256 = $1 AND reviewer = $2",
                &[&d.sha256, &d.reviewer],
            )
            .map_err(storage)?
            .map(|r| r.get(0));
        let stored = stored as u64;
        let after = stored.saturating_sub(old.unwrap_or(0) as u64) + d.value.len() as u64;
        if after > quota && after > stored {
            return Ok(Err(Refused::Quota(stored)));
        }
        tx.execute(
            "INSERT INTO decisions (sha256, reviewer, decided_at, value) VALUES ($1, $2, $3, $4::text::json)
             ON CONFLICT (sha256, reviewer) DO UPDATE SET decided_at = EXCLUDED.decided_at, value = EXCLUDED.value",
            &[&d.sha256, &d.reviewer, &d.decided_at, &value],
        )
        .map_err(storage)?;
        tx.execute("UPDATE decision_bytes SET bytes = $2 WHERE reviewer = $1", &[&d.reviewer, &(after as i64)])
            .map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(Ok(()))
    }

    fn of(&self, sha256: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        let rows = self
            .db
            .client()?
            .query("SELECT value::text FROM decisions WHERE sha256 = $1 ORDER BY reviewer", &[&sha256])
            .map_err(storage)?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0).into_bytes()).collect())
    }

    fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut c = self.db.client()?;
        let rows = match after {
            // The index's order, so that each page is one range read.
            Some(after) => {
                let mut parts = after.splitn(3, '\0');
                let (at, sha, reviewer) =
                    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                c.query(
                    "SELECT decided_at, sha256, reviewer, value::text FROM decisions
                     WHERE (decided_at, sha256, reviewer) > ($1, $2, $3)
                     ORDER BY decided_at, sha256, reviewer LIMIT $4",
                    &[&at, &sha, &reviewer, &(limit as i64)],
                )
            }
            None => c.query(
                "SELECT decided_at, sha256, reviewer, value::text FROM decisions
                 ORDER BY decided_at, sha256, reviewer LIMIT $1",
                &[&(limit as i64)],
            ),
        }
        .map_err(storage)?;
        Ok(rows
            .iter()
            .map(|r| {
                let (at, sha, reviewer): (&str, &str, &str) = (r.get(0), r.get(1), r.get(2));
                (format!("{at}\0{sha}\0{reviewer}"), r.get::<_, String>(3).into_bytes())
            })
            .collect())
    }

    fn for_each(&self, f: &mut dyn FnMut(&[u8])) -> Result<(), StorageError> {
        let mut c = self.db.client()?;
        let mut tx = c.build_transaction().read_only(true).start().map_err(storage)?;
        let portal = tx.bind("SELECT value::text FROM decisions", &[]).map_err(storage)?;
        loop {
            let rows = tx.query_portal(&portal, 10_000).map_err(storage)?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                f(r.get::<_, &str>(0).as_bytes());
            }
        }
        tx.commit().map_err(storage)
    }
}
