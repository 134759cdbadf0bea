//! One list's in-memory matching index, changed in place entry by entry.
//!
//! Why in place: a change used to rebuild the whole list from the database, which cost a full
//! read per single-entry edit and, done outside the lock, let an older snapshot replace a newer
//! one. Now every committed change is applied here, in commit order (`HashLists` holds one
//! writer lock across the commit and the apply), so the index is always the database's state.
//!
//! Only what matching needs is kept (the entries themselves stay in the database): PDQ hashes
//! as lanes with their ids, videos' frame hashes, and exact digests as bytes. Removal is given
//! the stored entry (the database hands it back when it deletes or replaces one), so exact
//! digests need no id-to-hash map; PDQ and vPDQ entries keep their position by id.
//! Measured: 1 M MD5 entries with 10-character ids take 261 MB of resident memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::entry::{Entry, HashKind};
use super::pdq_index::PdqIndex;
use crate::hashing::pdq::Pdq;
use crate::hashing::vpdq;

/// An exact digest: its kind and its bytes (MD5 in the first 16).
pub(super) type Digest = (HashKind, [u8; 32]);

/// The bytes of a hex digest of an exact kind.
pub(super) fn digest(kind: HashKind, hex_digest: &str) -> Option<Digest> {
    let mut bytes = [0u8; 32];
    let n = hex_digest.len() / 2;
    if n > 32 || hex::decode_to_slice(hex_digest, &mut bytes[..n]).is_err() {
        return None;
    }
    Some((kind, bytes))
}

/// What matching needs of one entry.
pub(super) struct Indexed {
    pub id: Arc<str>,
    kind: HashKind,
    key: Key,
    label: Option<Box<str>>,
}

enum Key {
    /// A PDQ hash as 64-bit lanes.
    Pdq([u64; 4]),
    /// A video's distinct good-quality frame hashes.
    Vpdq(Vec<[u64; 4]>),
    Exact(Digest),
    /// A hash that does not parse (never stored by this version: entries are checked first);
    /// counted, never matched.
    None,
}

fn key_of(e: &Entry, min_quality: u8) -> Key {
    let key = match e.kind {
        HashKind::Pdq => Pdq::parse_hex(&e.hash).map(|w| Key::Pdq(Pdq::lanes(&w))),
        HashKind::Vpdq => vpdq::parse(&e.hash).ok().map(|f| Key::Vpdq(vpdq::prepare(&f, min_quality))),
        kind => digest(kind, &e.hash).map(Key::Exact),
    };
    key.unwrap_or(Key::None)
}

impl Indexed {
    pub fn of(e: Entry, min_quality: u8) -> Indexed {
        let key = key_of(&e, min_quality);
        Indexed { id: e.id.into(), kind: e.kind, key, label: e.label.map(Into::into) }
    }
}

/// Where a PDQ or vPDQ entry sits.
enum Pos {
    Pdq(u32),
    Vpdq(u32),
    None(HashKind),
}

#[derive(Default)]
pub(super) struct ListIndex {
    /// PDQ hashes (searched by multi-index hashing once a list is large) and the id of each
    /// (same positions).
    pub pdq: PdqIndex,
    pub pdq_ids: Vec<Arc<str>>,
    /// Listed videos: id and frames.
    pub vpdq: Vec<(Arc<str>, Vec<[u64; 4]>)>,
    /// Exact digests to the ids listing them.
    pub exact: HashMap<Digest, Vec<Arc<str>>>,
    /// Labels of the entries that have one.
    pub labels: HashMap<Arc<str>, Box<str>>,
    positions: HashMap<Arc<str>, Pos>,
    pub by_kind: BTreeMap<HashKind, usize>,
}

