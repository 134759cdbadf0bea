//! One list's in-memory matching index, changed in place entry by entry.
//!
//! Why in place: a change used to rebuild the whole list from the database, which cost a full
//! read per single-entry edit and, done outside the lock, let an older snapshot replace a newer
//! one. Now every committed change is applied here, in commit order (`HashLists` holds one
//! writer lock across the commit and the apply), so the index is always the database's state.
//! Only what matching needs is kept (the entries themselves stay in the database).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::entry::{Entry, HashKind};
use crate::hashing::pdq::Pdq;
use crate::hashing::vpdq;

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
    /// An exact digest (and any hash that does not parse, which then matches nothing).
    Exact(Box<str>),
}

impl Indexed {
    /// `e` is normalised (`Entry::normalise`), so its hash parses.
    pub fn of(e: Entry, min_quality: u8) -> Indexed {
        let key = match e.kind {
            HashKind::Pdq => Pdq::parse_hex(&e.hash).map(|w| Key::Pdq(Pdq::lanes(&w))),
            HashKind::Vpdq => vpdq::parse(&e.hash).ok().map(|f| Key::Vpdq(vpdq::prepare(&f, min_quality))),
            _ => None,
        };
        let key = key.unwrap_or_else(|| Key::Exact(e.hash.into()));
        Indexed { id: e.id.into(), kind: e.kind, key, label: e.label.map(Into::into) }
    }
}

/// Where an id's hash sits.
enum Slot {
    Pdq(u32),
    Vpdq(u32),
    Exact(HashKind, Box<str>),
}

#[derive(Default)]
pub(super) struct ListIndex {
    /// PDQ hashes, scanned linearly, and the id of each (same positions).
    pub pdq: Vec<[u64; 4]>,
    pub pdq_ids: Vec<Arc<str>>,
    /// Listed videos: id and frames.
    pub vpdq: Vec<(Arc<str>, Vec<[u64; 4]>)>,
    /// `(kind, hash)` of exact digests to ids.
    pub exact: HashMap<(HashKind, Box<str>), Vec<Arc<str>>>,
    /// Labels of the entries that have one.
    pub labels: HashMap<Arc<str>, Box<str>>,
    slots: HashMap<Arc<str>, Slot>,
    pub by_kind: BTreeMap<HashKind, usize>,
}

impl ListIndex {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds `e`, replacing the entry with its id if there is one.
    pub fn insert(&mut self, e: Indexed) {
        self.remove(&e.id);
        *self.by_kind.entry(e.kind).or_default() += 1;
        if let Some(label) = e.label {
            self.labels.insert(e.id.clone(), label);
        }
        let slot = match e.key {
            Key::Pdq(lanes) => {
                self.pdq.push(lanes);
                self.pdq_ids.push(e.id.clone());
                Slot::Pdq(self.pdq.len() as u32 - 1)
            }
            Key::Vpdq(frames) => {
                self.vpdq.push((e.id.clone(), frames));
                Slot::Vpdq(self.vpdq.len() as u32 - 1)
            }
            Key::Exact(hash) => {
                self.exact.entry((e.kind, hash.clone())).or_default().push(e.id.clone());
                Slot::Exact(e.kind, hash)
            }
        };
        self.slots.insert(e.id, slot);
    }

    /// Removes the entry `id`; whether it was there. The last PDQ (or vPDQ) entry moves into
    /// the freed position, so removal is O(1).
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else { return false };
        self.labels.remove(id);
        let kind = match slot {
            Slot::Pdq(i) => {
                let i = i as usize;
                self.pdq.swap_remove(i);
                self.pdq_ids.swap_remove(i);
                if let Some(moved) = self.pdq_ids.get(i) {
                    self.slots.insert(moved.clone(), Slot::Pdq(i as u32));
                }
                HashKind::Pdq
            }
            Slot::Vpdq(i) => {
                let i = i as usize;
                self.vpdq.swap_remove(i);
                if let Some((moved, _)) = self.vpdq.get(i) {
                    self.slots.insert(moved.clone(), Slot::Vpdq(i as u32));
                }
                HashKind::Vpdq
            }
            Slot::Exact(kind, hash) => {
                let key = (kind, hash);
                if let Some(ids) = self.exact.get_mut(&key) {
                    ids.retain(|x| &**x != id);
                    if ids.is_empty() {
                        self.exact.remove(&key);
                    }
                }
                kind
            }
        };
        if let Some(n) = self.by_kind.get_mut(&kind) {
            *n -= 1;
            if *n == 0 {
                self.by_kind.remove(&kind);
            }
        }
        true
    }

    /// Every indexed id and its kind (for checks against the database).
    pub fn ids(&self) -> Vec<(String, HashKind)> {
        let mut out: Vec<(String, HashKind)> = self
            .slots
            .iter()
            .map(|(id, s)| {
                let kind = match s {
                    Slot::Pdq(_) => HashKind::Pdq,
                    Slot::Vpdq(_) => HashKind::Vpdq,
                    Slot::Exact(k, _) => *k,
                };
                (id.to_string(), kind)
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdq(id: &str, fill: u16) -> Indexed {
        let hash = Pdq { words: [fill; 16], quality: 100 }.hex();
        Indexed::of(Entry { kind: HashKind::Pdq, hash, id: id.into(), label: None, source: None }, 50)
    }

    #[test]
    fn removal_moves_the_last_entry_and_keeps_every_slot_true() {
        let mut ix = ListIndex::default();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            ix.insert(pdq(id, i as u16));
        }
        assert!(ix.remove("b"));
        assert!(!ix.remove("b"));
        // "d" moved into b's place; removing it then must remove d's hash, not another's.
        assert!(ix.remove("d"));
        assert_eq!(ix.pdq_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(ix.pdq, vec![Pdq::lanes(&[0; 16]), Pdq::lanes(&[2; 16])]);
        // Replacing by id keeps one entry.
        ix.insert(pdq("a", 9));
        assert_eq!((ix.len(), ix.by_kind[&HashKind::Pdq]), (2, 2));
        assert!(ix.remove("a") && ix.remove("c") && ix.is_empty() && ix.by_kind.is_empty());
    }
}
