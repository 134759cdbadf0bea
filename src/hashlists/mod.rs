//! Known-content matching: named lists of hashes (PDQ, MD5, SHA-256) that uploads are checked
//! against, stored durably under `--data-dir` and held in memory for matching.
//!
//! A platform blocks content it already knows by hash: a regulator names an image, it is
//! removed, and it comes back re-encoded or resized. PDQ survives that (a Hamming distance of
//! at most `--pdq-max-distance`, 31 by default, as Meta's reference suggests); MD5 and SHA-256
//! find the very same file. Hashes of quality below `--pdq-min-quality` (50, Meta's default)
//! are not matched: flat or tiny images give hashes that match too much.
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
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::hashing::pdq::{hamming, Pdq};

/// One match of an upload against a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub list: String,
    pub id: String,
    pub kind: HashKind,
    /// PDQ: Hamming distance in bits; exact digests: 0.
    pub distance: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One list, ready for matching: only what matching needs is in memory (the entries
/// themselves stay in the database), about 60 bytes a PDQ hash.
#[derive(Default)]
struct ListIndex {
    /// PDQ hashes as 64-bit lanes, scanned linearly, and the id of each.
    pdq: Vec<[u64; 4]>,
    pdq_ids: Vec<Box<str>>,
    /// `(kind, hash)` of exact digests to ids.
    exact: HashMap<(HashKind, Box<str>), Vec<Box<str>>>,
    /// Labels of the entries that have one.
    labels: HashMap<Box<str>, Box<str>>,
    by_kind: BTreeMap<HashKind, usize>,
}

impl ListIndex {
    fn build(entries: Vec<Entry>) -> ListIndex {
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
    pub max_distance: u32,
    pub min_quality: u8,
}

/// What an upload is matched on.
pub struct Probe<'a> {
    pub bytes: &'a [u8],
    /// The image's PDQ (none for videos and undecodable uploads).
    pub pdq: Option<Pdq>,
}

impl HashLists {
    /// Opens the lists under `dir`, loading every one into memory.
    pub fn open(dir: &Path, max_distance: u32, min_quality: u8) -> anyhow::Result<HashLists> {
        let store = store::Store::open(dir)?;
        let lists =
            store.load_all()?.into_iter().map(|(name, entries)| (name, Arc::new(ListIndex::build(entries)))).collect();
        Ok(HashLists { store, lists: RwLock::new(lists), max_distance, min_quality })
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
            lists.insert(list.to_string(), Arc::new(ListIndex::build(entries)));
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
        let pdq = probe.pdq.filter(|p| p.quality >= self.min_quality).map(|p| Pdq::lanes(&p.words));
        let mut out = Vec::new();
        for (name, l) in lists.iter() {
            let mut found = Vec::new();
            if let Some(q) = &pdq {
                for (i, h) in l.pdq.iter().enumerate() {
                    let d = hamming(q, h);
                    if d <= self.max_distance {
                        found.push((&*l.pdq_ids[i], HashKind::Pdq, d));
                    }
                }
            }
            for (kind, hash) in digests.iter().flatten() {
                for id in l.exact.get(&(*kind, hash.as_str().into())).into_iter().flatten() {
                    found.push((&**id, *kind, 0));
                }
            }
            found.sort_by_key(|(id, _, d)| (*d, *id));
            out.extend(found.into_iter().map(|(id, kind, distance)| Match {
                list: name.clone(),
                id: id.to_string(),
                kind,
                distance,
                label: l.labels.get(id).map(|s| s.to_string()),
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
        let lists = HashLists::open(dir.path(), 31, 50).unwrap();
        let mut near = [0x5a5au16; 16];
        lists.import("ncii", vec![pdq_entry("a", near), pdq_entry("b", [0xffff; 16])]).unwrap();
        let bytes = b"some upload";
        let sha = hex::encode(Sha256::digest(bytes));
        let exact =
            Entry { kind: HashKind::Sha256, hash: sha.to_uppercase(), id: "c".into(), label: None, source: None };
        lists.import("exact", vec![exact]).unwrap();
        near[0] ^= 0b111; // 3 bits away
        let probe = Probe { bytes, pdq: Some(Pdq { words: near, quality: 80 }) };
        let got = lists.matches(&probe);
        let brief: Vec<(&str, &str, u32)> = got.iter().map(|m| (m.list.as_str(), m.id.as_str(), m.distance)).collect();
        assert_eq!(brief, vec![("exact", "c", 0), ("ncii", "a", 3)]);
        // A low-quality hash is not matched; the exact digest still is.
        let low = Probe { bytes, pdq: Some(Pdq { words: near, quality: 20 }) };
        assert_eq!(lists.matches(&low).len(), 1);
        drop(lists);
        // Reopened: the same lists.
        let lists = HashLists::open(dir.path(), 31, 50).unwrap();
        assert_eq!(lists.matches(&probe).len(), 2);
        assert!(lists.delete("ncii", "a").unwrap());
        assert_eq!(lists.delete_list("exact").unwrap(), 1);
        assert!(lists.matches(&probe).is_empty());
        drop(lists);
        let lists = HashLists::open(dir.path(), 31, 50).unwrap();
        let names: Vec<String> = lists.summaries().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["ncii"]);
    }

    #[test]
    fn entries_parse_from_json_lines_and_csv_and_bad_ones_are_named() {
        let h = "a".repeat(64);
        let jsonl = format!("{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n\n{{\"kind\":\"md5\",\"hash\":\"{}\",\"id\":\"y\",\"label\":\"l\"}}\n", "b".repeat(32));
        assert_eq!(parse_entries(&jsonl).unwrap().len(), 2);
        let csv = format!("kind,hash,id,label,source\npdq,{h},x,,\nsha256,{},z,lab,src\n", "c".repeat(64));
        let e = parse_entries(&csv).unwrap();
        assert_eq!((e[1].label.as_deref(), e[1].source.as_deref()), (Some("lab"), Some("src")));
        let bad = format!(
            "{{\"kind\":\"pdq\",\"hash\":\"{h}\",\"id\":\"x\"}}\n{{\"kind\":\"pdq\",\"hash\":\"zz\",\"id\":\"y\"}}\n"
        );
        let err = format!("{:#}", parse_entries(&bad).unwrap_err());
        assert!(err.contains("64 hex digits"), "{err}");
        assert!(format!("{:#}", parse_entries("{\"kind\":\"nope\"}").unwrap_err()).contains("line 1"));
        assert!(check_list_name("a/b").is_err() && check_list_name("ok.list-1").is_ok());
    }
}
