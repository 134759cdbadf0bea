//! Reviewers' decisions: what a person concluded about one upload after seeing dfserve's
//! scores, kept so that moderation can be audited and reviewed items become evaluation and
//! calibration data (`dfserve score --labels` reads the CSV export).
//!
//! A decision names the media by its SHA-256 (never by file name, which proves nothing), and
//! carries what the reviewer was shown (model, scores, verdict band, matches, provenance), the
//! reviewer's key id (the public id of the API key, never the key; `anonymous` when the server
//! has no keys) and the time. One reviewer has one current decision per item: deciding again
//! replaces it, while other reviewers' decisions stand beside it.
//!
//! The scores are as the page reported them: the server does not re-run the models to check
//! them. A reviewer with a key could write anything there; the record says what that reviewer
//! saw and decided, which is what an audit asks.

mod export;
mod model;
mod pg;
mod store;

pub use export::{csv_cell, csv_rows, csv_uncell, to_csv};
pub use model::{check_sha256, Call, Decision, Shown, ShownFace, MAX_TEXT};

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::datastore::{DataStore, StorageError};
use crate::error::CoreError;
use store::DecisionStore;

/// The decisions and their tables; shared by the front ends.
pub struct Decisions {
    store: Box<dyn DecisionStore>,
    /// Bytes of decisions one reviewer key may have stored (`--max-decision-bytes-per-key`).
    quota: u64,
}

