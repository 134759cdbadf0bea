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

pub mod cli;
mod entry;
mod store;

pub use entry::{check_list_name, parse_entries, Entry, HashKind};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hashing::pdq::{within, Pdq};
use crate::hashing::vpdq;

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

/// One list, ready for matching: only what matching needs is in memory (the entries
/// themselves stay in the database), about 60 bytes a PDQ hash.
#[derive(Default)]
struct ListIndex {
    /// PDQ hashes as 64-bit lanes, scanned linearly, and the id of each.
    pdq: Vec<[u64; 4]>,
    pdq_ids: Vec<Box<str>>,
    /// Listed videos: id and their distinct good-quality frame hashes.
    vpdq: Vec<(Box<str>, Vec<[u64; 4]>)>,
    /// `(kind, hash)` of exact digests to ids.
    exact: HashMap<(HashKind, Box<str>), Vec<Box<str>>>,
    /// Labels of the entries that have one.
    labels: HashMap<Box<str>, Box<str>>,
    by_kind: BTreeMap<HashKind, usize>,
}

impl ListIndex {
    fn build(entries: Vec<Entry>, min_quality: u8) -> ListIndex {
        let mut index = ListIndex::default();
        for e in entries {
            *index.by_kind.entry(e.kind).or_default() += 1;
            let id: Box<str> = e.id.into();
            if let Some(label) = e.label {
                index.labels.insert(id.clone(), label.into());
            }
            match e.kind {
                HashKind::Pdq => {
                    if let Some(words) = Pdq::parse_hex(&e.hash) {
                        index.pdq.push(Pdq::lanes(&words));
                        index.pdq_ids.push(id);
                    }
                }
                HashKind::Vpdq => {
                    if let Ok(frames) = vpdq::parse(&e.hash) {
                        index.vpdq.push((id, vpdq::prepare(&frames, min_quality)));
                    }
                }
                kind => index.exact.entry((kind, e.hash.into())).or_default().push(id),
            }
        }
        index
    }

    fn len(&self) -> usize {
        self.by_kind.values().sum()
    }
}

/// Counts of one list, by kind.
#[derive(Debug, Clone, Serialize)]
pub struct ListSummary {
    pub name: String,
    pub entries: usize,
    pub by_kind: BTreeMap<HashKind, usize>,
}

