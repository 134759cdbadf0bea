//! Matching an upload against every list: PDQ through each list's index, vPDQ frame by frame,
//! exact digests by lookup.

use md5::Md5;
use sha2::{Digest, Sha256};

use super::{HashKind, HashLists, Match, Probe};
use crate::hashing::pdq::{Pdq, DIHEDRAL};
use crate::hashing::vpdq;

impl HashLists {
    /// Every match of an upload, by list then distance.
    pub fn matches(&self, probe: &Probe) -> Vec<Match> {
        self.matches_at(probe).0
    }

    /// Every match of an upload, and the change-feed position of the index they were found in
    /// (PostgreSQL only): the result holds as of that change, and a later one may differ.
    pub fn matches_at(&self, probe: &Probe) -> (Vec<Match>, Option<i64>) {
        let lists = self.read();
        // Read under the index's read lock: the follower moves it under the write lock.
        let position = self.feed_state().map(|f| f.position);
        if lists.is_empty() {
            return (Vec::new(), position);
        }
        let wants_exact = lists.values().any(|l| !l.exact.is_empty());
        let digests = wants_exact.then(|| {
            let mut md5 = [0u8; 32];
            md5[..16].copy_from_slice(&Md5::digest(probe.bytes));
            [(HashKind::Md5, md5), (HashKind::Sha256, Sha256::digest(probe.bytes).into())]
        });
        let r = self.rules;
        // Every variant has the original's quality; the original alone unless the rules
        // want the rotations and mirror images.
        let variants = if r.pdq_dihedral { probe.pdq } else { &probe.pdq[..probe.pdq.len().min(1)] };
        let pdq: Vec<[u64; 4]> =
            variants.iter().filter(|p| p.quality >= r.pdq_min_quality).map(|p| Pdq::lanes(&p.words)).collect();
        let frames = probe.vpdq.map(|f| vpdq::prepare(f, r.pdq_min_quality)).unwrap_or_default();
        let mut out = Vec::new();
        for (name, l) in lists.iter() {
            let mut found = Vec::new();
            // Each listed hash once, through its nearest variant (the original on a tie).
            let mut near: Vec<(usize, u32, usize)> = Vec::new();
            for (k, q) in pdq.iter().enumerate() {
                near.extend(l.pdq.within(q, r.pdq_max_distance).into_iter().map(|(i, d)| (i, d, k)));
            }
            near.sort_unstable();
            near.dedup_by_key(|(i, _, _)| *i);
            for (i, d, k) in near {
                found.push((&*l.pdq_ids[i], HashKind::Pdq, d, None, k));
            }
            for (id, listed) in &l.vpdq {
                let Some(c) = vpdq::compare(&frames, listed, r.pdq_max_distance) else { continue };
                if c.query_pct >= r.vpdq_query_pct && c.other_pct >= r.vpdq_list_pct && c.query_pct > 0.0 {
                    found.push((&**id, HashKind::Vpdq, c.min_distance, Some(c), 0));
                }
            }
            for d in digests.iter().flatten() {
                for id in l.exact.get(d).into_iter().flatten() {
                    found.push((&**id, d.0, 0, None, 0));
                }
            }
            found.sort_by_key(|(id, _, d, _, _)| (*d, *id));
            out.extend(found.into_iter().map(|(id, kind, distance, c, k)| Match {
                list: name.clone(),
                id: id.to_string(),
                kind,
                distance,
                label: l.labels.get(id).map(|s| s.to_string()),
                query_match_pct: c.map(|c| c.query_pct),
                list_match_pct: c.map(|c| c.other_pct),
                transform: (k > 0).then(|| DIHEDRAL[k].to_string()),
            }));
        }
        (out, position)
    }
}