/// Why a decision was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The reviewer's key has stored its quota of decisions.
    #[error("key '{reviewer}' has {stored} bytes of decisions stored, at the limit of {quota} (--max-decision-bytes-per-key): an operator can raise it")]
    Quota { reviewer: String, stored: u64, quota: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<RecordError> for CoreError {
    fn from(e: RecordError) -> CoreError {
        match e {
            RecordError::Quota { .. } => CoreError::Forbidden(e.to_string()),
            RecordError::Storage(s) => s.into(),
        }
    }
}

/// A stored decision's time, for the time index.
fn time_of(stored: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct At {
        decided_at: String,
    }
    serde_json::from_slice::<At>(stored).ok().map(|a| a.decided_at)
}

/// A position in the export's order, as clients see it (opaque: hex of the index key).
fn cursor(pos: &str) -> String {
    hex::encode(pos)
}

/// One page of the export, oldest first.
pub struct Page {
    pub decisions: Vec<Decision>,
    /// Where the next page starts; `None` after the last.
    pub next: Option<String>,
}

impl Decisions {
    /// The decisions in the data dir's database.
    pub fn from_db(db: Arc<DataStore>, quota: u64) -> Result<Decisions, StorageError> {
        Ok(Decisions { store: Box::new(store::Store::new(db, time_of)?), quota })
    }

    /// The decisions in the fleet's database, shared by every replica.
    pub fn from_postgres(db: Arc<crate::pgstore::Db>, quota: u64) -> Decisions {
        Decisions { store: Box::new(pg::PgDecisions::new(db)), quota }
    }

    /// Records `d` (already validated), replacing this reviewer's earlier decision on the same
    /// item; durable when it returns.
    pub fn record(&self, d: &Decision) -> Result<(), RecordError> {
        let value = serde_json::to_vec(d).map_err(|e| StorageError(e.to_string()))?;
        let put = store::Put { sha256: &d.sha256, reviewer: &d.reviewer, decided_at: &d.decided_at, value: &value };
        match self.store.put(&put, self.quota)? {
            Ok(()) => Ok(()),
            Err(store::Refused::Quota(stored)) => {
                Err(RecordError::Quota { reviewer: d.reviewer.clone(), stored, quota: self.quota })
            }
        }
    }

    /// Every reviewer's decision on one item.
    pub fn of(&self, sha256: &str) -> Result<Vec<Decision>, StorageError> {
        self.store.of(sha256)?.iter().map(|v| parse(v)).collect()
    }

    /// Up to `limit` decisions from `after` (a previous page's `next`), oldest first.
    pub fn page(&self, after: Option<&str>, limit: usize) -> anyhow::Result<Page> {
        let after = match after {
            Some(c) => Some(
                hex::decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .with_context(|| format!("'{c}' is not a cursor this server gave"))?,
            ),
            None => None,
        };
        let rows = self.store.page(after.as_deref(), limit)?;
        let next = (rows.len() == limit).then(|| rows.last().map(|(pos, _)| cursor(pos))).flatten();
        let decisions = rows.iter().map(|(_, v)| parse(v)).collect::<Result<_, _>>()?;
        Ok(Page { decisions, next })
    }

    /// Copies every decision into `to`, oldest first and byte for byte, replacing any that
    /// `to` has for the same item and reviewer (so a copy can be run again); how many. The
    /// quota does not apply: these decisions were accepted once already.
    pub fn copy_into(&self, to: &Decisions) -> Result<usize, StorageError> {
        const PAGE: usize = 1000;
        let (mut n, mut after) = (0, None::<String>);
        loop {
            let rows = self.store.page(after.as_deref(), PAGE)?;
            for (pos, value) in &rows {
                let mut parts = pos.splitn(3, '\0');
                let (decided_at, sha256, reviewer) =
                    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let put = store::Put { sha256, reviewer, decided_at, value };
                if to.store.put(&put, u64::MAX)?.is_err() {
                    unreachable!("no quota applies to a copy");
                }
            }
            n += rows.len();
            match rows.last() {
                Some((pos, _)) if rows.len() == PAGE => after = Some(pos.clone()),
                _ => return Ok(n),
            }
        }
    }

    /// All decisions, oldest first (tests and small stores; the HTTP export pages).
    pub fn all(&self) -> anyhow::Result<Vec<Decision>> {
        let (mut out, mut after) = (Vec::new(), None);
        loop {
            let page = self.page(after.as_deref(), 1000)?;
            out.extend(page.decisions);
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }
}

/// Counts of the stored decisions, for a reviewer's running tally.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub total: usize,
    pub by_decision: BTreeMap<&'static str, usize>,
    /// Distinct items (SHA-256s) and reviewers.
    pub items: usize,
    pub reviewers: usize,
}

impl Decisions {
    /// Counts, without sending every decision to the caller.
    pub fn summary(&self) -> Result<Summary, StorageError> {
        let mut out = Summary::default();
        let (mut items, mut reviewers) = (std::collections::HashSet::new(), std::collections::HashSet::new());
        let mut bad = None;
        self.store.for_each(&mut |v| match parse(v) {
            Ok(d) => {
                out.total += 1;
                *out.by_decision.entry(d.decision.as_str()).or_default() += 1;
                items.insert(d.sha256);
                reviewers.insert(d.reviewer);
            }
            Err(e) => bad = Some(e),
        })?;
        if let Some(e) = bad {
            return Err(e);
        }
        (out.items, out.reviewers) = (items.len(), reviewers.len());
        Ok(out)
    }
}

fn parse(stored: &[u8]) -> Result<Decision, StorageError> {
    serde_json::from_slice(stored).map_err(|e| StorageError(format!("a stored decision is not valid JSON: {e}")))
}

/// Now, as stored in `decided_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a conformance test's decisions are stored: each test runs against both stores.
    enum Fixture {
        Embedded(tempfile::TempDir),
        Postgres(String),
    }

    impl Fixture {
        fn all(test: &str) -> Vec<Fixture> {
            let mut out = vec![Fixture::Embedded(tempfile::tempdir().unwrap())];
            out.extend(crate::pgstore::test_database(&format!("decisions_{test}")).map(Fixture::Postgres));
            out
        }

        /// The store, opened afresh (as a restarted server opens it).
        fn open(&self, quota: u64) -> Decisions {
            match self {
                Fixture::Embedded(dir) => Decisions::from_db(DataStore::open(dir.path()).unwrap(), quota).unwrap(),
                Fixture::Postgres(url) => Decisions::from_postgres(crate::pgstore::Db::connect(url).unwrap(), quota),
            }
        }
    }

    fn decision(sha: &str, call: Call, reviewer: &str, at: &str) -> Decision {
        Decision {
            sha256: sha.to_string(),
            decision: call,
            reviewer: reviewer.into(),
            decided_at: at.into(),
            filename: Some("a,b.jpg".into()),
            kind: Some("image".into()),
            note: None,
            shown: Shown {
                score: Some(0.9),
                faces: vec![ShownFace {
                    score: Some(0.9),
                    verdict: None,
                    members: BTreeMap::from([("m".to_string(), 0.8)]),
                }],
                ..Default::default()
            },
            added_to_list: None,
        }
    }

    #[test]
    fn decisions_persist_replace_per_reviewer_and_export() {
        for store in Fixture::all("persist") {
            persist_replace_and_export(&store);
        }
    }

    fn persist_replace_and_export(store: &Fixture) {
        let (a, b) = ("a".repeat(64), "B".repeat(64));
        {
            let d = store.open(u64::MAX);
            d.record(&decision(&a, Call::Manipulated, "k1", "2026-01-01T00:00:01.000Z").validate().unwrap()).unwrap();
            d.record(&decision(&a, Call::Authentic, "k2", "2026-01-01T00:00:02.000Z").validate().unwrap()).unwrap();
            // The same reviewer again: replaces.
            d.record(&decision(&a, Call::Unsure, "k1", "2026-01-01T00:00:03.000Z").validate().unwrap()).unwrap();
            d.record(&decision(&b, Call::Manipulated, "k1", "2026-01-01T00:00:00.000Z").validate().unwrap()).unwrap();
        }
        let d = store.open(u64::MAX);
        let on_a = d.of(&a).unwrap();
        assert_eq!(on_a.len(), 2);
        assert!(on_a.iter().any(|x| x.reviewer == "k1" && x.decision == Call::Unsure));
        let all = d.all().unwrap();
        assert_eq!(
            all.iter().map(|x| x.decision).collect::<Vec<_>>(),
            vec![Call::Manipulated, Call::Authentic, Call::Unsure]
        );
        assert_eq!(all[0].sha256, "b".repeat(64));
        let csv = String::from_utf8(to_csv(&all).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with(r#""path","label","sha256","decision","reviewer""#), "{}", lines[0]);
        assert!(lines[1].starts_with(&format!(r#""a,b.jpg","fake","{}""#, "b".repeat(64))), "{}", lines[1]);
        assert_eq!(lines.len(), 4);
        // Pages: two at a time, oldest first, then the rest; a cursor not from the server is refused.
        let p1 = d.page(None, 2).unwrap();
        let p2 = d.page(p1.next.as_deref(), 2).unwrap();
        assert_eq!((p1.decisions.len(), p2.decisions.len(), p2.next.is_none()), (2, 1, true));
        assert_eq!([&p1.decisions[..], &p2.decisions[..]].concat(), all);
        assert!(d.page(Some("zz"), 2).is_err());
        let sum = d.summary().unwrap();
        assert_eq!((sum.total, sum.items, sum.reviewers), (3, 2, 2));
        assert_eq!(sum.by_decision, BTreeMap::from([("authentic", 1), ("manipulated", 1), ("unsure", 1)]));
    }

    #[test]
    fn a_reviewer_key_stores_decisions_up_to_its_quota() {
        for store in Fixture::all("quota") {
            stores_up_to_quota(&store);
        }
    }

    fn stores_up_to_quota(store: &Fixture) {
        let one = serde_json::to_vec(&decision(&"a".repeat(64), Call::Authentic, "k1", "t")).unwrap().len() as u64;
        let d = Arc::new(store.open(one * 3));
        // Eight at once for one key, as from eight replicas: exactly three fit.
        let stored: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let d = d.clone();
                    s.spawn(move || d.record(&decision(&format!("{i}").repeat(64), Call::Authentic, "k1", "t")).is_ok())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(stored, 3);
        let kept: Vec<String> = d.all().unwrap().into_iter().map(|x| x.sha256).collect();
        for sha in (0..8).map(|i| format!("{i}").repeat(64)).filter(|s| !kept.contains(s)) {
            let err = d.record(&decision(&sha, Call::Authentic, "k1", "t")).unwrap_err();
            assert!(matches!(err, RecordError::Quota { .. }), "{err}");
        }
        // Replacing one of its own by a no larger one still works; other keys have their own quota.
        d.record(&decision(&kept[0], Call::Unsure, "k1", "t")).unwrap();
        d.record(&decision(&"9".repeat(64), Call::Authentic, "k2", "t")).unwrap();
        assert_eq!(d.summary().unwrap().total, 4);
    }

    #[test]
    fn bad_decisions_are_refused_with_reasons() {
        let ok = decision(&"c".repeat(64), Call::Authentic, "k", "t");
        assert!(ok.clone().validate().is_ok());
        let mut bad = ok.clone();
        bad.sha256 = "xyz".into();
        assert!(format!("{}", bad.validate().unwrap_err()).contains("64 hex digits"));
        let mut bad = ok.clone();
        bad.shown.score = Some(1.5);
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.shown.faces[0].members.insert("n".into(), f32::NAN);
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.note = Some("x".repeat(MAX_TEXT + 1));
        assert!(bad.validate().is_err());
    }
}