/// The lists and their matcher; shared by every front end.
pub struct HashLists {
    store: store::Store,
    lists: RwLock<BTreeMap<String, Arc<ListIndex>>>,
    pub rules: MatchRules,
}

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
        HashLists::from_db(crate::datastore::open(dir)?, rules)
    }

    /// The lists in `db`, loaded into memory.
    pub fn from_db(db: Arc<redb::Database>, rules: MatchRules) -> anyhow::Result<HashLists> {
        let store = store::Store::new(db)?;
        let q = rules.pdq_min_quality;
        let lists = store
            .load_all()?
            .into_iter()
            .map(|(name, entries)| (name, Arc::new(ListIndex::build(entries, q))))
            .collect();
        Ok(HashLists { store, lists: RwLock::new(lists), rules })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ListIndex>>> {
        self.lists.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds one list's index from the database and swaps it in.
    fn rebuild(&self, list: &str) -> anyhow::Result<()> {
        let entries = self.store.load_list(list)?;
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        if entries.is_empty() {
            lists.remove(list);
        } else {
            lists.insert(list.to_string(), Arc::new(ListIndex::build(entries, self.rules.pdq_min_quality)));
        }
        Ok(())
    }

    /// Adds entries to `list` (created if new; an existing id is replaced); durable when it
    /// returns.
    pub fn import(&self, list: &str, entries: Vec<Entry>) -> anyhow::Result<usize> {
        check_list_name(list)?;
        let entries: Vec<Entry> = entries.into_iter().map(Entry::normalise).collect::<anyhow::Result<_>>()?;
        self.store.put(list, &entries)?;
        self.rebuild(list)?;
        Ok(entries.len())
    }

    /// Removes one entry; whether it existed.
    pub fn delete(&self, list: &str, id: &str) -> anyhow::Result<bool> {
        let found = self.store.delete(list, id)?;
        self.rebuild(list)?;
        Ok(found)
    }

    /// Removes a list; how many entries it had.
    pub fn delete_list(&self, list: &str) -> anyhow::Result<usize> {
        let n = self.store.delete_list(list)?;
        self.rebuild(list)?;
        Ok(n)
    }

    pub fn summaries(&self) -> Vec<ListSummary> {
        self.read()
            .iter()
            .map(|(name, l)| ListSummary { name: name.clone(), entries: l.len(), by_kind: l.by_kind.clone() })
            .collect()
    }

    /// A list's entries, or `None` when there is no such list.
    pub fn export(&self, list: &str) -> anyhow::Result<Option<Vec<Entry>>> {
        if !self.read().contains_key(list) {
            return Ok(None);
        }
        self.store.load_list(list).map(Some)
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
            [
                (HashKind::Md5, hex::encode(Md5::digest(probe.bytes))),
                (HashKind::Sha256, hex::encode(Sha256::digest(probe.bytes))),
            ]
        });
        let r = self.rules;
        let pdq = probe.pdq.filter(|p| p.quality >= r.pdq_min_quality).map(|p| Pdq::lanes(&p.words));
        let frames = probe.vpdq.map(|f| vpdq::prepare(f, r.pdq_min_quality)).unwrap_or_default();
        let mut out = Vec::new();
        for (name, l) in lists.iter() {
            let mut found = Vec::new();
            if let Some(q) = &pdq {
                for (i, d) in within(q, &l.pdq, r.pdq_max_distance) {
                    found.push((&*l.pdq_ids[i], HashKind::Pdq, d, None));
                }
            }
            for (id, listed) in &l.vpdq {
                let Some(c) = vpdq::compare(&frames, listed, r.pdq_max_distance) else { continue };
                if c.query_pct >= r.vpdq_query_pct && c.other_pct >= r.vpdq_list_pct && c.query_pct > 0.0 {
                    found.push((&**id, HashKind::Vpdq, c.min_distance, Some(c)));
                }
            }
            for (kind, hash) in digests.iter().flatten() {
                for id in l.exact.get(&(*kind, hash.as_str().into())).into_iter().flatten() {
                    found.push((&**id, *kind, 0, None));
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
mod tests {
    use super::*;

    fn pdq_entry(id: &str, words: [u16; 16]) -> Entry {
        let hash = Pdq { words, quality: 100 }.hex();
        Entry { kind: HashKind::Pdq, hash, id: id.into(), label: Some("known".into()), source: None }
    }

    #[test]
    fn lists_persist_match_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let lists = HashLists::open(dir.path(), MatchRules::default()).unwrap();
        let mut near = [0x5a5au16; 16];
        lists.import("ncii", vec![pdq_entry("a", near), pdq_entry("b", [0xffff; 16])]).unwrap();
        let bytes = b"some upload";
        let sha = hex::encode(Sha256::digest(bytes));
        let exact =
            Entry { kind: HashKind::Sha256, hash: sha.to_uppercase(), id: "c".into(), label: None, source: None };
        lists.import("exact", vec![exact]).unwrap();
        near[0] ^= 0b111; // 3 bits away
        let probe = Probe { bytes, pdq: Some(Pdq { words: near, quality: 80 }), vpdq: None };
        let got = lists.matches(&probe);
        let brief: Vec<(&str, &str, u32)> = got.iter().map(|m| (m.list.as_str(), m.id.as_str(), m.distance)).collect();
        assert_eq!(brief, vec![("exact", "c", 0), ("ncii", "a", 3)]);
        // A low-quality hash is not matched; the exact digest still is.
        let low = Probe { bytes, pdq: Some(Pdq { words: near, quality: 20 }), vpdq: None };
        assert_eq!(lists.matches(&low).len(), 1);
        drop(lists);
        // Reopened: the same lists.
        let lists = HashLists::open(dir.path(), MatchRules::default()).unwrap();
        assert_eq!(lists.matches(&probe).len(), 2);
        assert!(lists.delete("ncii", "a").unwrap());
        assert_eq!(lists.delete_list("exact").unwrap(), 1);
        assert!(lists.matches(&probe).is_empty());
        drop(lists);
        let lists = HashLists::open(dir.path(), MatchRules::default()).unwrap();
        let names: Vec<String> = lists.summaries().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["ncii"]);
    }

    #[test]
    fn videos_match_by_vpdq_share_of_frames() {
        let dir = tempfile::tempdir().unwrap();
        let lists = HashLists::open(dir.path(), MatchRules::default()).unwrap();
        let frame = |fill: u16, t: f64| vpdq::Feature { pdq: Pdq { words: [fill; 16], quality: 100 }, time_s: t };
        let listed: Vec<vpdq::Feature> = (0..10).map(|i| frame(1 << i, i as f64)).collect();
        // JSON Lines may give the frames as an array; they are stored in ThreatExchange's form.
        let frames: Vec<String> = listed.iter().map(vpdq::Feature::compact).collect();
        let line = serde_json::json!({"kind": "vpdq", "hash": frames, "id": "v"}).to_string();
        lists.import("videos", parse_entries(&line).unwrap()).unwrap();
        assert_eq!(lists.export("videos").unwrap().unwrap()[0].hash, vpdq::to_json(&listed));
        assert!(lists.wants_vpdq() && !lists.wants_pdq());
        let probe = |q: &[vpdq::Feature]| lists.matches(&Probe { bytes: b"clip", pdq: None, vpdq: Some(q) });
        // The first 4 seconds, 16 bits off per frame: all of the query, 40% of the list.
        let cut: Vec<vpdq::Feature> = (0..4).map(|i| frame((1 << i) | 0x8000, i as f64)).collect();
        let m = probe(&cut);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].kind, m[0].distance, m[0].query_match_pct, m[0].list_match_pct),
            (HashKind::Vpdq, 16, Some(100.0), Some(40.0))
        );
        // 3 of 4 frames from the list (75%) is under the 80% rule.
        let mostly: Vec<vpdq::Feature> = vec![cut[0], cut[1], cut[2], frame(0x5555, 3.0)];
        assert!(probe(&mostly).is_empty());
    }

    #[test]
    fn entries_parse_from_json_lines_and_csv_and_bad_ones_are_named() {
        let h = "a".repeat(64);
        let jsonl = format!("{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n\n{{\"kind\":\"md5\",\"hash\":\"{}\",\"id\":\"y\",\"label\":\"l\"}}\n", "b".repeat(32));
        assert_eq!(parse_entries(&jsonl).unwrap().len(), 2);
        let csv = format!("kind,hash,id,label,source\npdq,{h},x,,\nsha256,{},z,lab,src\n", "c".repeat(64));
        let e = parse_entries(&csv).unwrap();
        assert_eq!((e[1].label.as_deref(), e[1].source.as_deref()), (Some("lab"), Some("src")));
        // An all-digit hash stays text in CSV; a vPDQ is its JSON text in one quoted cell.
        let digits = "1".repeat(32);
        let vpdq = format!("\"[\"\"{h},90,0.000\"\"]\"");
        let e = parse_entries(&format!("kind,hash,id\nmd5,{digits},d\nvpdq,{vpdq},v\n")).unwrap();
        assert_eq!(e[0].hash, digits);
        assert_eq!(e[1].hash, format!("[\"{h},90,0.000\"]"));
        let bad = format!(
            "{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n{{\"kind\":\"pdq\",\"hash\":\"zz\",\"id\":\"y\"}}\n"
        );
        let err = format!("{:#}", parse_entries(&bad).unwrap_err());
        assert!(err.contains("64 hex digits"), "{err}");
        assert!(format!("{:#}", parse_entries("{\"kind\":\"nope\"}").unwrap_err()).contains("line 1"));
        assert!(check_list_name("a/b").is_err() && check_list_name("ok.list-1").is_ok());
    }
}