impl ListIndex {
    pub fn len(&self) -> usize {
        self.by_kind.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// Adds `e`, whose id the index does not hold (a replaced entry is removed first).
    pub fn insert(&mut self, e: Indexed) {
        *self.by_kind.entry(e.kind).or_default() += 1;
        if let Some(label) = e.label {
            self.labels.insert(e.id.clone(), label);
        }
        match e.key {
            Key::Pdq(lanes) => {
                let pos = self.pdq.push(lanes);
                self.pdq_ids.push(e.id.clone());
                self.positions.insert(e.id, Pos::Pdq(pos as u32));
            }
            Key::Vpdq(frames) => {
                self.vpdq.push((e.id.clone(), frames));
                self.positions.insert(e.id, Pos::Vpdq(self.vpdq.len() as u32 - 1));
            }
            Key::Exact(d) => self.exact.entry(d).or_default().push(e.id),
            Key::None => drop(self.positions.insert(e.id, Pos::None(e.kind))),
        }
    }

    /// Removes the stored entry `old` (as the database held it); whether it was indexed. The
    /// last PDQ (or vPDQ) entry moves into the freed position, so removal is O(1).
    pub fn remove(&mut self, old: &Entry) -> bool {
        let id = old.id.as_str();
        let found = match key_of(old, 0) {
            Key::Exact(d) => match self.exact.get_mut(&d) {
                Some(ids) => {
                    let before = ids.len();
                    ids.retain(|x| &**x != id);
                    let found = ids.len() < before;
                    if ids.is_empty() {
                        self.exact.remove(&d);
                    }
                    found
                }
                None => false,
            },
            _ => match self.positions.remove(id) {
                Some(Pos::Pdq(i)) => {
                    let i = i as usize;
                    self.pdq.swap_remove(i);
                    self.pdq_ids.swap_remove(i);
                    if let Some(moved) = self.pdq_ids.get(i) {
                        self.positions.insert(moved.clone(), Pos::Pdq(i as u32));
                    }
                    true
                }
                Some(Pos::Vpdq(i)) => {
                    let i = i as usize;
                    self.vpdq.swap_remove(i);
                    if let Some((moved, _)) = self.vpdq.get(i) {
                        self.positions.insert(moved.clone(), Pos::Vpdq(i as u32));
                    }
                    true
                }
                Some(Pos::None(_)) => true,
                None => false,
            },
        };
        if found {
            self.labels.remove(id);
            if let Some(n) = self.by_kind.get_mut(&old.kind) {
                *n -= 1;
                if *n == 0 {
                    self.by_kind.remove(&old.kind);
                }
            }
        }
        found
    }

    /// Ends a change: the PDQ tables are built (or dropped) once, in bulk, when the list's size
    /// crosses the threshold ([`PdqIndex::settle`]).
    pub fn settle(&mut self) {
        self.pdq.settle();
    }

    /// Every indexed id and its kind, sorted (for checks against the database).
    pub fn ids(&self) -> Vec<(String, HashKind)> {
        let mut out: Vec<(String, HashKind)> = Vec::with_capacity(self.len());
        out.extend(self.pdq_ids.iter().map(|id| (id.to_string(), HashKind::Pdq)));
        out.extend(self.vpdq.iter().map(|(id, _)| (id.to_string(), HashKind::Vpdq)));
        for ((kind, _), ids) in &self.exact {
            out.extend(ids.iter().map(|id| (id.to_string(), *kind)));
        }
        for (id, pos) in &self.positions {
            if let Pos::None(kind) = pos {
                out.push((id.to_string(), *kind));
            }
        }
        out.sort();
        out
    }
}

/// Every list of a full read, indexed: `read` hands each stored entry, with its list, to the
/// function it is given (the embedded store's scan, or one PostgreSQL snapshot); what `read`
/// returns comes back with the lists.
pub(super) fn index_all<T, E>(
    min_quality: u8,
    read: impl FnOnce(&mut dyn FnMut(&str, Entry)) -> Result<T, E>,
) -> Result<(BTreeMap<String, ListIndex>, T), E> {
    let mut lists: BTreeMap<String, ListIndex> = BTreeMap::new();
    let out = read(&mut |list, e| {
        if !lists.contains_key(list) {
            lists.insert(list.to_string(), ListIndex::default());
        }
        lists.get_mut(list).expect("just inserted").insert(Indexed::of(e, min_quality));
    })?;
    lists.values_mut().for_each(ListIndex::settle);
    Ok((lists, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdq(id: &str, fill: u16) -> Entry {
        let hash = Pdq { words: [fill; 16], quality: 100 }.hex();
        Entry { kind: HashKind::Pdq, hash, id: id.into(), label: None, source: None }
    }

    #[test]
    fn removal_moves_the_last_entry_and_keeps_every_position_true() {
        let mut ix = ListIndex::default();
        let entries: Vec<Entry> = ["a", "b", "c", "d"].iter().enumerate().map(|(i, id)| pdq(id, i as u16)).collect();
        for e in &entries {
            ix.insert(Indexed::of(e.clone(), 50));
        }
        assert!(ix.remove(&entries[1]));
        assert!(!ix.remove(&entries[1]));
        // "d" moved into b's place; removing it then must remove d's hash, not another's.
        assert!(ix.remove(&entries[3]));
        assert_eq!(ix.pdq_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!([ix.pdq.get(0), ix.pdq.get(1)], [&Pdq::lanes(&[0; 16]), &Pdq::lanes(&[2; 16])]);
        // Exact digests: two ids on one digest, removed one at a time.
        let md5 =
            |id: &str| Entry { kind: HashKind::Md5, hash: "ab".repeat(16), id: id.into(), label: None, source: None };
        ix.insert(Indexed::of(md5("x"), 50));
        ix.insert(Indexed::of(md5("y"), 50));
        assert_eq!((ix.len(), ix.by_kind[&HashKind::Md5]), (4, 2));
        assert!(ix.remove(&md5("x")) && !ix.remove(&md5("x")));
        assert_eq!(ix.exact.values().next().unwrap().len(), 1);
        assert!(ix.remove(&md5("y")) && ix.exact.is_empty());
        assert!(ix.remove(&entries[0]) && ix.remove(&entries[2]) && ix.is_empty() && ix.positions.is_empty());
    }
}
